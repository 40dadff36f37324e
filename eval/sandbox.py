"""Run one untrusted Python program (a model's completion inside a HumanEval test) and say how it ended.

The program is model output, so it may loop forever, allocate without bound, fork, crash the interpreter, call
``os._exit``, or reach for the network. Each run gets its own child process and temporary directory; the harness
only waits on it, reads bounded files and kills what is left, so none of that can take the harness down.

Layers, strongest first (each one is used when this machine allows it; ``capabilities()`` says which are on):

1. Kernel: a fresh network namespace (``unshare --net``, or ``unshare --user --map-root-user --net`` without
   root) has no route anywhere, loopback included; a pids cgroup (v1, writable as root) caps processes and
   threads; rlimits cap address space (``RLIMIT_AS``), CPU seconds, file size (stdout/stderr included), core
   dumps and, for a non-root user, processes (``RLIMIT_NPROC`` -- the kernel ignores it for root).
2. Process group: the child starts a new session; on exit or timeout the whole group gets SIGKILL, and the
   cgroup's remaining members too.
3. Python audit hooks (PEP 578) installed before the program runs: process creation, signals, sockets and file
   writes or deletions outside the working directory raise ``PermissionError``. This is what the reference
   harness's ``reliability_guard`` does, and like it, ``ctypes`` gets around it -- layers 1-2 still hold.

A run passes only when the program ran to its end: the bootstrap prints a random marker after the program's
last statement, so ``sys.exit(0)`` or ``os._exit(0)`` before ``check(...)`` is an "exit", not a pass.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["KINDS", "Limits", "Outcome", "capabilities", "kill_group", "network_prefix", "run_program", "tail"]

# How a run ended; "passed" is the only success.
KINDS = ("passed", "failed", "error", "syntax", "timeout", "memory", "crash", "exit", "blocked", "sandbox")

_PIDS_V1 = Path("/sys/fs/cgroup/pids")
_TAIL_BYTES = 4096  # of stdout/stderr kept for classification and reports
_counter = itertools.count()

# Runs in the child (`python -I -B -c _BOOT nonce status_fd as cpu fsize nproc hooks cgroup`) before the program:
# limits, guards, the program in a fresh namespace, then the end marker on the status pipe (not stdout, which the
# program may close or fill). Kept self-contained: the child imports nothing of ours.
_BOOT = r"""
import os, resource, sys, traceback

class SandboxViolation(PermissionError):
    pass

def limit(name, value):
    if value >= 0:
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError):
            pass

