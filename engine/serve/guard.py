"""What keeps a shared ``diffill serve`` box usable under stress: connection slots, per-token quotas, file
descriptors, and logs that stay readable when clients misbehave.

* ``ConnectionTable``: at most ``max_connections`` open connections, ``max_per_ip`` from one address. A new
  connection over a cap takes the slot of the connection that has waited longest for a request (a stalled or idle
  socket; nginx drops such connections first too); connections in the middle of a request are never closed to
  make room, and when every slot holds one the newcomer gets a 503. A flood of silent sockets therefore cannot
  lock legitimate clients out, even from the same address.
* ``TokenQuota``: per token (or per server without tokens), at most ``max_concurrent`` completion requests in
  flight and, optionally, ``rate`` requests per second with bursts of ``burst`` (a token bucket); refusals are
  429 with ``Retry-After``, so a team's editors back off instead of retrying in a loop.
* ``raise_fd_limit`` raises the soft ``RLIMIT_NOFILE`` to the hard one at start; ``default_max_connections``
  derives the connection cap from it, keeping descriptors for the model, threads and logs.
* ``LoopErrorLog``: asyncio's exception handler. Errors of ``accept()`` (``EMFILE`` when descriptors run out)
  are logged at most once per interval with a count; ordinary disconnects (``is_disconnect``) are not errors.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from engine.serve.protocol import ProtocolError

log = logging.getLogger(__name__)

FD_RESERVE = 128  # descriptors kept for the model files, worker threads, logs and the listening socket
MAX_AUTO_CONNECTIONS = 16384
DISCONNECT_ERRNOS = frozenset(
    {errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.EBADF, errno.ESHUTDOWN, errno.ETIMEDOUT}
)
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

C = TypeVar("C")


def is_disconnect(exc: BaseException | None) -> bool:
    """A client that went away, stalled or spoke broken TLS: normal on a network, never worth a traceback."""
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.IncompleteReadError | ssl.SSLError):
        return True
    return isinstance(exc, OSError) and exc.errno in DISCONNECT_ERRNOS


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (a box serving a team needs more than the usual 1024);
    returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, e)
    return soft if soft != resource.RLIM_INFINITY else MAX_AUTO_CONNECTIONS + FD_RESERVE


def default_max_connections() -> int:
    """The connection cap the open-file limit allows, keeping FD_RESERVE descriptors for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_AUTO_CONNECTIONS
    return max(16, min(MAX_AUTO_CONNECTIONS, soft - FD_RESERVE))


class ConnectionTable(Generic[C]):
    """Open connections by address, and the order in which they started waiting for their next request.

    Owned by the event loop (no locking). The caller closes the victims ``make_room`` names."""

    def __init__(self, max_connections: int, max_per_ip: int) -> None:
        self.max_connections, self.max_per_ip = max_connections, max_per_ip
        self._ip: dict[C, str] = {}
        self._per_ip: Counter[str] = Counter()
        self._waiting: OrderedDict[C, None] = OrderedDict()  # longest waiting first

    def __len__(self) -> int:
        return len(self._ip)

    def make_room(self, ip: str) -> list[C] | None:
        """Connections to close so that one more from `ip` fits, or None when only busy ones could go."""
        victims: list[C] = []
        if self._per_ip[ip] >= self.max_per_ip:
            victim = self._longest_waiting(lambda c: self._ip[c] == ip)
            if victim is None:
                return None
            victims.append(victim)
        if len(self._ip) - len(victims) >= self.max_connections:
            victim = self._longest_waiting(lambda c: c not in victims)
            if victim is None:
                return None
            victims.append(victim)
        return victims

    def _longest_waiting(self, accept: Callable[[C], bool]) -> C | None:
        return next((c for c in self._waiting if accept(c)), None)

    def add(self, conn: C, ip: str) -> None:
        self._ip[conn] = ip
        self._per_ip[ip] += 1
        self._waiting[conn] = None  # a new connection waits for its first request

    def remove(self, conn: C) -> None:
        ip = self._ip.pop(conn, None)
        if ip is None:
            return
        self._per_ip[ip] -= 1
        if not self._per_ip[ip]:
            del self._per_ip[ip]
        self._waiting.pop(conn, None)

    def is_waiting(self, conn: C) -> bool:
        return conn in self._waiting

    def waiting(self, conn: C, is_waiting: bool) -> None:
        """Mark `conn` as waiting for a request (evictable) or working on one (not evictable)."""
        if conn not in self._ip:
            return
        if is_waiting:
            self._waiting[conn] = None
            self._waiting.move_to_end(conn)
        else:
            self._waiting.pop(conn, None)


class TokenQuota:
    """Concurrency and rate limits per client identity ("token-<i>", or "anonymous" without tokens)."""

    def __init__(
        self, max_concurrent: int, rate: float = 0.0, burst: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_concurrent, self.rate, self.clock = max_concurrent, rate, clock
        self.burst = float(burst or max(1, max_concurrent))
        self.inflight: Counter[str] = Counter()
        self._buckets: dict[str, tuple[float, float]] = {}  # owner -> (tokens left, when counted)

    @contextmanager
    def slot(self, owner: str) -> Iterator[None]:
        """Hold one of `owner`'s concurrent slots for a request, or raise 429 with the time to wait."""
        if self.inflight[owner] >= self.max_concurrent:
            raise ProtocolError(
                429,
                f"too many concurrent requests for this token (limit {self.max_concurrent}); cancel stale requests "
                "or ask the admin for a higher --max-concurrent-per-token",
                retry_after=1.0,
            )
        self._take(owner)
        self.inflight[owner] += 1
        try:
            yield
        finally:
            self.inflight[owner] -= 1

    def _take(self, owner: str) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        tokens, then = self._buckets.get(owner, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[owner] = (tokens, now)
            raise ProtocolError(
                429,
                f"rate limit of {self.rate:g} requests/s for this token (bursts of {self.burst:g}) reached",
                retry_after=(1.0 - tokens) / self.rate,
            )
        self._buckets[owner] = (tokens - 1.0, now)


class LoopErrorLog:
    """An asyncio exception handler: rate-limited accept errors, quiet disconnects, the rest as asyncio logs them."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._last = -float("inf")
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            self.resource_error(context.get("message", "socket error"), exc)
        elif is_disconnect(exc):
            log.debug("%s: %s", context.get("message", "connection error"), exc)
        else:
            loop.default_exception_handler(context)

    def resource_error(self, message: str, exc: OSError) -> None:
        now = self.clock()
        if now - self._last < self.interval:
            self.suppressed += 1
            return
        extra = f" ({self.suppressed} more like it in the last {now - self._last:.0f} s)" if self.suppressed else ""
        log.error("%s: %s%s; lower --max-connections or raise the open-file limit (ulimit -n)", message, exc, extra)
        self._last, self.suppressed = now, 0
