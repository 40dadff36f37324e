"""`diffill serve` as a process: starts on an ephemeral loopback port, logs to stderr, stops on SIGTERM; binds its
port before loading the model."""

from __future__ import annotations

import socket
from pathlib import Path

from serve_wire import call, serve_process

from engine.serve import main


def test_diffill_serve_process_serves_and_stops_on_sigterm(tiny_checkpoint: Path) -> None:
    with serve_process(tiny_checkpoint, "--threads", "1") as server:
        assert call(server.url, "GET", "/health").data["ready"] is True
        assert call(server.url, "GET", "/v1/info").data["cpu_threads"] == 1
        assert call(server.url, "POST", "/infill", {"input_prefix": "x = ", "n_predict": 4}).status == 200
        assert server.stop() == 0
        assert server.stdout == ""  # stdout carries no logs
    assert "Traceback" not in server.stderr


def test_a_busy_port_fails_before_the_model_loads(capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        # The model path does not exist: had the server loaded it first, the error would be about the model.
        assert main(["--port", str(port), "--model", "/nonexistent", "--log-level", "WARNING"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "/nonexistent" not in err
