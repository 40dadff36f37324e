"""A single-line request's quick first ask (``FimSettings.first_steps``): asked at a few denoising steps, and again at
the full steps only when it has nothing to show (``fim.ask.ask_engine``; real grammars, the embedded models
with their trained weights)."""

from __future__ import annotations

import dataclasses

from engine.contract import SampleOptions
from eval.editor import Asker, GenConfig
from fim.ask import ask_engine
from fim.request import FimRequest, FimSettings, Mode, build_request
from fim.validate import Candidate, any_shown

LOOP = "def f(xs):\n    total = 0\n    for x in xs:\n        total += |\n    return total\n"
PALINDROME = "def is_palindrome(s):\n    s = s.lower()\n    |\n"
BLOCK = "def is_palindrome(s):|\n"


def request_at(marked: str, language: str = "python") -> FimRequest:
    return build_request(marked.replace("|", "", 1), marked.index("|"), language)


def test_a_text_is_shown_when_its_line_parses_and_is_not_degenerate() -> None:
    request = request_at(LOOP)
    assert any_shown(request, [Candidate("x * = 2"), Candidate("x * 2")])
    assert any_shown(request, [Candidate("x * 2\n        ignored = = 1")])  # only the first line counts
    assert not any_shown(request, [Candidate("x * = 2"), Candidate("foo(x,, y)")])  # nothing parses
    assert not any_shown(request, [Candidate(""), Candidate("   "), Candidate("\nx")])  # nothing on the line
    assert not any_shown(request, [Candidate("...")])  # parses, but punctuation only: degenerate
    assert not any_shown(request, [])
    unknown = request_at("x = |\ny = 2\n", "cobol")  # no grammar: any text on the line that is not degenerate
    assert any_shown(unknown, [Candidate("a + = 1")]) and not any_shown(unknown, [Candidate(" ")])


def full_answer(engine, request: FimRequest, options: SampleOptions, session: str) -> list[str]:
    return [c.text for c in ask_engine(engine, request, options, session_id=session).completions]


def test_the_quick_answer_stands_when_a_line_parses_and_is_asked_again_at_full_steps_when_none_does(
    default_engine,
) -> None:
    """Both branches found, not assumed: over a few requests and seeds, the default model's 2-step answer has a line
    to show for some and none for others; each case must come out as its branch says."""
    kept = escalated = 0
    for marked in (LOOP, PALINDROME):
        request = request_at(marked)
        assert request.mode is Mode.SINGLE_LINE
        for seed in range(4):
            options = SampleOptions(steps=8, seed=seed)
            quick = ask_engine(default_engine, request, SampleOptions(steps=2, seed=seed), session_id="quick")
            shown = any_shown(request, [Candidate(c.text, c.score) for c in quick.completions])
            answer = ask_engine(default_engine, request, options, session_id=f"first{seed}", first_steps=2)
            assert answer.escalated is not shown and answer.repairs == 0
            if shown:  # the quick answer is the answer: no second ask
                assert [c.text for c in answer.completions] == [c.text for c in quick.completions]
                kept += 1
            else:  # the same as asking at full steps from the start (the session's cached context reused)
                assert [c.text for c in answer.completions] == full_answer(default_engine, request, options, "full")
                escalated += 1
    assert kept >= 1 and escalated >= 1, (kept, escalated)


REPAIRABLE = (
    LOOP,
    PALINDROME,
    "def mean(xs):\n    if not xs:\n        return 0\n    return sum(xs) / |\n",
    "def count_words(text):\n    words = |\n    return len(words)\n",
    "def first_even(xs):\n    for x in xs:\n        if |\n            return x\n",
)


def test_a_quick_answer_that_breaks_the_file_is_repaired_at_the_quick_steps_before_it_is_asked_again(
    default_engine,
) -> None:
    """With repairs, the quick ask is repaired at its own steps first (a follow-up costs a quick ask); only when that
    still shows nothing is the request asked again at the full steps, with its own repairs. Each case must equal
    the branch its quick answer says, and a repair at the quick steps that ends the request must be found."""
    repaired_quickly = escalated = 0
    for marked in REPAIRABLE:
        request = request_at(marked)
        for seed in range(4):
            options = SampleOptions(steps=8, seed=seed)
            quick = ask_engine(default_engine, request, SampleOptions(steps=2, seed=seed), session_id="q", repairs=2)
            answer = ask_engine(default_engine, request, options, session_id="a", first_steps=2, repairs=2)
            assert answer.stats is not None and quick.stats is not None
            assert answer.stats.context_tokens == quick.stats.context_tokens  # the request's prompt: its first ask's
            if any_shown(request, [Candidate(c.text, c.score) for c in quick.completions]):
                assert not answer.escalated and answer.repairs == quick.repairs
                assert [c.text for c in answer.completions] == [c.text for c in quick.completions]
                assert answer.stats.steps == quick.stats.steps  # every ask's steps, repairs included
                repaired_quickly += quick.repairs > 0
            else:
                full = ask_engine(default_engine, request, options, session_id="f", repairs=2)
                assert answer.escalated and answer.repairs == quick.repairs + full.repairs
                assert [c.text for c in answer.completions] == [c.text for c in full.completions]
                assert full.stats is not None and answer.stats.steps == quick.stats.steps + full.stats.steps
                escalated += 1
    assert repaired_quickly >= 1 and escalated >= 1, (repaired_quickly, escalated)


