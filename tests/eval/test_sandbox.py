"""The sandbox survives what a model's completion can do: loops, forks, memory hogs, crashes, early exits, network.

Each test runs one real child interpreter with short limits (about 0.1 s each, 1-2 s for the timeouts).
"""

from __future__ import annotations

import os
import socket

import pytest

from eval.sandbox import Limits, capabilities, run_program

FAST = Limits(timeout_s=1.5, memory_mb=256)


def test_a_program_that_runs_to_its_end_passes() -> None:
    outcome = run_program("x = 1 + 1\nassert x == 2\nprint('ok')\n", FAST)
    assert outcome.passed and outcome.kind == "passed"
    assert "ok" in outcome.output


@pytest.mark.parametrize(
    ("source", "kind", "detail"),
    [
        ("assert 1 == 2", "failed", "AssertionError"),
        ("undefined_name", "error", "NameError"),
        ("def f(:\n    pass", "syntax", "SyntaxError"),
        ("import sys\nsys.exit(0)", "exit", "SystemExit"),
    ],
)
def test_exceptions_are_classified(source: str, kind: str, detail: str) -> None:
    outcome = run_program(source, FAST)
    assert (outcome.kind, outcome.passed) == (kind, False)
    assert detail in outcome.detail


def test_an_infinite_loop_times_out() -> None:
    outcome = run_program("while True:\n    pass\n", FAST)
    assert outcome.kind == "timeout"
    assert outcome.seconds < FAST.timeout_s + 3


def test_os_exit_zero_before_the_end_is_not_a_pass() -> None:
    outcome = run_program("import os\nprint('passed', flush=True)\nos._exit(0)\nassert False\n", FAST)
    assert outcome.kind == "exit" and not outcome.passed


def test_a_segfault_is_a_crash() -> None:
    outcome = run_program("import ctypes\nctypes.string_at(0)\n", FAST)
    assert outcome.kind == "crash" and "SIGSEGV" in outcome.detail


def test_a_memory_hog_hits_the_address_space_limit() -> None:
    outcome = run_program("hog = []\nwhile True:\n    hog.append(bytearray(10**7))\n", FAST)
    assert outcome.kind == "memory"


def test_os_fork_is_refused() -> None:
    outcome = run_program("import os\nfor _ in range(30):\n    os.fork()\n", FAST)
    assert outcome.kind == "blocked" and "os.fork" in outcome.detail


# At most 2**5 = 32 processes even where nothing limits them (root without a pids cgroup).
BOUNDED_FORK_BOMB = """
import ctypes, os, time
libc = ctypes.CDLL(None)
print("leader", os.getpid(), flush=True)
forks = [libc.fork() for _ in range(5)]
if all(f != 0 for f in forks):
    print("forks", forks, flush=True)
time.sleep(60)
"""


def test_a_fork_bomb_below_the_audit_hooks_is_bounded_and_cleaned_up() -> None:
    outcome = run_program(BOUNDED_FORK_BOMB, FAST)
    assert outcome.kind == "timeout"
    leader = int(outcome.output.split("leader", 1)[1].split()[0])
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(leader, 0)
    caps = capabilities()
    if caps["pids_cgroup"] or caps["rlimit_nproc"]:
        assert "forks [-1, -1, -1, -1, -1]" in outcome.output


def test_threads_are_refused_when_processes_are_limited() -> None:
    caps = capabilities()
    if not (caps["pids_cgroup"] or caps["rlimit_nproc"]):
        pytest.skip("no process limit on this machine (root without a writable pids cgroup)")
    outcome = run_program("import threading\nt = threading.Thread(target=print)\nt.start()\n", FAST)
    assert outcome.kind == "error" and "thread" in outcome.detail


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def _connect_program(port: int) -> str:
    return f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')\n"


def _accepted_nothing(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def test_network_access_is_blocked(listener: socket.socket) -> None:
    outcome = run_program(_connect_program(listener.getsockname()[1]), FAST)
    assert outcome.kind == "blocked" and "socket" in outcome.detail
    assert _accepted_nothing(listener)


def test_the_network_namespace_alone_has_no_route_to_the_host(listener: socket.socket) -> None:
    if not capabilities()["network_namespace"]:
        pytest.skip("unshare --net is not available here; only the audit hooks guard the network")
    limits = Limits(timeout_s=3, memory_mb=256, audit_hooks=False)
    outcome = run_program(_connect_program(listener.getsockname()[1]), limits)
    assert not outcome.passed and "connected" not in outcome.output
    assert _accepted_nothing(listener)


def test_writes_outside_the_working_directory_are_refused(tmp_path) -> None:
    target = tmp_path / "escaped.txt"
    outcome = run_program(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert outcome.kind == "blocked" and not target.exists()
    assert run_program("open('inside.txt', 'w').write('x')\nassert open('inside.txt').read() == 'x'\n", FAST).passed


def test_unbounded_output_stops_at_the_file_size_limit() -> None:
    outcome = run_program("while True:\n    print('x' * 1000)\n", Limits(timeout_s=5, memory_mb=256, output_kb=64))
    assert outcome.kind == "error" and "too large" in outcome.detail
