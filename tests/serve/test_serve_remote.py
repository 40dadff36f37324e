"""RemoteEngine is a CompletionEngine: same answers as LocalEngine through a real server, and clear errors."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from serve_wire import PREFIX, SUFFIX

from engine.contract import CompletionEngine, SampleOptions
from engine.errors import DiffillError
from engine.remote import RemoteEngine, RemoteError


def test_remote_engine_round_trips_and_equals_local_engine(server, reference) -> None:
    remote = RemoteEngine(server.url)
    assert isinstance(remote, CompletionEngine)
    assert remote.ready
    info = remote.describe()
    assert info["max_canvas"] == server.app.limits.max_canvas and info["max_context"] > 0
    assert info["remote"] == server.url
    # Editors size their requests by it, and quick-ask a diffusion box as they would the model in-process.
    from fim.request import FimSettings

    assert info["kind"] == "diffusion" and FimSettings().fitted(info).first_steps == FimSettings.first_steps
    options = SampleOptions(steps=6, threshold=0.8, temperature=1.2, seed=11)
    for session in ("doc", "doc"):  # the second request reuses the session's cache on both sides
        kwargs = dict(language="python", canvas_length=16, num_candidates=3, options=options)
        got = remote.complete(PREFIX, SUFFIX, session_id=session, **kwargs)
        assert got == reference.complete(PREFIX, SUFFIX, session_id=f"remote-{session}", **kwargs)
    remote.close()


def test_a_box_hands_its_model_calibration_to_its_clients(tiny_checkpoint, tmp_path) -> None:
    """The checkpoint's confidence.json reaches editors through /v1/info, as fim reads it."""
    import json
    import shutil

    from engine.api import load_engine
    from engine.serve.app import ServeConfig
    from engine.serve.server import ServeThread
    from fim.confidence import Calibration

    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    fit = {"coefficients": {"bias": -2.0, "score": 1.5}, "min_confidence": 0.25, "fitted_on": "a test"}
    (model / "confidence.json").write_text(json.dumps(fit))
    with ServeThread(load_engine(model, device="cpu"), ServeConfig(port=0)) as box, RemoteEngine(box.url) as remote:
        calibration = Calibration.of(remote.describe())
    assert calibration.min_confidence == 0.25 and calibration.fitted_on == "a test"
    assert calibration.coefficients["score"] == 1.5 and calibration.coefficients["margin"] == 0.0


def test_remote_errors_are_clear(make_server) -> None:
    server = make_server(tokens=("right",), max_body_bytes=4096)
    kwargs = dict(language="python", canvas_length=8, num_candidates=1)
    with pytest.raises(RemoteError, match="refused the token") as e, RemoteEngine(server.url, token="wrong") as wrong:
        wrong.complete("x", "", **kwargs)
    assert e.value.status == 401 and isinstance(e.value, DiffillError)
    remote = RemoteEngine(server.url, token="right")
    with pytest.raises(RemoteError, match="larger than the server accepts") as e:
        remote.complete("x" * 10_000, "", **kwargs)
    assert e.value.status == 413
    with pytest.raises(RemoteError, match="exceeds the server's limits.*num_candidates") as e:
        remote.complete("x", "", **{**kwargs, "num_candidates": 17})
    assert e.value.status == 422
    assert remote.complete("x", "", **kwargs)  # the pooled connection still works after errors
    remote.close()


def test_a_timed_out_call_is_an_error_and_cancels_the_request(make_server) -> None:
    server = make_server()
    scheduler = server.app.scheduler
    scheduler.pause()
    remote = RemoteEngine(server.url, timeout=0.5)
    with pytest.raises(RemoteError, match="no reply .* within 0.5 s"):
        remote.complete("x", "", language="python", canvas_length=8, num_candidates=1)
    remote.close()
    assert scheduler.wait_until(lambda: server.app.metrics.cancelled_total == 1, timeout=20)
    assert scheduler.queue_depth == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_an_error_and_not_ready() -> None:
    remote = RemoteEngine(f"http://127.0.0.1:{free_port()}")
    assert not remote.ready
    with pytest.raises(RemoteError, match="connection refused"):
        remote.complete("x", "", language="python", canvas_length=8, num_candidates=1)
    with pytest.raises(RemoteError, match="invalid remote URL"):
        RemoteEngine("ftp://host")


@contextmanager
def canned_server(reply: bytes) -> Iterator[str]:
    """A one-trick HTTP server answering every request with `reply` (raw bytes), then closing."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(reply)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as srv:
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.server_address[1]}"
        finally:
            srv.shutdown()


@pytest.mark.parametrize(
    "reply,message,status",
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", "server error \\(500\\): oops", 500),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "overloaded or stopping", 503),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\nContent-Length: 3\r\n\r\nabc",
            "malformed reply",
            None,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n\x90", "malformed reply", None),  # a list, not a map
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed reply", None),
    ],
)
def test_bad_replies_are_clear_errors(reply: bytes, message: str, status: int | None) -> None:
    with canned_server(reply) as url:
        with pytest.raises(RemoteError, match=message) as e, RemoteEngine(url) as remote:
            remote.complete("x", "", language="python", canvas_length=8, num_candidates=1)
    assert e.value.status == status
