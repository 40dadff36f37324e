"""Fair sharing of the model: each request batched with a big one keeps within 1.5x its work alone (per request, at
every step, counting the unit of the big one's step it arrived during), no forward carries more than --bulk-tokens of
bulk work, the big one is never starved, a newer request of a session replaces its queued predecessor, and per-token
limits answer 429 with Retry-After.

Work is measured in canvas tokens stepped (candidates x canvas length per request per step, what a step's cost
grows with: on a CPU almost linearly), read off the real scheduler's metrics or its real runner's forwards round by
round with a real tiny model, not in wall time, so the bound is checked exactly on a loaded machine too; wall-clock
figures come from ``python -m eval.bench_serve --hol``.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from serve_wire import call, fim_body
from test_serve_batching import _request, _wire, local

from engine.contract import CompletionRequest
from engine.remote import RemoteEngine, RemoteError
from engine.runner import DiffusionState, Prompt
from engine.serve.guard import TokenQuota
from engine.serve.protocol import ProtocolError
from engine.serve.scheduler import Cancelled, Job, Running, Scheduler, pick_round

# 16 x 32 = 512 canvas tokens (bulk under the default --bulk-tokens 256: each step in two parts of 8 rows) against
# 2 x 8 = 16; one commit per step.
BIG = fim_body(id="big", canvas_length=32, num_candidates=16, seed=3, temperature=1.0, threshold=1.0, steps=8)
SMALL = fim_body(id="small", canvas_length=8, num_candidates=2, seed=4, temperature=1.0, threshold=1.0, steps=8)
# 4 x 16 = 64 canvas tokens (interactive), 16 steps: 1,024 tokens of its own work, room for bulk steps beside it.
LONG = fim_body(id="long", canvas_length=16, num_candidates=4, seed=6, temperature=1.0, threshold=1.0, steps=16)


def tokens_stepped(scheduler: Scheduler) -> float:
    return scheduler.metrics.step_tokens.total


def test_each_request_batched_with_a_big_one_does_at_most_one_and_a_half_its_work(serve_engine, reference) -> None:
    """Per request, not on average: for every interactive request, the bulk tokens stepped in the rounds it stepped
    in stay within half its own canvas tokens (its time within 2x its time alone, with room to spare), while the big
    request still runs."""
    scheduler = Scheduler(serve_engine)  # never started: driven round by round, compositions read off /metrics
    big = scheduler.submit(_request(serve_engine, BIG))
    arrivals = {3: [LONG], 6: [SMALL], 9: [{**SMALL, "id": "s2", "seed": 5}], 10: [{**SMALL, "id": "s3"}]}
    bodies: dict[Job, dict[str, Any]] = {}
    own: dict[Job, int] = {}  # canvas tokens each interactive request stepped
    beside: dict[Job, int] = {}  # bulk tokens stepped in its rounds
    big_rounds, rounds = [], 0
    while not (big.future.done() and all(j.future.done() for j in bodies)):
        for body in arrivals.get(rounds, []):
            job = scheduler.submit(_request(serve_engine, body))
            bodies[job], own[job], beside[job] = body, 0, 0
        running = [j for j in bodies if not j.future.done()]  # interactive requests step every round they run
        big_before, before = big.future.done(), tokens_stepped(scheduler)
        scheduler.iterate()
        bulk = tokens_stepped(scheduler) - before - sum(j.rows for j in running)
        assert bulk in (0, big.rows // 2) and (bulk == 0 or not big_before)  # at most one part of 256 a round
        for job in running:
            own[job] += job.rows
            beside[job] += int(bulk)
        big_rounds += [rounds] if bulk else []
        rounds += 1

    for job, body in bodies.items():
        assert 2 * beside[job] <= own[job], f"{body['id']}: {beside[job]} bulk tokens beside its own {own[job]}"
        assert job.future.result().stats.steps == body["steps"]  # as many rounds as alone (one commit per step)
    long_job = next(j for j, b in bodies.items() if b is LONG)
    small_jobs = [j for j, b in bodies.items() if b is not LONG]
    assert all(beside[j] == 0 for j in small_jobs)  # a short request never sees a bulk step
    assert beside[long_job] > 0  # a long one lets bulk steps in once it has worked that much itself
    assert _wire(big.future.result()) == local(reference, BIG, "b") and big.future.result().stats.steps == 8
    small = next(j for j, b in bodies.items() if b is SMALL)
    assert _wire(small.future.result()) == local(reference, SMALL, "s")  # fair rounds change no result
    assert big_rounds[:2] == [0, 1]  # alone it runs a part a round (round 2 commits its first step: no forward)


def test_a_request_arriving_during_a_bulk_step_is_admitted_before_that_step_ends(serve_engine, reference, monkeypatch):
    """With --bulk-tokens 64 the big request's step runs in 8 parts of 2 rows (64 canvas tokens), one a round, and
    commits in a round of its own. A small request that arrives while the first part runs is admitted and steps
    from the next round on, and is done before the big step it arrived during commits; the part it arrived during
    counts against its room, so the bulk work from its arrival on stays within half its own; no forward carries more
    than 64 bulk tokens; and the sliced big request's completions equal LocalEngine's."""
    scheduler = Scheduler(serve_engine, bulk_tokens=64)  # never started: driven round by round
    runner, forward, step = serve_engine.runner, serve_engine.runner.forward, DiffusionState.step
    forwards: list[list[tuple[Any, int]]] = []  # per forward: (cache, canvas tokens) of each state or part
    commits: list[int] = []  # forwards run before each of the big request's commits
    arrived: list[Job] = []

    def recording(states: list[Any]) -> list[Any]:  # the real forward, recording what it covers
        forwards.append([(s.cache, s.canvas.numel()) for s in states])
        if len(forwards) == 1:  # the small request arrives while the big one's first part runs
            arrived.append(scheduler.submit(_request(serve_engine, SMALL)))
        return forward(states)

    def committing(state: DiffusionState, logits: Any) -> None:  # the real commit rule, recording when it ran
        commits.extend([len(forwards)] if state.candidates == 16 else [])
        step(state, logits)

    monkeypatch.setattr(runner, "forward", recording)
    monkeypatch.setattr(DiffusionState, "step", committing)
    big, small_done = scheduler.submit(_request(serve_engine, BIG)), 0  # small_done: forwards when it was done
    while not big.future.done():
        scheduler.iterate()
        small_done = small_done or len(forwards) * arrived[0].future.done()
    big_cache = forwards[0][0][0]
    bulk = [sum(n for cache, n in f if cache is big_cache) for f in forwards]
    assert max(bulk) == 64  # never a forward of more bulk work than --bulk-tokens (here 2 rows of 32)
    assert sum(bulk) == 8 * 16 * 32 and len(commits) == 8  # 8 steps of 16 x 32, every part run once
    small_rounds = range(1, small_done)
    assert all(len(forwards[i]) - (bulk[i] > 0) == 1 for i in small_rounds)  # it stepped every round from the next
    assert len(small_rounds) == SMALL["steps"] and commits[0] > small_done  # ... and was done before the big step
    assert 2 * (64 + sum(bulk[i] for i in small_rounds)) <= SMALL["steps"] * 2 * 8  # its room, its arrival included
    assert _wire(big.future.result()) == local(reference, BIG, "sliced-big")
    assert _wire(arrived[0].future.result()) == local(reference, SMALL, "sliced-small")


def _running(rows: int, part: int = 0) -> Running:
    request = CompletionRequest("", "", "python", canvas_length=rows, num_candidates=1)
    prompt = Prompt(request, tokens=[], canvas_length=rows, requested_tokens=0)
    running = Running(Job(prompt), state=None, ctx=None, computed=0, admitted=0.0, prefilled=0.0)
    running.parts = [(None, part)] * (rows // part) if part else []  # its step's parts (the scheduler pops them)
    return running


def test_bulk_parts_stay_within_half_each_interactive_requests_own_work_and_never_starve() -> None:
    small, other, bulk = _running(16), _running(16), _running(256, part=64)
    assert pick_round([bulk], bulk_tokens=64) == [bulk]  # alone: a part every round
    rounds = [pick_round([small, other, bulk], bulk_tokens=64) for _ in range(32)]
    assert all(small in r and other in r for r in rounds)  # interactive requests step every round
    # 16 tokens a round each: a part of 64 fits beside them each time they have stepped 128 more of their own.
    assert [i for i, r in enumerate(rounds) if bulk in r] == [7, 15, 23, 31]
    assert 2 * small.beside == 2 * other.beside == 512 == small.own
    huge = _running(512, part=64)
    assert [pick_round([bulk, huge], bulk_tokens=64) for _ in range(3)] == [[bulk], [huge], [bulk]]  # in turns
    whole = _running(512)  # a family that runs a step whole: one part over the budget, alone in its round
    assert [pick_round([whole, bulk], bulk_tokens=64) for _ in range(2)] == [[whole], [bulk]]

    # A stream of short interactive requests (each gone after 3 rounds, 48 tokens) never has room for a part of 64:
    # the bulk request waits until its patience (2 x 64 tokens of others' work) runs out, then runs a part anyway.
    bulk, stepped = _running(256, part=64), []
    for i in range(40):
        if i % 3 == 0:
            fresh = _running(16)
        if bulk in pick_round([fresh, bulk], bulk_tokens=64, patience=2):
            stepped.append(i)
    assert stepped == [8, 17, 26, 35]


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
