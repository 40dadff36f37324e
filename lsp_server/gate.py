"""`ModelGate`: at most one model call in flight, held until its worker thread returns, cancelled or not.

A model call runs in a worker thread, and a thread cannot be interrupted. If the request that started it is
cancelled (`$/cancelRequest`, which editors send for every superseded keystroke) and that released the turn,
the next request would start a second model call that queues on the engine's own lock, the next a third, and so
on: the model work piles up behind the user (seconds of latency, hundreds of MB of threads). So a turn is handed
to the worker: it ends when the thread returns, not when the awaiting coroutine does. Requests waiting for a turn
re-check, once they have it, whether they are still wanted (a newer keystroke, an edit) and are dropped before
they start; a cancelled waiter simply leaves the queue.

Usage, on the event loop:

    async with gate.turn() as turn:       # waits for the previous model call's thread to return
        if stale: return None             # dropped: leaving the block ends the turn
        texts = await turn.run(work)      # the thread keeps the turn until it returns

The counters are what `diffill/stats` reports, so tests and benchmarks can check the promise by counts.

Every model call runs on the gate's one worker thread (`ModelGate.executor`), and so does everything else that
runs torch in the server (loading, warming up, closing an engine: `ModelGate.call`). With OpenMP each thread
that runs torch code gets its own pool of worker threads; a model that is loaded on one thread and run on others
was measured 15-25% slower per request on the 2-core CPU than one that lives on a single thread
(docs/speed.md, round 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["GateCounts", "ModelGate", "Turn"]

T = TypeVar("T")


@dataclass
class GateCounts:
    model_calls: int = 0  # started (worker threads run)
    model_in_flight: int = 0  # worker threads running now: 0 or 1
    model_in_flight_peak: int = 0  # the most ever running at once
    model_waiting: int = 0  # requests waiting for a turn now
    model_dropped: int = 0  # turns ended without a model call (stale, answered by the cache, engine gone)
    model_abandoned: int = 0  # calls whose request was cancelled while they ran (the answer still fills the cache)


class Turn:
    """The right to start one model call; see the module docstring."""

    def __init__(self, gate: ModelGate) -> None:
        self._gate = gate
        self.handed_over = False

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` in a worker thread; the turn ends when the thread returns, even if this await is cancelled."""
        if self.handed_over:
            raise RuntimeError("a turn runs one model call")
        counts = self._gate.counts
        future = asyncio.get_running_loop().run_in_executor(self._gate.executor, work)
        self.handed_over = True
        counts.model_calls += 1
        counts.model_in_flight += 1
        counts.model_in_flight_peak = max(counts.model_in_flight_peak, counts.model_in_flight)
        future.add_done_callback(self._gate._call_done)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                counts.model_abandoned += 1
            raise


class ModelGate:
    """One model call at a time, for every document: the engine runs one call at a time anyway."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.counts = GateCounts()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffill-model")

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """Engine work that is not a completion (load, warm-up, close, forget) on the model's thread, in order
        with the model calls; it takes no turn, so it never counts as a model call."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[Turn]:
        self.counts.model_waiting += 1
        try:
            await self._lock.acquire()  # a cancelled waiter leaves the queue here
        finally:
            self.counts.model_waiting -= 1
        turn = Turn(self)
        try:
            yield turn
        finally:
            if not turn.handed_over:
                self.counts.model_dropped += 1
                self._lock.release()

    def _call_done(self, future: asyncio.Future[Any]) -> None:
        self.counts.model_in_flight -= 1
        self._lock.release()
        if not future.cancelled():
            future.exception()  # retrieved here: an abandoned call's error must not be logged as "never retrieved"
