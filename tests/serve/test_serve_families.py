"""`diffill serve` runs every released family through the one request path: it starts on a checkpoint in each
family's exact release layout, answers the native, OpenAI and llama.cpp routes with what LocalEngine gives, and its
continuous batching gives each request what it gets alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_wire import PREFIX, SUFFIX, call, fim_body

from engine.adapters.families import Family
from engine.api import LocalEngine, load_engine
from engine.contract import CompletionRequest, SampleOptions
from engine.serve.app import ServeConfig
from engine.serve.scheduler import Scheduler
from engine.serve.server import ServeThread


@pytest.fixture(scope="module")
def family_server(family_checkpoint: tuple[Family, Path]) -> Iterator[ServeThread]:
    with ServeThread(load_engine(family_checkpoint[1], device="cpu"), ServeConfig(port=0)) as running:
        yield running


def _texts(reply: dict) -> list[str]:
    return [c["text"] for c in reply["completions"]]


def test_every_route_answers_what_local_engine_gives(family_server: ServeThread, family_checkpoint) -> None:
    reference = load_engine(family_checkpoint[1], device="cpu")
    want = reference.complete(PREFIX, SUFFIX, language="python", canvas_length=8, num_candidates=1).pop().text
    native = call(family_server.url, "POST", "/v1/fim", fim_body(canvas_length=8, num_candidates=1))
    assert native.status == 200 and _texts(native.data) == [want]
    openai = call(family_server.url, "POST", "/v1/completions", {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 8})
    assert openai.status == 200 and openai.data["choices"][0]["text"] == want
    infill = call(
        family_server.url, "POST", "/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 8}
    )
    assert infill.status == 200 and infill.data["content"] == want
    info = call(family_server.url, "GET", "/v1/info").data
    assert info["family"] == family_checkpoint[0].name and info["batching"] is True


def test_a_canvas_over_the_limit_is_clamped_on_the_native_route_too(family_server: ServeThread) -> None:
    longest = call(family_server.url, "GET", "/v1/info").data["max_canvas"]
    reply = call(family_server.url, "POST", "/v1/fim", fim_body(canvas_length=longest + 100, num_candidates=1))
    assert reply.status == 200 and reply.data["completions"][0]["tokens"] <= longest


def _prompt(engine: LocalEngine, seed: int, canvas: int, n: int, steps: int):
    options = SampleOptions(steps=steps, temperature=0.9, seed=seed)
    return engine.runner.prepare(CompletionRequest(PREFIX, SUFFIX, "python", canvas, n, options, request_id=str(seed)))


def test_batched_requests_of_an_external_family_equal_one_at_a_time(family_checkpoint) -> None:
    engine, reference = load_engine(family_checkpoint[1], device="cpu"), load_engine(family_checkpoint[1], device="cpu")
    scheduler = Scheduler(engine)  # never started: driven round by round
    shapes = [(1, 12, 3, 4), (2, 6, 2, 3)]  # seed, canvas, candidates, steps: different lengths and budgets
    jobs = [scheduler.submit(_prompt(engine, *shape)) for shape in shapes]
    while not all(job.future.done() for job in jobs):
        scheduler.iterate()
    assert jobs[0].future.result().stats.batch_max == 2
    for job, (seed, canvas, n, steps) in zip(jobs, shapes, strict=True):
        options = SampleOptions(steps=steps, temperature=0.9, seed=seed)
        alone = reference.complete(PREFIX, SUFFIX, language="python", canvas_length=canvas, num_candidates=n,
                                   options=options)  # fmt: skip
        batched = job.future.result().completions
        assert [(c.text, c.tokens) for c in batched] == [(c.text, c.tokens) for c in alone]
        assert [c.score for c in batched] == pytest.approx([c.score for c in alone], abs=1e-4)
