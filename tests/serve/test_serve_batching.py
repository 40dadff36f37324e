"""Continuous batching gives each request exactly what it gets alone: through real sockets, and round by round."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from serve_wire import PREFIX, call, fim_body

from engine.api import LocalEngine
from engine.contract import CompletionRequest, CompletionResult, SampleOptions
from engine.runner import Prompt
from engine.serve.scheduler import Scheduler
from engine.sessions import SessionStore

# Two requests that differ in everything the sampler looks at. Each has >= 12 canvas rows (candidates x length):
# below that, CPU BLAS picks another kernel for the request alone than inside a batch (docs/serving.md).
REQUEST_A = fim_body(id="a", canvas_length=16, num_candidates=3, seed=1, temperature=1.0)
REQUEST_B = fim_body(
    id="b",
    prefix="class Stack:\n    def push(self, item):\n        ",
    suffix="\n\n    def pop(self):\n        return self.items.pop()\n",
    canvas_length=24,
    num_candidates=2,
    seed=7,
    steps=5,
    threshold=0.5,
    temperature=0.7,
)


def local(reference: LocalEngine, body: dict[str, Any], session: str) -> list[dict[str, Any]]:
    """The same request through LocalEngine.complete, in the wire's shape."""
    options = SampleOptions(
        steps=body.get("steps", 8),
        threshold=body.get("threshold", 0.9),
        temperature=body["temperature"],
        seed=body["seed"],
    )
    out = reference.complete(
        body["prefix"],
        body["suffix"],
        language=body["language"],
        canvas_length=body["canvas_length"],
        num_candidates=body["num_candidates"],
        options=options,
        session_id=session,
    )
    return [{"text": c.text, "score": c.score, "tokens": c.tokens} for c in out]


def test_two_clients_batched_together_get_what_each_gets_alone_and_from_local_engine(make_server, reference) -> None:
    server = make_server()
    scheduler = server.app.scheduler
    alone = {
        name: call(server.url, "POST", "/v1/fim", body).data for name, body in (("a", REQUEST_A), ("b", REQUEST_B))
    }

    scheduler.pause()  # hold the worker until both requests wait, so they share every step from the first
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(call, server.url, "POST", "/v1/fim", body)
            for name, body in (("a", REQUEST_A), ("b", REQUEST_B))
        }
        assert scheduler.wait_until(lambda: scheduler.queue_depth == 2, timeout=20)
        scheduler.resume()
        together = {name: future.result() for name, future in futures.items()}

    for name, body in (("a", REQUEST_A), ("b", REQUEST_B)):
        assert together[name].status == 200
        batched = together[name].data
        assert alone[name]["stats"]["batch_max"] == 1
        assert batched["stats"]["batch_max"] == 2
        assert batched["id"] == name
        assert batched["completions"] == alone[name]["completions"]
        assert batched["completions"] == local(reference, body, session=f"fresh-{name}")
    # Different step budgets: A ran its 8 steps, B left after at most 5 while A went on.
    assert together["b"].data["stats"]["steps"] <= 5 < together["a"].data["stats"]["steps"]


def test_big_requests_stepped_in_row_slices_get_what_they_get_from_local_engine(make_server, reference) -> None:
    """With --bulk-tokens 32 both requests are bulk: each step runs in parts of whole candidate rows (A: 1 + 2 rows
    of 16, B: 1 + 1 of 24), one part a round, in turns; the logits of a step's parts are gathered before it commits,
    so the completions are LocalEngine's."""
    server = make_server(bulk_tokens=32)
    scheduler = server.app.scheduler
    scheduler.pause()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(call, server.url, "POST", "/v1/fim", body) for body in (REQUEST_A, REQUEST_B)]
        assert scheduler.wait_until(lambda: scheduler.queue_depth == 2, timeout=20)
        scheduler.resume()
        replies = [future.result() for future in futures]
    steps = sum(reply.data["stats"]["steps"] for reply in replies)
    assert scheduler.metrics.steps_total == 2 * steps  # two parts a step, one part a round
    for name, body, reply in zip("ab", (REQUEST_A, REQUEST_B), replies, strict=True):
        assert reply.status == 200 and reply.data["completions"] == local(reference, body, session=f"sliced-{name}")


def _request(engine: LocalEngine, body: dict[str, Any], session: str | None = None) -> Prompt:
    options = SampleOptions(body.get("steps", 8), body.get("threshold", 0.9), body["temperature"], body["seed"])
    request = CompletionRequest(
        prefix=body["prefix"],
        suffix=body["suffix"],
        language=body["language"],
        canvas_length=body["canvas_length"],
        num_candidates=body["num_candidates"],
        options=options,
        session_id=session,
        request_id=body["id"],
    )
    return engine.runner.prepare(request)


