"""Per-session context caches under a memory budget (least recently used first out).

A session is one document in one editor: its requests share a long token prefix (typing appends to the prefix),
so keeping its ``ContextCache`` warm turns a full prefill into a few tokens. One store serves both drivers of the
model: ``LocalEngine`` (in-process, one request at a time) and the server's batch scheduler. It is owned by the
thread that runs the model (no locking); ``nbytes`` and ``count`` are plain ints other threads may read for
metrics.

A session in use by a running request is never evicted, and the scheduler admits one request per session at a
time (two requests must not rewrite the same cache between each other's steps). Requests without a session id
get a private cache that is dropped when they finish.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from engine.cache import ContextCache


class SessionStore:
    def __init__(self, new_cache: Callable[[], ContextCache], budget_bytes: int) -> None:
        self.new_cache = new_cache
        self.budget_bytes = budget_bytes
        self._idle: OrderedDict[str, ContextCache] = OrderedDict()  # least recently used first
        self._busy: dict[str, ContextCache] = {}
        self._transient_bytes = 0
        self.nbytes = 0
        self.count = 0

    @property
    def idle_sessions(self) -> list[str]:
        """Cached sessions not in use, least recently used first."""
        return list(self._idle)

    def busy(self, session_id: str | None) -> bool:
        return session_id is not None and session_id in self._busy

    def acquire(self, session_id: str | None) -> ContextCache:
        """The session's cache (a fresh one for a new or anonymous session), marked busy until ``release``."""
        ctx = self._idle.pop(session_id, None) if session_id is not None else None
        if ctx is None:
            ctx = self.new_cache()
        if session_id is not None:
            self._busy[session_id] = ctx
        return ctx

    def release(self, session_id: str | None, ctx: ContextCache, *, keep: bool = True) -> None:
        """Hand a cache back after its request; `keep=False` drops it (e.g. after a failed prefill)."""
        if session_id is not None:
            self._busy.pop(session_id, None)
            if keep:
                self._idle[session_id] = ctx  # most recently used last
        self.evict()

    def forget(self, session_id: str) -> None:
        self._idle.pop(session_id, None)
        self._account()

    def evict(self) -> None:
        """Drop idle sessions, oldest first, until the caches fit the budget (busy ones always stay)."""
        self._account()
        while self.nbytes > self.budget_bytes and self._idle:
            self._idle.popitem(last=False)
            self._account()

    def account(self, transient_bytes: int = 0) -> None:
        """Refresh the byte count; `transient_bytes` = private caches of anonymous requests now running."""
        self._transient_bytes = transient_bytes
        self._account()

    def _account(self) -> None:
        caches = [*self._idle.values(), *self._busy.values()]
        self.nbytes = sum(c.cache.nbytes for c in caches) + self._transient_bytes
        self.count = len(caches)
