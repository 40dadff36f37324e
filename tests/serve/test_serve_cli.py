"""`diffill serve` as a process: starts on an ephemeral loopback port, logs to stderr, stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from serve_wire import call


def test_diffill_serve_process_serves_and_stops_on_sigterm(tiny_checkpoint: Path) -> None:
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--model", str(tiny_checkpoint), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # the process announces its address on stderr once it listens
            if match := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line):
                url = match.group(1)
                break
        assert url is not None, "the server never said where it listens"
        assert call(url, "GET", "/health").data["ready"] is True
        assert call(url, "POST", "/infill", {"input_prefix": "x = ", "n_predict": 4}).status == 200
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert stdout == ""  # stdout carries no logs