def _wire(result: CompletionResult) -> list[dict[str, Any]]:
    return [{"text": c.text, "score": c.score, "tokens": c.tokens} for c in result.completions]


def test_request_joining_mid_flight_equals_alone(serve_engine, reference) -> None:
    scheduler = Scheduler(serve_engine)  # never started: driven round by round
    first = scheduler.submit(_request(serve_engine, REQUEST_A))
    scheduler.iterate()
    scheduler.iterate()
    assert scheduler.active == 1 and not first.future.done()
    second = scheduler.submit(_request(serve_engine, REQUEST_B))
    while not (first.future.done() and second.future.done()):
        scheduler.iterate()
    assert second.future.result().stats.batch_max == 2
    assert _wire(first.future.result()) == local(reference, REQUEST_A, session="join-a")
    assert _wire(second.future.result()) == local(reference, REQUEST_B, session="join-b")


def test_same_session_requests_run_in_turn_and_reuse_the_cache(serve_engine, reference) -> None:
    scheduler = Scheduler(serve_engine)
    typed = {**REQUEST_A, "id": "typed", "prefix": PREFIX + "a +"}  # the user typed: same document, longer prefix
    first = scheduler.submit(_request(serve_engine, REQUEST_A, session="doc"))
    scheduler.iterate()  # running (a queued one would be superseded by the next request of its session)
    second = scheduler.submit(_request(serve_engine, typed, session="doc"))
    scheduler.iterate()
    assert (scheduler.active, scheduler.queue_depth) == (1, 1)  # one request per session cache at a time
    while not second.future.done():
        scheduler.iterate()
    a, b = first.future.result(), second.future.result()
    assert b.stats.computed_tokens < b.stats.context_tokens  # the session's cache was extended, not rebuilt
    assert _wire(a) == local(reference, REQUEST_A, session="doc-ref")
    assert _wire(b) == local(reference, typed, session="doc-ref")  # same cache history as the server's


def test_no_batching_runs_one_request_at_a_time(serve_engine, reference) -> None:
    scheduler = Scheduler(serve_engine, batching=False)
    jobs = [scheduler.submit(_request(serve_engine, body)) for body in (REQUEST_A, REQUEST_B)]
    scheduler.iterate()
    assert (scheduler.active, scheduler.queue_depth) == (1, 1)
    while not all(job.future.done() for job in jobs):
        scheduler.iterate()
    assert [job.future.result().stats.batch_max for job in jobs] == [1, 1]
    assert _wire(jobs[1].future.result()) == local(reference, REQUEST_B, session="solo-b")


def test_autoregressive_twin_batches_step_by_step_and_equals_alone(tmp_path: Path, small_tokenizer) -> None:
    from engine.api import load_engine
    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel

    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size, causal_canvas=True))
    path = save_checkpoint(tmp_path / "ar", model, small_tokenizer)
    engine, reference = load_engine(path, device="cpu"), load_engine(path, device="cpu")
    scheduler = Scheduler(engine)
    jobs = [scheduler.submit(_request(engine, body)) for body in (REQUEST_A, REQUEST_B)]
    while not all(job.future.done() for job in jobs):
        scheduler.iterate()
    assert jobs[0].future.result().stats.batch_max == 2  # both decoded in the same rounds
    assert _wire(jobs[0].future.result()) == local(reference, REQUEST_A, session="ar-a")
    assert _wire(jobs[1].future.result()) == local(reference, REQUEST_B, session="ar-b")


def test_session_caches_stay_under_the_budget_least_recently_used_first(serve_engine) -> None:
    runner = serve_engine.runner
    one = runner.new_cache().cache.nbytes
    store = SessionStore(runner.new_cache, budget_bytes=2 * one)
    held = store.acquire("busy")
    for name in ("a", "b", "c"):
        store.release(name, store.acquire(name))
    # "busy" is in use and must stay; of the idle ones only the most recent fits beside it.
    assert store.nbytes <= 2 * one
    assert not store.busy("a") and store.busy("busy")
    assert store.idle_sessions == ["c"]
    store.release("busy", held)
    assert store.idle_sessions == ["c", "busy"]  # least recently used first


@pytest.mark.parametrize("batching", [True, False])
def test_cancelled_request_leaves_between_steps(serve_engine, batching: bool) -> None:
    scheduler = Scheduler(serve_engine, batching=batching)
    job = scheduler.submit(_request(serve_engine, {**REQUEST_A, "threshold": 1.0}))
    scheduler.iterate()
    assert scheduler.active == 1
    scheduler.cancel(job)
    scheduler.iterate()
    assert scheduler.active == 0 and job.future.done()
    assert scheduler.metrics.cancelled_total == 1
