"""The model gate: one model call in flight, kept by its worker thread even when its request is cancelled.

The work is a real blocking function in a real worker thread, held on a `threading.Event`, so "still running"
is a fact of the test rather than a race with the clock.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from lsp_server.gate import ModelGate


def blocking(started: threading.Event, release: threading.Event, value: str):
    def work() -> str:
        started.set()
        assert release.wait(10), "the test never released the worker"
        return value

    return work


async def call(gate: ModelGate, work, wanted=lambda: True) -> str | None:
    async with gate.turn() as turn:
        if not wanted():
            return None
        return await turn.run(work)


async def wait_for(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


async def test_a_cancelled_call_keeps_the_gate_until_its_thread_returns():
    gate = ModelGate()
    started, release = threading.Event(), threading.Event()
    first = asyncio.ensure_future(call(gate, blocking(started, release, "first")))
    await wait_for(started)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert gate.counts.model_in_flight == 1 and gate.counts.model_abandoned == 1  # the thread still runs

    second_started = threading.Event()
    second = asyncio.ensure_future(call(gate, blocking(second_started, threading.Event(), "x")))
    await asyncio.sleep(0)  # let it reach the gate
    assert gate.counts.model_waiting == 1 and not second_started.is_set()
    second.cancel()  # a cancelled waiter leaves the queue without a model call
    with pytest.raises(asyncio.CancelledError):
        await second

    third_started, third_release = threading.Event(), threading.Event()
    third_release.set()
    third = asyncio.ensure_future(call(gate, blocking(third_started, third_release, "third")))
    await asyncio.sleep(0)
    assert not third_started.is_set()
    release.set()  # the first thread returns: only now does the next call start
    assert await third == "third"
    counts = gate.counts
    assert (counts.model_calls, counts.model_in_flight, counts.model_in_flight_peak) == (2, 0, 1)
    assert counts.model_waiting == 0


async def test_waiters_superseded_while_queued_are_dropped_before_they_start():
    gate = ModelGate()
    started, release = threading.Event(), threading.Event()
    latest = {"generation": 0}
    running = asyncio.ensure_future(call(gate, blocking(started, release, "running")))
    await wait_for(started)
    queued = []
    for generation in range(1, 6):
        latest["generation"] = generation
        work = blocking(threading.Event(), release, f"call {generation}")
        queued.append(asyncio.ensure_future(call(gate, work, lambda g=generation: latest["generation"] == g)))
    await asyncio.sleep(0)
    assert gate.counts.model_waiting == 5
    release.set()
    assert await running == "running"
    assert await asyncio.gather(*queued) == [None, None, None, None, "call 5"]
    counts = gate.counts
    assert (counts.model_calls, counts.model_dropped, counts.model_in_flight_peak) == (2, 4, 1)


async def test_an_error_in_the_work_ends_the_turn():
    gate = ModelGate()

    def broken() -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await call(gate, broken)
    assert await call(gate, lambda: "next") == "next"
    assert gate.counts.model_in_flight == 0
