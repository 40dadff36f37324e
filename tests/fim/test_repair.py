"""Repairing a single-line request whose candidates all break the file: where to continue (real tree-sitter
grammars), and the follow-up requests ``fim.ask.ask_engine`` makes (real engines: the embedded default model with
its trained weights, a tiny random-weight model)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.contract import SampleOptions
from fim.ask import ask_engine
from fim.request import FimRequest, Mode, build_request
from fim.validate import Candidate, assess, repair_point

LOOP = "def f(xs):\n    total = 0\n    for x in xs:\n        total += |\n    return total\n"


def request_at(marked: str, language: str = "python") -> FimRequest:
    return build_request(marked.replace("|", "", 1), marked.index("|"), language)


def point(request: FimRequest, *texts: str) -> str | None:
    return repair_point(request, [Candidate(text, -float(i)) for i, text in enumerate(texts)])


def test_the_line_is_kept_up_to_its_first_syntax_error() -> None:
    request = request_at(LOOP)
    assert request.mode is Mode.SINGLE_LINE
    assert point(request, "x * = 2") == "x * "
    assert point(request, "foo(x,, y)") == "foo(x"  # the error node is the first comma


def test_the_longest_part_before_an_error_wins_and_ties_go_to_the_better_score() -> None:
    request = request_at(LOOP)
    assert point(request, "x * = 2", "foo(x,, y)") == "foo(x"
    assert point(request, "a + = 1", "b + = 1") == "a + "  # the first has the better score
    assert repair_point(request, [Candidate("a + = 1", -2.0), Candidate("b + = 1", -1.0)]) == "b + "


def test_no_repair_when_a_candidate_parses() -> None:
    request = request_at(LOOP)
    assert point(request, "x * = 2", "x * 2") is None
    assert assess(request, [Candidate("x * 2")])  # the reason: it is shown


def test_no_repair_without_text_before_the_error() -> None:
    request = request_at(LOOP)
    assert point(request, "= 3") is None  # the error starts with the line
    assert point(request, "x + (x, 1))") is None  # tree-sitter wraps the whole statement in the error
    assert point(request, "") is None
    assert point(request) is None
    assert point(request, "\nx") is None  # nothing on the line


def test_only_single_line_requests_in_a_language_with_a_grammar_are_repaired() -> None:
    block = request_at("def f(a):|\n")
    assert block.mode is Mode.MULTI_LINE
    assert point(block, "\n    x = = 1") is None
    unknown = request_at("x = |\ny = 2\n", "cobol")
    assert point(unknown, "a + = 1") is None


def test_the_point_is_after_the_healed_blank_and_counts_characters_not_bytes() -> None:
    request = request_at(LOOP)
    assert request.healed == " "  # the model continues "total +=", without the typed space
    assert point(request, " x * = 2") == "x * "
    assert point(request, "é + ü * = 2") == "é + ü * "  # error_at is in UTF-8 bytes
    assert point(request_at(LOOP.replace("\n", "\r\n")), "x * = 2") == "x * "


# --- the follow-up requests, through real engines ---------------------------------------------------------------

# A condition to finish: the suffix's indented body tells the line must end with a colon.
CONDITION = (
    "def below_zero(operations):\n    balance = 0\n    for op in operations:\n        balance += op\n"
    "        if |\n            return True\n    return False\n"
)
PALINDROME = "def is_palindrome(s):\n    s = s.lower()\n    |\n"


@pytest.fixture(scope="module")
def tiny_engine(tiny_checkpoint):
    from engine.api import load_engine

    return load_engine(tiny_checkpoint, device="cpu", threads=1)


def broken_cases(engine, request: FimRequest, grid: list[SampleOptions]) -> list[tuple[SampleOptions, str]]:
    """The options under which the engine's plain answer has no line that parses but one with text before its
    error, and that text: where a repair starts (found, not assumed, so the test holds wherever the model's
    rounding moves a draw)."""
    found = []
    for options in grid:
        plain = ask_engine(engine, request, options, session_id="plain")
        assert plain.repairs == 0
        head = repair_point(request, [Candidate(c.text, c.score) for c in plain.completions])
        if head:
            found.append((options, head))
    assert found, "the cases must include candidates that all break the file"
    return found


GRID = [SampleOptions(steps=steps, seed=seed) for steps in (1, 2) for seed in range(4)]


def test_a_follow_up_continues_from_the_part_before_the_error(tiny_engine) -> None:
    request = request_at(CONDITION)
    for options, head in broken_cases(tiny_engine, request, GRID):
        answer = ask_engine(tiny_engine, request, options, session_id="repaired", repairs=1)
        assert answer.repairs == 1 and answer.repaired_from == head
        # The same as asking for the document with the head typed, its text put back in front (the model continues
        # the head without a blank it ends with, as for any typed blank).
        follow = replace(request, prefix=request.prefix + head)
        direct = ask_engine(tiny_engine, follow, options, session_id="direct")
        lead = follow.model_prefix[len(request.model_prefix) :]
        assert lead.strip() and head.startswith(lead.lstrip(" "))
        assert [c.text for c in answer.completions] == [lead + c.text for c in direct.completions]
        # The follow-up extends the session's cached context, the direct request prefills it whole: same draws,
        # scores equal up to the rounding of a different prefill split.
        assert [c.score for c in answer.completions] == pytest.approx([c.score for c in direct.completions], abs=1e-4)


def test_follow_ups_stop_at_the_limit_and_never_repeat_a_text(tiny_engine) -> None:
    request = request_at(CONDITION)
    for options, _ in broken_cases(tiny_engine, request, GRID):
        assert ask_engine(tiny_engine, request, options, repairs=0).repairs == 0
        plain = ask_engine(tiny_engine, request, options, session_id="plain")
        stopped = ask_engine(tiny_engine, request, options, session_id="stopped", repairs=2, current=lambda: False)
        assert stopped.abandoned and stopped.repairs == 0  # no longer wanted: no follow-up
        assert [c.text for c in stopped.completions] == [c.text for c in plain.completions]
        for limit in (1, 2, 4):
            answer = ask_engine(tiny_engine, request, options, session_id=f"limit{limit}", repairs=limit)
            assert 1 <= answer.repairs <= limit
            if answer.repairs < limit:  # it stopped early: a line parses, or the next text was asked already
                head = repair_point(request, [Candidate(c.text, c.score) for c in answer.completions])
                assert head is None or head == answer.repaired_from


def test_the_embedded_model_shows_lines_after_repairs_where_it_showed_none(default_engine) -> None:
    """The default model at 1-2 steps on a rest-of-line request: where no candidate parses, repairs make lines that
    do, each starting with the part kept."""
    request = request_at(PALINDROME)
    assert request.mode is Mode.SINGLE_LINE
    repaired = 0
    for options, head in broken_cases(default_engine, request, GRID):
        answer = ask_engine(default_engine, request, options, session_id="repaired", repairs=2)
        assert answer.repairs >= 1
        shown = assess(request, [Candidate(c.text, c.score) for c in answer.completions])
        assert all(a.text.startswith(answer.repaired_from.rstrip()) for a in shown)
        assert answer.repairs > 1 or answer.repaired_from == head
        repaired += bool(shown)
    assert repaired >= 2
