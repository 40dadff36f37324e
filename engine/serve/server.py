"""The network server: startup checks (token on non-loopback hosts, TLS), the connection loop, graceful drain,
and a thread runner.

``Server`` owns the listening socket and one task per connection; each connection reads requests one at a time
and answers them through ``App``. The route and token are checked on a request's head, before its body is read.
Protocol errors are answered and the connection closed after a short linger (so a client still sending an
oversized body receives the 413 instead of a reset); nothing a client sends ends the server. Connections are
capped in number, per address too (``guard.ConnectionTable``: a stalled socket gives its slot to a newcomer).

Stopping (``Server.stop``, what SIGTERM/SIGINT run): stop accepting and close idle connections, refuse new
requests with 503 + ``Retry-After``, let the requests already queued or running finish for up to
``drain_seconds``, answer whatever is left 503, and close once every in-flight request has had its reply. A second
signal cuts the drain short.

The listening socket is bound before the model loads (``bind``), so a busy port fails in milliseconds.
``ServeThread`` runs a server on its own event loop in a background thread, for tests, benchmarks and embedding;
``serve_forever`` is what the CLI runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
import sys
import threading
from typing import Any

from engine.api import LocalEngine
from engine.errors import DiffillError
from engine.serve.app import App, ServeConfig
from engine.serve.guard import RESOURCE_ERRNOS, ConnectionTable, LoopErrorLog, default_max_connections, is_disconnect
from engine.serve.http import Connection, HttpError, HttpLimits, Response
from engine.serve.protocol import ProtocolError, dump_json, error_body
from engine.serve.scheduler import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
Task = asyncio.Task[None]

LINGER_SECONDS = 2.0
BACKLOG = 1024  # pending connections the kernel holds while the loop is busy (capped by net.core.somaxconn)
ACCEPT_RETRY_SECONDS = 0.05  # after accept() ran out of descriptors (asyncio's own loop waits a whole second)
REPLY_GRACE_SECONDS = 5.0  # after the model stopped: time for the last replies to be written


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
    for name in ("max_body_bytes", "max_candidates", "max_concurrent_per_token", "max_batch", "bulk_tokens"):
        if getattr(config, name) < 1:
            raise ServeConfigError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_steps", "max_context", "max_canvas"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise ServeConfigError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("cache_budget_mb", "rate_per_token", "burst_per_token", "max_chars", "max_connections"):
        if getattr(config, name) < 0:
            raise ServeConfigError(f"--{name.replace('_', '-')} must not be negative")
    for name in ("max_connections_per_ip", "drain_seconds"):
        if getattr(config, name) < 0:
            raise ServeConfigError(f"--{name.replace('_', '-')} must not be negative")
    if config.header_timeout <= 0:
        raise ServeConfigError("--header-timeout must be positive")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ServeConfigError(f"cannot load TLS certificate {cert} / key {key}: {e}") from e
    return ctx


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (before the model loads: a busy port or a bad address fails at once, not after)."""
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if address and ":" not in address:
        with contextlib.suppress(OSError):
            family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    try:
        return socket.create_server((address, port), family=family, backlog=BACKLOG)
    except OSError as e:
        raise ServeConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


