"""Compile and run a Java, C++ or C# program on stdin inputs, where this machine has the toolchain.

SAFIM's unit tests are competitive-programming tests: a whole program reads a test's input on stdin and must print
the expected output. Python programs run in ``eval.sandbox``; the other languages run here, with the kernel layers
``eval.sandbox`` uses where they exist (an empty network namespace, a process group killed at the end, CPU-time,
file-size and core-dump limits, address space for native code -- the JVM and .NET reserve large virtual ranges,
so they get their own heap flag instead) in a temporary directory deleted afterwards. There are no Python audit
hooks here: compiled model output is contained by the kernel limits and the timeout only, so run untrusted
benchmarks on a machine you can afford to lose, as SAFIM's authors do in a container (ExecEval).

Toolchains, tried in order: C++ ``g++ -std=c++17 -O2``; Java ``javac`` + ``java`` (the file is named after the
public class); C# ``mcs`` + ``mono`` (SAFIM's "Mono C#"), else ``dotnet`` with a generated project. A language with
no toolchain is reported as not run, never as a failure of the program.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.sandbox import Limits, Outcome, kill_group, network_prefix, tail

__all__ = ["Toolchain", "run_native", "toolchain"]

COMPILE_TIMEOUT_S = 120.0
_PUBLIC_CLASS = re.compile(r"public\s+(?:final\s+|abstract\s+)*class\s+([A-Za-z_]\w*)")
_CSPROJ = """<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net{major}.0</TargetFramework>
  <Nullable>disable</Nullable><AllowUnsafeBlocks>true</AllowUnsafeBlocks></PropertyGroup>
</Project>
"""


@dataclass(frozen=True)
class Toolchain:
    language: str
    file_name: Callable[[str], str]  # source text -> file name
    compile: Callable[[Path], list[list[str]]]  # source path -> commands run in its directory
    run: Callable[[Path, Limits], list[str]]  # source path -> the command that runs the program
    virtual_machine: bool = False  # no RLIMIT_AS: the VM reserves address space it never uses


def _java_name(source: str) -> str:
    match = _PUBLIC_CLASS.search(source)
    return f"{match.group(1) if match else 'Main'}.java"


def _java() -> Toolchain | None:
    if not (shutil.which("javac") and shutil.which("java")):
        return None
    return Toolchain(
        "java",
        _java_name,
        lambda src: [["javac", "-encoding", "UTF-8", "-nowarn", src.name]],
        lambda src, limits: ["java", f"-Xmx{limits.memory_mb}m", "-Xss64m", "-cp", ".", src.stem],
        virtual_machine=True,
    )


def _cpp() -> Toolchain | None:
    if not shutil.which("g++"):
        return None
    return Toolchain(
        "cpp",
        lambda _: "main.cpp",
        lambda src: [["g++", "-std=c++17", "-O2", "-o", "main", src.name]],
        lambda src, limits: ["./main"],
    )


def _csharp() -> Toolchain | None:
    if shutil.which("mcs") and shutil.which("mono"):
        return Toolchain(
            "csharp",
            lambda _: "main.cs",
            lambda src: [["mcs", "-optimize+", "-out:main.exe", src.name]],
            lambda src, limits: ["mono", "main.exe"],
            virtual_machine=True,
        )
    dotnet = shutil.which("dotnet")
    if not dotnet:
        return None

    def compile_dotnet(src: Path) -> list[list[str]]:
        version = subprocess.run([dotnet, "--version"], capture_output=True, text=True, timeout=60).stdout
        major = version.split(".", 1)[0].strip() or "8"
        (src.parent / "main.csproj").write_text(_CSPROJ.format(major=major), encoding="utf-8")
        return [[dotnet, "build", "-c", "Release", "-o", "out", "--nologo", "-v", "q"]]

    return Toolchain(
        "csharp", lambda _: "Program.cs", compile_dotnet, lambda src, limits: [dotnet, "out/main.dll"], True
    )


_TOOLCHAINS: dict[str, Callable[[], Toolchain | None]] = {"java": _java, "cpp": _cpp, "csharp": _csharp}


def toolchain(language: str) -> Toolchain | None:
    """The installed toolchain for a language, or None."""
    find = _TOOLCHAINS.get(language)
    return find() if find else None


def _limit(limits: Limits, address_space: bool) -> Callable[[], None]:
    def apply() -> None:
        cpu = int(limits.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_kb * 1024, limits.output_kb * 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if address_space:
            size = limits.memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return apply


def _run(command: list[str], workdir: Path, stdin: Path, limits: Limits, address_space: bool) -> Outcome:
    start = time.perf_counter()
    env = {"PATH": os.defpath, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
    out, err = workdir / "stdout", workdir / "stderr"
    try:
        with stdin.open("rb") as source, out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [*network_prefix(), *command],
                cwd=workdir,
                env=env,
                stdin=source,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_limit(limits, address_space),
            )
    except OSError as e:
        return Outcome("sandbox", f"could not start {command[0]}: {e}", time.perf_counter() - start)
    try:
        proc.wait(timeout=limits.timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    kill_group(proc.pid)
    proc.wait()
    seconds = time.perf_counter() - start
    output = tail(out, limits.output_kb * 1024)
    if timed_out:
        return Outcome("timeout", "wall-clock limit", seconds, output)
    if proc.returncode < 0:
        return Outcome("crash", f"signal {-proc.returncode}", seconds, output)
    if proc.returncode != 0:
        last = [line for line in tail(err).splitlines() if line.strip()]
        return Outcome("error", (last[-1] if last else f"exit status {proc.returncode}")[:300], seconds, output)
    return Outcome("passed", "", seconds, output)


def _compile(chain: Toolchain, src: Path) -> Outcome | None:
    """None when the program compiled, else its "syntax" outcome with the first error line."""
    start = time.perf_counter()
    try:
        for command in chain.compile(src):
            done = subprocess.run(command, cwd=src.parent, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if done.returncode != 0:
                errors = [line for line in (done.stderr + done.stdout).splitlines() if "error" in line.lower()]
                detail = (errors or [f"{command[0]} exit status {done.returncode}"])[0]
                return Outcome("syntax", detail[:300], time.perf_counter() - start)
    except subprocess.TimeoutExpired:
        return Outcome("timeout", "compilation time limit", time.perf_counter() - start)
    except OSError as e:
        return Outcome("sandbox", f"could not run the compiler: {e}", time.perf_counter() - start)
    return None


def run_native(language: str, source: str, inputs: Sequence[str], limits: Limits = Limits()) -> list[Outcome] | None:  # noqa: B008
    """Compile once, then run on each input in turn, stopping after the first run that does not exit cleanly;
    None when no toolchain for the language is installed."""
    chain = toolchain(language)
    if chain is None:
        return None
    workdir = Path(tempfile.mkdtemp(prefix="diffill-native-"))
    try:
        src = workdir / chain.file_name(source)
        src.write_text(source, encoding="utf-8")
        failed = _compile(chain, src)
        if failed is not None:
            return [failed]
        command = chain.run(src, limits)
        outcomes = []
        for text in inputs:
            (workdir / "stdin").write_text(text, encoding="utf-8")
            outcomes.append(_run(command, workdir, workdir / "stdin", limits, not chain.virtual_machine))
            if not outcomes[-1].passed:
                break
        return outcomes
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
