"""Fixtures for the serving tests: the tiny checkpoint's engine, a reference engine, and servers on ephemeral
ports of 127.0.0.1 that are always stopped. The raw HTTP client lives in ``serve_wire``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api import LocalEngine, load_engine
from engine.serve.app import ServeConfig
from engine.serve.server import ServeThread


@pytest.fixture(scope="session")
def serve_engine(tiny_checkpoint: Path) -> LocalEngine:
    """The engine servers run (shared: the model is read-only at inference)."""
    return load_engine(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def reference(tiny_checkpoint: Path) -> LocalEngine:
    """A separate in-process engine: what a request must equal when run alone."""
    return load_engine(tiny_checkpoint, device="cpu")


ServerFactory = Callable[..., ServeThread]


@pytest.fixture
def make_server(serve_engine: LocalEngine) -> Iterator[ServerFactory]:
    """Start servers with a given config (port 0 = ephemeral); every one is stopped after the test."""
    started: list[ServeThread] = []

    def factory(**overrides: Any) -> ServeThread:
        server = ServeThread(serve_engine, ServeConfig(**{"port": 0, **overrides})).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.server.app.scheduler.resume()
        server.stop()


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[ServeThread]:
    """A default server shared by a module's tests (its own engine, so other servers do not share its caches)."""
    with ServeThread(load_engine(tiny_checkpoint, device="cpu"), ServeConfig(port=0)) as running:
        yield running