def guard(root):
    denied = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
              "os.kill", "os.killpg", "signal.pthread_kill", "socket.__new__", "socket.connect", "socket.bind"}
    mutating = {"os.remove", "os.rmdir", "os.rename", "os.replace", "shutil.rmtree", "os.chmod", "os.chown",
                "os.truncate", "os.symlink", "os.link", "os.mkdir", "os.utime"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def outside(path):
        if isinstance(path, int) or path is None:
            return False
        full = os.path.abspath(os.fsdecode(path))
        return not (full == root or full.startswith(root + os.sep) or full.startswith("/dev/"))

    def hook(event, args):
        if event in denied:
            raise SandboxViolation(event + " is disabled in the sandbox")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or bool((flags or 0) & write_flags)
            if writes and outside(path):
                raise SandboxViolation("writing outside the sandbox directory: " + repr(path))
        elif event in mutating and any(outside(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
            raise SandboxViolation(event + " outside the sandbox directory")

    sys.addaudithook(hook)

def main():
    nonce, status_fd, hooks, cgroup = sys.argv[1], int(sys.argv[2]), sys.argv[7] == "1", sys.argv[8]
    address_space, cpu, fsize, nproc = (int(v) for v in sys.argv[3:7])
    del sys.argv[1:]
    sys.argv[0] = "program.py"
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass
    limit("RLIMIT_AS", address_space)
    limit("RLIMIT_CPU", cpu)
    limit("RLIMIT_FSIZE", fsize)
    limit("RLIMIT_CORE", 0)
    limit("RLIMIT_NPROC", nproc)
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    if hooks:
        guard(os.getcwd())
    status = "passed"
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:
        status = "raised " + type(e).__name__
        try:
            traceback.print_exc()
        except BaseException:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os.write(status_fd, (nonce + " " + status + "\n").encode())
    os._exit(0 if status == "passed" else 1)

main()
"""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock; CPU time is capped one second above it
    memory_mb: int = 1024  # address space (RLIMIT_AS): the interpreter itself needs ~100 MB
    output_kb: int = 1024  # any file the program writes, stdout and stderr included (RLIMIT_FSIZE)
    processes: int = 1  # the program's own process only: no fork, no threads (pids cgroup / RLIMIT_NPROC)
    audit_hooks: bool = True  # Python-level guards (layer 3); off only to test the kernel layers alone


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of KINDS
    detail: str  # last line of the traceback, signal name, or what the sandbox did
    seconds: float
    output: str = ""  # the end of the program's stdout, for debugging

    @property
    def passed(self) -> bool:
        return self.kind == "passed"


@cache
def network_prefix() -> tuple[str, ...]:
    """The command prefix that gives the child an empty network namespace, or () when none works here."""
    if shutil.which("unshare") is None:
        return ()
    for prefix in (("unshare", "--net", "--"), ("unshare", "--user", "--map-root-user", "--net", "--")):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


@cache
def _pids_cgroup_root() -> Path | None:
    """cgroup v1's pids hierarchy when we may create groups in it (root in most containers), else None."""
    return _PIDS_V1 if (_PIDS_V1 / "cgroup.procs").exists() and os.access(_PIDS_V1, os.W_OK) else None


def capabilities() -> dict[str, bool]:
    """Which kernel-level layers this machine gives the sandbox (the audit hooks are always on)."""
    return {
        "network_namespace": bool(network_prefix()),
        "pids_cgroup": _pids_cgroup_root() is not None,
        "rlimit_nproc": os.geteuid() != 0,
    }


def _make_cgroup(max_pids: int) -> Path | None:
    root = _pids_cgroup_root()
    if root is None:
        return None
    group = root / f"diffill-eval-{os.getpid()}-{next(_counter)}"
    try:
        group.mkdir()
        (group / "pids.max").write_text(str(max_pids))
    except OSError:
        _remove_cgroup(group)
        return None
    return group


def _remove_cgroup(group: Path) -> None:
    """SIGKILL every member, then remove the group (members take a moment to leave after dying)."""
    for _ in range(50):
        try:
            members = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            members = []
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, size: int = _TAIL_BYTES) -> str:
    """The last `size` bytes of a file, decoded leniently ("" when it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


_RAISED_KINDS = {
    "AssertionError": "failed",
    "MemoryError": "memory",
    "SyntaxError": "syntax",
    "IndentationError": "syntax",
    "TabError": "syntax",
    "SystemExit": "exit",
    "SandboxViolation": "blocked",
}


def classify(returncode: int, timed_out: bool, nonce: str, status: str, stderr: str) -> tuple[str, str]:
    """(kind, detail) from how the child ended and the line the bootstrap wrote to the status pipe, if any."""
    if timed_out:
        return "timeout", "wall-clock limit"
    if returncode < 0:
        sig = signal.Signals(-returncode) if -returncode in signal.valid_signals() else None
        if sig is signal.SIGXCPU:
            return "timeout", "CPU-time limit (SIGXCPU)"
        return "crash", sig.name if sig else f"signal {-returncode}"
    marker = next((line for line in status.splitlines() if line.startswith(nonce + " ")), None)
    if marker is None:
        return "exit", f"the program ended before its last statement (exit status {returncode})"
    verdict = marker.removeprefix(nonce + " ")
    if verdict == "passed":
        return ("passed", "") if returncode == 0 else ("exit", f"exit status {returncode}")
    raised = verdict.removeprefix("raised ")
    return _RAISED_KINDS.get(raised, "error"), _last_line(stderr) or raised


def _command(nonce: str, status_fd: int, limits: Limits, cgroup: Path | None) -> list[str]:
    numbers = (limits.memory_mb * 2**20, int(limits.timeout_s) + 1, limits.output_kb * 1024, limits.processes)
    flags = ("1" if limits.audit_hooks else "0", str(cgroup or ""))
    boot = [sys.executable, "-I", "-B", "-c", _BOOT, nonce, str(status_fd), *map(str, numbers), *flags]
    return [*network_prefix(), *boot]


def _read_available(fd: int) -> str:
    """What the pipe holds now, without waiting for writers that may still hold it open."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096).decode("utf-8", "replace")
    except BlockingIOError:
        return ""


def _spawn(command: list[str], workdir: Path, status_fd: int, stdin: Path | None) -> subprocess.Popen[bytes]:
    env = {"PATH": os.defpath, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
    with (
        (workdir / "stdout").open("wb") as out,
        (workdir / "stderr").open("wb") as err,
        open(stdin or os.devnull, "rb") as source,
    ):
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=source,
            stdout=out,
            stderr=err,
            pass_fds=(status_fd,),
            start_new_session=True,  # own process group: one killpg reaches every descendant
        )


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the child, then SIGKILL its whole process group (stragglers too); True if it timed out."""
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    kill_group(proc.pid)
    proc.wait()
    return timed_out


def run_program(
    source: str,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass default
    *,
    stdin: str | None = None,
    output_bytes: int = _TAIL_BYTES,
) -> Outcome:
    """Execute `source` as a fresh `__main__` in a sandboxed child; never raises for anything the program does.

    `stdin`: the program's standard input (default: empty); `output_bytes`: how much of the end of its stdout
    ``Outcome.output`` keeps (programs judged by what they print need all of it, up to ``Limits.output_kb``).
    """
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="diffill-eval-"))
    cgroup = _make_cgroup(limits.processes)
    nonce = secrets.token_hex(16)
    read_fd, write_fd = os.pipe()
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8")
        if stdin is not None:
            (workdir / "stdin").write_text(stdin, encoding="utf-8")
        try:
            command = _command(nonce, write_fd, limits, cgroup)
            proc = _spawn(command, workdir, write_fd, workdir / "stdin" if stdin is not None else None)
        except OSError as e:
            return Outcome("sandbox", f"could not start the sandbox: {e}", time.perf_counter() - start)
        os.close(write_fd)
        write_fd = -1
        timed_out = _wait(proc, limits.timeout_s)
        status = _read_available(read_fd)
        stdout, stderr = tail(workdir / "stdout", output_bytes), tail(workdir / "stderr")
        kind, detail = classify(proc.returncode, timed_out, nonce, status, stderr)
        return Outcome(kind, detail, time.perf_counter() - start, stdout)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        if cgroup is not None:
            _remove_cgroup(cgroup)
        shutil.rmtree(workdir, ignore_errors=True)
