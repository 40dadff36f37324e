"""Fair sharing of the model: a small request batched with a big one keeps its speed, the big one is never
starved, a newer request of a session replaces its queued predecessor, and per-token limits answer 429 with
Retry-After.

Work is measured in canvas tokens stepped (candidates x canvas length per request per step, what a step's cost
grows with), not in wall time, so the 2x bound holds on a loaded machine too; wall-clock figures come from
``python -m eval.bench_serve``.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from serve_wire import call, fim_body
from test_serve_batching import _request, _wire, local

from engine.contract import CompletionRequest
from engine.remote import RemoteEngine, RemoteError
from engine.runner import Prompt
from engine.serve.guard import TokenQuota
from engine.serve.protocol import ProtocolError
from engine.serve.scheduler import Cancelled, Job, Running, Scheduler, pick_round

# 16 x 32 = 512 canvas tokens (bulk under the default --bulk-tokens 256) against 2 x 8 = 16; one commit per step.
BIG = fim_body(id="big", canvas_length=32, num_candidates=16, seed=3, temperature=1.0, threshold=1.0, steps=8)
SMALL = fim_body(id="small", canvas_length=8, num_candidates=2, seed=4, temperature=1.0, threshold=1.0, steps=8)


def tokens_stepped(scheduler: Scheduler) -> float:
    return scheduler.metrics.step_tokens.total


def run_small(scheduler: Scheduler, engine: Any) -> tuple[Job, float, int]:
    """Submit SMALL and drive the scheduler until it is done: (job, tokens stepped meanwhile, rounds)."""
    before, rounds = tokens_stepped(scheduler), 0
    job = scheduler.submit(_request(engine, SMALL))
    while not job.future.done():
        scheduler.iterate()
        rounds += 1
    return job, tokens_stepped(scheduler) - before, rounds


def test_a_small_request_batched_with_a_big_one_costs_at_most_twice_its_work_alone(serve_engine, reference) -> None:
    alone_job, alone_work, alone_rounds = run_small(Scheduler(serve_engine), serve_engine)

    scheduler = Scheduler(serve_engine)
    big = scheduler.submit(_request(serve_engine, BIG))
    for _ in range(3):
        scheduler.iterate()  # the big request runs alone first
    small, shared_work, shared_rounds = run_small(scheduler, serve_engine)
    while not big.future.done():
        scheduler.iterate()

    assert shared_work <= 2 * alone_work, f"{shared_work:g} tokens stepped beside the big request vs {alone_work:g}"
    assert shared_rounds <= 2 * alone_rounds
    # Fair rounds change no result: each state steps only on its own logits.
    assert _wire(small.future.result()) == _wire(alone_job.future.result()) == local(reference, SMALL, "s")
    assert _wire(big.future.result()) == local(reference, BIG, "b")
    assert big.future.result().stats.steps == 8


def _running(rows: int) -> Running:
    request = CompletionRequest("", "", "python", canvas_length=rows, num_candidates=1)
    prompt = Prompt(request, tokens=[], canvas_length=rows, requested_tokens=0)
    return Running(Job(prompt), state=None, ctx=None, computed=0, admitted=0.0, prefilled=0.0)


def test_bulk_requests_take_at_most_half_the_work_beside_interactive_ones_and_all_of_it_alone() -> None:
    small, other, bulk = _running(16), _running(16), _running(256)
    assert pick_round([bulk], bulk_tokens=64) == [bulk]  # alone: every round
    rounds = [pick_round([small, other, bulk], bulk_tokens=64) for _ in range(32)]
    assert all(small in r and other in r for r in rounds)  # interactive requests step every round
    bulk_rounds = [i for i, r in enumerate(rounds) if bulk in r]
    # 32 interactive tokens a round; the bulk request's 256 tokens are due every 8 skipped rounds: never starved,
    # and never more work than the interactive requests did meanwhile.
    assert bulk_rounds == [8, 17, 26]
    huge = _running(512)
    assert pick_round([bulk, huge], bulk_tokens=64) == [bulk, huge]  # only bulk requests: they all step


def test_a_newer_request_of_a_session_supersedes_its_queued_one(serve_engine) -> None:
    scheduler = Scheduler(serve_engine)  # never started: nothing leaves the queue unless we iterate
    first = scheduler.submit(_request(serve_engine, {**SMALL, "id": "1"}, session="doc"), owner="alice")
    other_owner = scheduler.submit(_request(serve_engine, {**SMALL, "id": "2"}, session="doc"), owner="bob")
    second = scheduler.submit(_request(serve_engine, {**SMALL, "id": "3"}, session="doc"), owner="alice")
    with pytest.raises(Cancelled, match="superseded by 3"):
        first.future.result(timeout=5)
    assert scheduler.queue_depth == 2 and not other_owner.future.done() and not second.future.done()
    assert scheduler.metrics.superseded_total == 1
    while not (second.future.done() and other_owner.future.done()):
        scheduler.iterate()
    assert second.future.result().completions


def test_superseded_request_is_answered_499_over_http(make_server) -> None:
    server = make_server()
    scheduler = server.app.scheduler
    scheduler.pause()
    replies: dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: replies.update(old=call(server.url, "POST", "/v1/fim", fim_body(id="old", session="doc")))
    )
    first.start()
    assert scheduler.wait_until(lambda: scheduler.queue_depth == 1, timeout=30)
    newer = threading.Thread(
        target=lambda: replies.update(new=call(server.url, "POST", "/v1/fim", fim_body(id="new", session="doc")))
    )
    newer.start()
    first.join(timeout=30)
    assert replies["old"].status == 499 and "superseded" in replies["old"].data["error"]["message"]
    scheduler.resume()
    newer.join(timeout=30)
    assert replies["new"].status == 200


def test_the_step_budget_is_clamped_to_the_servers_limit(make_server) -> None:
    server = make_server(max_steps=2)
    assert call(server.url, "GET", "/v1/info").data["max_steps"] == 2
    reply = call(server.url, "POST", "/v1/fim", fim_body(steps=1024, threshold=1.0))
    assert reply.status == 200 and reply.data["stats"]["steps"] == 2


def test_token_rate_limit_answers_429_with_retry_after(make_server) -> None:
    server = make_server(rate_per_token=0.5, burst_per_token=1)
    assert call(server.url, "POST", "/v1/fim", fim_body()).status == 200
    refused = call(server.url, "POST", "/infill", {"input_prefix": "x = "})
    assert refused.status == 429 and refused.headers["retry-after"] in ("1", "2")
    assert "rate limit" in refused.data["error"]["message"]
    with RemoteEngine(server.url) as remote, pytest.raises(RemoteError) as error:
        remote.complete("x = ", "", language="python", canvas_length=4, num_candidates=1)
    assert error.value.status == 429 and error.value.retry_after is not None and 0 < error.value.retry_after <= 2


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    quota = TokenQuota(max_concurrent=4, rate=2.0, burst=2, clock=lambda: now[0])
    for _ in range(2):
        with quota.slot("team"):
            pass
    with pytest.raises(ProtocolError) as refused, quota.slot("team"):
        pass
    assert refused.value.status == 429 and refused.value.retry_after == pytest.approx(0.5)
    with quota.slot("other"):  # each token has its own bucket
        pass
    now[0] = 0.5
    with quota.slot("team"):
        pass
    assert quota.inflight["team"] == 0
