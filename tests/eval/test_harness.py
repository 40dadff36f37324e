"""The harness scores known answers correctly on real HumanEval-Infilling problems.

A subset keeps this fast (each program is a fresh sandboxed interpreter, ~0.1 s on 2 loaded cores): the first 24
single-line problems and the first 6 of each other set, so every gap shape is covered -- whole lines (the cursor on
an empty line of its own) and mid-line random spans.
"""

from __future__ import annotations

from eval.backends.reference import OracleEngine
from eval.editor import GenConfig
from eval.humaneval import ExecCache, Problem, evaluate
from eval.sandbox import Limits

LIMITS = Limits(timeout_s=10, memory_mb=512)


def _pass_rate(problems: list[Problem], completion) -> float:
    cache = ExecCache(LIMITS, workers=2)
    pairs = [(p, completion(p)) for p in problems]
    cache.run(pairs, progress=False)
    return sum(cache[p.task_id, text].passed for p, text in pairs) / len(pairs)


def test_canonical_solutions_pass_every_problem(real_problems: list[Problem]) -> None:
    assert _pass_rate(real_problems, lambda p: p.middle) == 1.0


def test_empty_completions_almost_never_pass(real_problems: list[Problem]) -> None:
    # A few gaps are redundant lines (removing them keeps the tests green), so not exactly 0.
    assert _pass_rate(real_problems, lambda p: "") <= 0.1


def test_a_perfect_model_passes_single_line_problems_through_the_editor_path(real_problems: list[Problem]) -> None:
    """Post-processing keeps a whole-line middle intact: the single-line ceiling is 100%."""
    from engine.contract import SampleOptions

    single = [p for p in real_problems if p.task_id.startswith("SingleLine")]
    records, summary = evaluate(
        OracleEngine.of(single), single, GenConfig(SampleOptions()), ExecCache(LIMITS), progress=False
    )
    assert summary["pass@1"] == 1.0 and summary["exact_match"] == 1.0
    assert all(r["raw"]["passed"] for r in records)