def test_no_quick_ask_for_multi_line_requests_or_when_the_steps_are_few_already(default_engine) -> None:
    # The block's own ask (its line fallback: test_line_fallback).
    block = dataclasses.replace(request_at(BLOCK), line_sizes=None)
    assert block.mode is Mode.MULTI_LINE
    options = SampleOptions(steps=4, seed=1)
    answer = ask_engine(default_engine, block, options, session_id="block", first_steps=2)
    assert not answer.escalated
    assert [c.text for c in answer.completions] == full_answer(default_engine, block, options, "block-full")
    line = request_at(LOOP)
    for first in (0, 4, 6):  # off, or not fewer than the steps: one ask at the options' steps
        answer = ask_engine(default_engine, line, options, session_id=f"line{first}", first_steps=first)
        assert not answer.escalated
        assert [c.text for c in answer.completions] == full_answer(default_engine, line, options, "line-full")


def test_benchmarks_ask_as_the_editor_does_and_never_quick_ask_an_autoregressive_model(default_engine) -> None:
    from engine.api import load_engine

    ar = load_engine(None, device="cpu", threads=1, dtype="float32", autoregressive=True)
    config = GenConfig(SampleOptions())
    assert Asker.of(default_engine, config).config.first_steps == FimSettings.first_steps > 0
    assert Asker.of(default_engine, GenConfig(SampleOptions(), first_steps=0)).config.first_steps == 0
    assert Asker.of(ar, config).config.first_steps == 0
    assert Asker.of(ar, GenConfig(SampleOptions(), first_steps=2)).config.first_steps == 0  # steps mean nothing


def test_a_request_no_longer_wanted_makes_no_follow_up(default_engine) -> None:
    """`current` is asked before the escalation (and any repair): once it says no, the quick answer comes back, marked
    abandoned; while it says yes, nothing changes. Cases found as above."""
    asked: list[str] = []

    def stale() -> bool:
        asked.append("stale")
        return False

    found = 0
    for marked in (LOOP, PALINDROME):
        request = request_at(marked)
        for seed in range(4):
            quick = ask_engine(default_engine, request, SampleOptions(steps=2, seed=seed), session_id="quick")
            if any_shown(request, [Candidate(c.text, c.score) for c in quick.completions]):
                continue
            found += 1
            asked.clear()
            options = SampleOptions(steps=8, seed=seed)
            answer = ask_engine(default_engine, request, options, first_steps=2, repairs=2, current=stale)
            assert answer.abandoned and not answer.escalated and answer.repairs == 0 and asked == ["stale"]
            assert [c.text for c in answer.completions] == [c.text for c in quick.completions]
            wanted = ask_engine(default_engine, request, options, first_steps=2, current=lambda: True)
            assert wanted.escalated and not wanted.abandoned
    assert found >= 1


def test_the_language_servers_pipeline_stops_a_stale_request_after_its_quick_ask(default_engine) -> None:
    """A job whose request is no longer current returns what the quick ask shows (the pipeline's own sampler: seed
    0), never a follow-up's."""
    from lsprotocol import types

    from fim.validate import postprocess
    from lsp_server.cache import CompletionCache
    from lsp_server.documents import Cursor, Snapshot
    from lsp_server.pipeline import Job, run
    from lsp_server.settings import CompletionSettings

    settings = CompletionSettings(steps=8, min_confidence=0.0)
    fim = FimSettings(first_steps=2)
    for marked in (LOOP, PALINDROME):
        text, offset = marked.replace("|", "", 1), marked.index("|")
        request = build_request(text, offset, "python", fim, default_engine.count_tokens)
        options = SampleOptions(steps=2, threshold=settings.threshold, temperature=settings.temperature)
        quick = ask_engine(default_engine, request, options, session_id="quick").completions
        shown = [c.text for c in postprocess(request, [Candidate(c.text, c.score) for c in quick], min_confidence=0.0)]
        document = Snapshot("file:///t.py", 1, text, "python")
        line = text.count("\n", 0, offset)
        position = types.Position(line, offset - (text.rfind("\n", 0, offset) + 1))
        job = Job(
            default_engine, document, Cursor(line, offset, position, position, ""), fim, settings, CompletionCache()
        )
        assert run(dataclasses.replace(job, current=lambda: False)).texts == shown
