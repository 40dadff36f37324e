"""Pure pieces of the harness: pass@k, percentiles, positions, documents and requests."""

from __future__ import annotations

import math

import pytest

from eval.editor import GenConfig, make_request, settings_for
from eval.humaneval import Problem, build_program, document, splice
from eval.metrics import edit_similarity, exact_match, first_line, levenshtein, pass_at_k, percentile
from fim.request import FimSettings, Mode, approx_tokens
from tests.eval.mini import MINI_PROBLEMS


@pytest.mark.parametrize(("n", "c", "k"), [(10, 3, 1), (10, 3, 5), (20, 1, 10), (5, 5, 2), (7, 0, 3), (100, 37, 10)])
def test_pass_at_k_is_the_combinatorial_formula(n: int, c: int, k: int) -> None:
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_known_values() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the fraction correct
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 6, 5) == 1.0  # fewer than k wrong samples: some k-subset always passes


def test_pass_at_k_grows_with_k() -> None:
    values = [pass_at_k(50, 5, k) for k in range(1, 51)]
    assert values == sorted(values) and values[-1] == 1.0


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_exact_match_ignores_surrounding_whitespace_only() -> None:
    assert exact_match("    return a + b", "    return a + b\n")
    assert not exact_match("return a+b", "return a + b")


def test_edit_similarity_is_one_minus_normalised_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("", "") == 1.0 and edit_similarity("abc", "") == 0.0
    assert edit_similarity("x = 1", "x = 1") == 1.0


def test_first_line_is_the_first_non_empty_line_stripped() -> None:
    assert first_line("\n   \n    return a + b  \n    pass") == "return a + b"
    assert first_line("  \n ") == ""


@pytest.mark.parametrize("problem", MINI_PROBLEMS, ids=lambda p: p.task_id)
def test_splicing_the_middle_rebuilds_the_original_function(problem: Problem) -> None:
    original = problem.prompt + problem.canonical_solution + problem.suffix
    assert splice(problem, problem.middle) == original
    assert build_program(problem, problem.middle).startswith(original + "\n" + problem.test)
    assert build_program(problem, "").endswith(f"\ncheck({problem.entry_point})\n")


def test_a_whole_line_gap_puts_the_cursor_after_the_indentation_of_an_empty_line() -> None:
    problem = MINI_PROBLEMS[1]
    text, cursor = document(problem)
    line_start = text.rindex("\n", 0, cursor) + 1
    assert text[line_start : text.index("\n", cursor)] == "    " and cursor - line_start == 4  # as after Enter
    assert problem.middle == "for x in xs:\n        if x % 2 == 0:\n            out.append(x)"
    span = MINI_PROBLEMS[2]  # a mid-line span is simply cut out
    assert document(span) == (span.prompt + span.suffix, len(span.prompt)) and span.middle == span.canonical_solution


def test_requests_follow_the_set_mode_and_the_engine_limits() -> None:
    from engine.contract import SampleOptions

    settings = settings_for({"max_canvas": 24, "max_text_tokens": 508})
    assert (settings.single_line_canvas, settings.multi_line_canvas) == (16, 24)
    assert settings.prefix_tokens + settings.suffix_tokens <= 508
    problem = MINI_PROBLEMS[1]
    auto = make_request(problem.task(), GenConfig(SampleOptions()), FimSettings(), approx_tokens, None)
    forced = make_request(problem.task(), GenConfig(SampleOptions(), mode=Mode.MULTI_LINE), settings, approx_tokens, 24)
    assert auto.prefix == problem.prompt + "    " and auto.suffix == "\n" + problem.suffix
    assert forced.mode is Mode.MULTI_LINE and forced.canvas_length == 24
    assert forced.num_candidates == settings.multi_line_candidates
    custom = make_request(
        problem.task(), GenConfig(SampleOptions(), canvas=8, candidates=3), settings, approx_tokens, 24
    )
    assert (custom.canvas_length, custom.num_candidates) == (8, 3)


def _point(model: str, steps: int | None, pass1: float, p50: float, tps: float, similarity: float = 0.5):
    from eval.speed import Point

    threshold = None if steps is None else 0.9
    return Point(model, steps, threshold, 100, pass1, pass1, 0.0, similarity, 0.9, p50, p50 * 2, tps)


def test_equal_quality_picks_the_fastest_diffusion_point_at_least_as_good_as_ar() -> None:
    from eval.speed import equal_quality

    ar = _point("autoregressive", None, 0.40, 100.0, 200.0)
    points = [_point("diffusion", 1, 0.30, 10.0, 2000.0), _point("diffusion", 4, 0.41, 40.0, 600.0), ar]
    points.append(_point("diffusion", 8, 0.45, 80.0, 300.0))
    match = equal_quality(points)
    assert match["diffusion"] == "K=4, τ=0.9"
    assert match["latency_speedup_p50"] == pytest.approx(2.5) and match["tokens_per_s_ratio"] == pytest.approx(3.0)
    assert equal_quality(points[:1] + [ar])["diffusion"] is None  # nothing reaches the AR twin
    assert equal_quality([*points[:2], _point("autoregressive", None, 0.0, 1.0, 1.0, similarity=0.0)]) is None


def test_equal_quality_needs_edit_similarity_too() -> None:
    """Issue 14 judges quality by pass@1 and first-line edit similarity: more passes with worse lines is not equal."""
    from eval.speed import equal_quality

    ar = _point("autoregressive", None, 0.40, 100.0, 200.0, similarity=0.27)
    fast = _point("diffusion", 4, 0.45, 40.0, 600.0, similarity=0.20)  # passes more, writes worse first lines
    slow = _point("diffusion", 8, 0.41, 90.0, 300.0, similarity=0.28)
    assert equal_quality([fast, slow, ar])["diffusion"] == "K=8, τ=0.9"
    match = equal_quality([fast, ar])
    assert match["diffusion"] is None and match["best_diffusion"] == "K=4, τ=0.9"
    assert match["pass1_gap"] == pytest.approx(-0.05) and match["edit_similarity_gap"] == pytest.approx(0.07)
