"""The network server: startup checks (token on non-loopback hosts, TLS), the connection loop, and a thread runner.

``Server`` owns the listening socket and one task per connection; each connection reads requests one at a time
and answers them through ``App``. Protocol errors are answered and the connection closed after a short linger
(so a client still sending an oversized body receives the 413 instead of a reset); nothing a client sends ends
the server. ``ServeThread`` runs a server on its own event loop in a background thread, for tests, benchmarks and
embedding; ``serve_forever`` is what the CLI runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
import sys
import threading

from engine.api import LocalEngine
from engine.errors import DiffillError
from engine.serve.app import App, ServeConfig
from engine.serve.http import Connection, HttpError, HttpLimits

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0


class ServeConfigError(DiffillError):
    """A server configuration that must not start (e.g. a public address without a token)."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach; wildcard addresses and other hostnames are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_config(config: ServeConfig) -> None:
    """Refuse configurations that would expose the model without protection, or half-configure TLS."""
    if not is_loopback(config.host) and not config.tokens:
        raise ServeConfigError(
            f"refusing to serve on {config.host!r} without a bearer token: anyone who can reach this address could "
            "use the server. Pass --token-file FILE (or --token, or DIFFILL_SERVE_TOKEN), or bind 127.0.0.1"
        )
    if any(not t or t != t.strip() or any(c.isspace() for c in t) for t in config.tokens):
        raise ServeConfigError("bearer tokens must be non-empty and contain no whitespace")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ServeConfigError("TLS needs both --tls-cert and --tls-key")
    for name in ("max_body_bytes", "max_candidates", "max_concurrent_per_token", "max_batch"):
        if getattr(config, name) < 1:
            raise ServeConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if config.cache_budget_mb < 0:
        raise ServeConfigError("--cache-budget-mb must not be negative")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ServeConfigError(f"cannot load TLS certificate {cert} / key {key}: {e}") from e
    return ctx


class Server:
    def __init__(self, engine: LocalEngine, config: ServeConfig) -> None:
        check_config(config)
        if config.max_canvas and config.max_canvas > engine.runner.max_canvas:
            raise ServeConfigError(
                f"--max-canvas {config.max_canvas} exceeds the model's max_canvas {engine.runner.max_canvas}"
            )
        self.config = config
        self.app = App(engine, config)
        self.limits = HttpLimits(max_body_bytes=config.max_body_bytes)
        self._ssl = tls_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = config.port

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        self.app.scheduler.start()
        tls = {"ssl": self._ssl, "ssl_handshake_timeout": 10.0} if self._ssl else {}
        self._server = await asyncio.start_server(self._on_connection, self.config.host, self.config.port, **tls)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving %s (%s) on %s", self.app.engine.name, self._mode(), self.url)

    def _mode(self) -> str:
        sched = self.app.scheduler
        batching = f"continuous batching up to {sched.max_batch}" if sched.max_batch > 1 else "no batching"
        auth = f"{len(self.config.tokens)} token(s)" if self.config.tokens else "no authentication"
        return f"{batching}, {auth}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.to_thread(self.app.scheduler.stop)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.app.connections += 1
        conn = Connection(reader, writer, self.limits)
        try:
            await self._serve_connection(conn)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled; its requests are already cancelled
        except asyncio.CancelledError:
            pass  # server shutdown; ending normally keeps asyncio's stream callback from logging the cancellation
        except Exception:
            log.exception("connection %s failed", conn.peer)
        finally:
            self.app.connections -= 1
            self._tasks.discard(task)
            await conn.close()

    async def _serve_connection(self, conn: Connection) -> None:
        while True:
            try:
                request = await conn.read_request()
            except HttpError as e:
                await self._reject(conn, e)
                return
            if request is None:
                return
            response = await self.app.handle(request, conn)
            if conn.eof and response.status == 499:
                return  # nobody is listening
            await conn.send(response, request.keep_alive)
            if not request.keep_alive or response.close:
                return

    async def _reject(self, conn: Connection, error: HttpError) -> None:
        """Answer a request that could not be read, then close after draining what the client still sends."""
        self.app.metrics.observe_request(error.path or "other", error.status)
        response = self.app.error(error.path, error.status, error.message)
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            await conn.send(response, keep_alive=False)
            await conn.discard_input(LINGER_SECONDS)


async def serve_forever(engine: LocalEngine, config: ServeConfig) -> None:
    """Run until SIGINT/SIGTERM, then stop accepting, cancel what runs and exit."""
    server = Server(engine, config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"diffill serve: listening on {server.url}", flush=True, file=sys.stderr)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await server.stop()


class ServeThread:
    """A server on its own event loop in a background thread: ``with ServeThread(engine, config) as s: s.url``."""

    def __init__(self, engine: LocalEngine, config: ServeConfig | None = None) -> None:
        self.config = config or ServeConfig(port=0)
        self.server = Server(engine, self.config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="diffill-serve", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def app(self) -> App:
        return self.server.app

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:
            self._error = e
            self._started.set()
            await self.server.stop()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self) -> ServeThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> ServeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
