"""Show or stay silent: degenerate text is never shown, in code or in comments, and the threshold moves what is.

Real grammars (tree-sitter-python) decide where the cursor is; the texts are the ones users saw from the shipped
model (` .`, ` ...`) and from the small test checkpoint (`ndndnd...`).
"""

from __future__ import annotations

import pytest

from fim.confidence import UNCALIBRATED, Calibration, Context, Signals, degenerate, repetition_loop
from fim.request import FimRequest, build_request
from fim.validate import Candidate, assess, postprocess

COMMENT = "def mean(values):\n    # Add up the values and divide the total by the|\n    return 0\n"
CODE = "def mean(values):\n    total = sum(|)\n    return total\n"


def request_at(marked: str, language: str = "python") -> FimRequest:
    return build_request(marked.replace("|", "", 1), marked.index("|"), language)


def shown(marked: str, *texts: str, min_confidence: float = 0.0) -> list[str]:
    candidates = [Candidate(text, -0.1) for text in texts]  # confident, so only the filters can drop them
    return [c.text for c in postprocess(request_at(marked), candidates, min_confidence=min_confidence)]


@pytest.mark.parametrize("marked", [COMMENT, CODE])
def test_a_repetition_loop_is_never_shown_in_code_or_comments(marked: str) -> None:
    assert shown(marked, " ndndndndndndndndndndndndndnd") == []
    assert shown(marked, "values ndndndndndnd") == []


def test_a_line_repeated_over_and_over_is_a_loop() -> None:
    assert repetition_loop("x = f(a)\nx = f(a)\nx = f(a)") == "x = f(a)"
    assert shown("def f(a):\n    |\n", "y = a\n    y = a\n    y = a") == []


@pytest.mark.parametrize("text", [" .", " ...", " ", "\n", " - ", " #", " 1", " x."])
def test_punctuation_whitespace_and_wordless_text_is_never_shown_in_a_comment(text: str) -> None:
    assert shown(COMMENT, text) == []


def test_closing_brackets_are_a_real_completion_in_code_but_dots_are_not() -> None:
    assert shown("x = max(a, b|\n", ")") == [")"]
    assert shown("x = max(a, b|\n", " ...") == []


def test_suffix_echoes_are_never_shown() -> None:
    # The next line already says it: a whole-line candidate repeating it.
    assert shown("def f(a):\n    |\n    return a + 1\n", "return a + 1") == []
    # The rest of the line after the cursor already says it.
    assert shown("x = compute(|) + compute_total(values)\n", "compute_total(values)") == []
    # The cursor's line already says it (a comment restarting itself).
    assert shown(COMMENT, " values and divide the total by the") == []


def test_ordinary_text_survives_the_filters() -> None:
    assert shown(COMMENT, " number of values") == [" number of values"]
    assert shown(CODE, "values") == ["values"]
    context = Context(line_before="N = ", suffix="\n")
    for text in ["1000000", '"-" * 40', "x, y, z", "[0, 0, 0, 0]", "self.x = x", "}\n}\n}"]:
        assert degenerate(text, context) is None, text


def test_the_cursor_in_a_comment_or_string_counts_as_prose() -> None:
    def prose(marked: str) -> bool:
        (entry,) = assess(request_at(marked), [Candidate("word", -0.1)])
        return entry.signals.prose

    assert prose(COMMENT)
    assert prose('x = "hello |"\n')
    assert not prose(CODE)
    assert not prose('x = "hello" + |\n')


def test_confidence_is_a_probability_and_the_threshold_moves_what_is_shown() -> None:
    signals = Signals(score=-0.5, margin=0.2, agreement=0.5, multi_line=False, prose=False, chars=10)
    assert 0.0 < UNCALIBRATED.confidence(signals) < 1.0
    assert shown(CODE, "values") == ["values"]
    assert shown(CODE, "values", min_confidence=1.0) == []


SIGNALS = Signals(score=-0.5, margin=0.2, agreement=0.5, multi_line=False, prose=False, chars=10)


def test_a_model_calibration_ranks_by_its_own_fit_and_sets_the_default_threshold() -> None:
    request = request_at(CODE)
    candidates = [Candidate("values", -0.2), Candidate("values[0] + values[1] + values[2]", -0.9)]
    # Uncalibrated: the better mean log-probability first, everything shown.
    assert [c.text for c in postprocess(request, candidates)] == ["values", "values[0] + values[1] + values[2]"]
    # A fit that prizes length over score reorders them; its default threshold keeps the short text back ...
    longer = Calibration({"bias": -3.0, "log_chars": 1.0}, min_confidence=0.5)
    ranked = postprocess(request, candidates, longer)
    assert [c.text for c in ranked] == ["values[0] + values[1] + values[2]"]
    assert ranked[0].confidence == pytest.approx(longer.confidence(assess(request, candidates[1:])[0].signals))
    # ... and the user's threshold overrides the model's default.
    assert len(postprocess(request, candidates, longer, min_confidence=0.0)) == 2
    assert postprocess(request, candidates, longer, min_confidence=1.0) == []


def test_a_calibration_round_trips_through_json_and_refuses_what_it_cannot_use() -> None:
    fit = Calibration({"bias": -2.0, "score": 1.5}, 0.25, "tests")
    again = Calibration.from_json(fit.to_json())
    assert again.confidence(SIGNALS) == pytest.approx(fit.confidence(SIGNALS)) and again.min_confidence == 0.25
    assert Calibration.of({"name": "m"}) is UNCALIBRATED
    assert Calibration.of({"calibration": fit.to_json()}).min_confidence == 0.25
    bad = [
        ([], "a JSON object"),
        ({"coefficients": {"bias": 1.0, "colour": 2.0}}, "unknown confidence features colour"),
        ({"coefficients": {"score": float("nan")}}, "'score' must be a finite number"),
        ({"coefficients": {"score": "1"}}, "'score' must be a finite number"),
        ({"coefficients": {}, "min_confidence": 1.5}, "min_confidence must be a number in [0, 1]"),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            Calibration.from_json(data)


def test_agreeing_candidates_are_counted_once_with_their_share() -> None:
    entries = assess(request_at(CODE), [Candidate("values", -0.3), Candidate("values", -0.2), Candidate("x", -1.0)])
    by_text = {e.text: e.signals for e in entries}
    assert by_text["values"].agreement == pytest.approx(2 / 3) and by_text["values"].score == -0.2
    assert by_text["values"].margin == pytest.approx(0.8) and by_text["x"].margin == pytest.approx(-0.8)