class Server:
    def __init__(self, engine: LocalEngine, config: ServeConfig) -> None:
        check_config(config)
        if config.max_canvas and config.max_canvas > engine.runner.max_canvas:
            raise ServeConfigError(
                f"--max-canvas {config.max_canvas} exceeds the model's max_canvas {engine.runner.max_canvas}"
            )
        self.config = config
        self.app = App(engine, config)
        self.limits = HttpLimits(max_body_bytes=config.max_body_bytes, header_timeout=config.header_timeout)
        cap = config.max_connections or default_max_connections()
        # Slots are held by connection tasks (from accept, before any TLS handshake or byte read).
        self.connections: ConnectionTable[Task] = ConnectionTable(cap, config.max_connections_per_ip or cap)
        self._ssl = tls_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        self._listener: socket.socket | None = None
        self._accepting: Task | None = None
        self._tasks: set[Task] = set()  # every connection task, refused ones included
        self._streams: dict[Task, Connection] = {}  # connection tasks whose streams are set up
        self._errors = LoopErrorLog()
        self._hurry: asyncio.Event | None = None  # created on the loop in start()
        self.draining = False
        self.port = config.port

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{scheme}://{host}:{self.port}"

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on `sock` (see ``bind``; bound here when None) and start the model thread."""
        asyncio.get_running_loop().set_exception_handler(self._errors)
        self._hurry = asyncio.Event()
        self._listener = sock or bind(self.config.host, self.config.port)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.app.scheduler.start()
        self._accepting = asyncio.create_task(self._accept_loop(self._listener))
        log.info("serving %s (%s) on %s", self.app.engine.name, self._mode(), self.url)

    def _mode(self) -> str:
        sched = self.app.scheduler
        batching = f"continuous batching up to {sched.max_batch}" if sched.max_batch > 1 else "no batching"
        auth = f"{len(self.config.tokens)} token(s)" if self.config.tokens else "no authentication"
        return f"{batching}, {auth}, up to {self.connections.max_connections} connections"

    def hurry(self) -> None:
        """End a drain now (a second SIGTERM): what still runs is answered 503."""
        if self._hurry is not None:
            self._hurry.set()

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop accepting, let requests already read finish for up to `drain_seconds`, answer the rest 503, and
        return once every in-flight request has had its reply (or REPLY_GRACE_SECONDS passed)."""
        self.draining = self.app.draining = True
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        for task in list(self._tasks):
            conn = self._streams.get(task)
            if self.connections.is_waiting(task) and (conn is None or not conn.buf):
                self._evict(task)  # waiting for a request that has not started: nothing to answer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        if drain_seconds > 0 and self.app.inflight:
            log.info("draining: %d requests in flight, up to %.0f s", self.app.inflight, drain_seconds)
        # Requests already read go on (tokenizing, queued or running); new ones are answered 503.
        while self.app.inflight and loop.time() < deadline and not (self._hurry and self._hurry.is_set()):
            await asyncio.sleep(0.05)
        scheduler = self.app.scheduler
        left = scheduler.active + scheduler.queue_depth
        await asyncio.to_thread(scheduler.stop)  # answers whatever is left 503
        if left:
            log.info("answered %d unfinished requests 503", left)
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=REPLY_GRACE_SECONDS)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- connections

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept one connection at a time and give it a slot before anything else runs, so that the slots (and
        file descriptors) in use never exceed the cap by more than the connection being accepted."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, address = await loop.sock_accept(listener)
            except OSError as e:
                if e.errno not in RESOURCE_ERRNOS:
                    raise
                self._errors.resource_error("accept() failed", e)
                await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                continue
            ip = str(address[0]) if isinstance(address, tuple) else str(address)
            victims = None if self.draining else self.connections.make_room(ip)
            for victim in victims or ():
                self._evict(victim)
            task = asyncio.create_task(self._connection(client, admitted=victims is not None))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if victims is not None:
                self.connections.add(task, ip)
                self.app.metrics.observe_connection(evicted=len(victims))

    def _evict(self, task: Task) -> None:
        self.connections.remove(task)
        conn = self._streams.get(task)
        if conn is not None:
            conn.abort()
        task.cancel()

    async def _open(self, client: socket.socket) -> Connection:
        """Streams over an accepted socket (the TLS handshake, when configured, happens here)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        tls: dict[str, Any] = {"ssl": self._ssl, "ssl_handshake_timeout": self.config.header_timeout}
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, client, **(tls if self._ssl else {}))
        return Connection(reader, asyncio.StreamWriter(transport, protocol, reader, loop), self.limits)

    async def _connection(self, client: socket.socket, admitted: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn: Connection | None = None
        try:
            conn = await self._open(client)
            if not admitted:
                await self._refuse(conn)
                return
            self._streams[task] = conn
            self.app.connections += 1
            try:
                await self._serve_connection(conn, task)
            finally:
                self.app.connections -= 1
        except asyncio.CancelledError:
            pass  # evicted, or server shutdown
        except Exception as e:
            if not is_disconnect(e):  # a client that went away or stalled: its requests are already cancelled
                log.exception("connection %s failed", conn.peer if conn else client)
        finally:
            self.connections.remove(task)
            self._streams.pop(task, None)
            if conn is not None:
                await conn.close()

    async def _refuse(self, conn: Connection) -> None:
        """Every slot is busy with a request (or the server is stopping): a canned 503, never a request read (the
        lingering close drops what the client sent, so that the reply is not destroyed by a reset)."""
        self.app.metrics.observe_connection(refused=1)
        body = dump_json(error_body(503, "the server is at its connection limit or stopping; retry later"))
        response = Response(503, body, headers=[("Retry-After", str(int(RETRY_AFTER_SECONDS)))])
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(LINGER_SECONDS):
                await conn.send(response, keep_alive=False)
                await conn.discard_input(LINGER_SECONDS)

    async def _serve_connection(self, conn: Connection, task: Task) -> None:
        while not self.draining:
            self.connections.waiting(task, True)
            try:
                request = await conn.read_head()
                if request is None:
                    return
                self.connections.waiting(task, False)
                if self.draining:
                    raise HttpError(503, "the server is stopping", request.path, RETRY_AFTER_SECONDS)
                try:
                    route = self.app.route(request)
                except ProtocolError as e:  # refused on its head: the body is never read
                    raise HttpError(e.status, e.message, request.path, e.retry_after) from None
                await conn.read_body(request, self.app.body_limit(request))
            except HttpError as e:
                self.connections.waiting(task, False)
                await self._reject(conn, e)
                return
            response = await self.app.handle(request, conn, route)
            if conn.eof and response.status == 499:
                return  # nobody is listening
            keep_alive = request.keep_alive and not self.draining
            await conn.send(response, keep_alive)
            if not keep_alive or response.close:
                return

    async def _reject(self, conn: Connection, error: HttpError) -> None:
        """Answer a request that could not be read or was refused on its head, then close after draining what the
        client still sends."""
        self.app.metrics.observe_request(error.path or "other", error.status)
        response = self.app.error(error.path, error.status, error.message, error.retry_after)
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):  # the client may be gone already
            await conn.send(response, keep_alive=False)
            await conn.discard_input(LINGER_SECONDS)


async def serve_forever(engine: LocalEngine, config: ServeConfig, sock: socket.socket | None = None) -> None:
    """Run until SIGINT/SIGTERM, then drain (``Server.stop``); a second signal cuts the drain short."""
    server = Server(engine, config)
    await server.start(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.info("second signal: stopping now")
            server.hurry()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    print(f"diffill serve: listening on {server.url}", flush=True, file=sys.stderr)
    try:
        await stop.wait()
        log.info("stopping: no new connections, draining for up to %.0f s", config.drain_seconds)
    finally:
        await server.stop(config.drain_seconds)
    log.info("stopped")


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
        self._drain_seconds = 0.0

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
        await self.server.stop(self._drain_seconds)

    def start(self) -> ServeThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop the server (``Server.stop``: in-flight requests are answered, after up to `drain_seconds`)."""
        self._drain_seconds = drain_seconds
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> ServeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
