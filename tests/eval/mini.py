"""A hand-written mini HumanEval-Infilling set: a whole-line gap, a multi-line gap and a mid-line span."""

from __future__ import annotations

from eval.humaneval import Problem

_ADD = Problem(
    task_id="Mini/0",
    entry_point="add",
    prompt='def add(a, b):\n    """Sum of a and b."""\n',
    suffix="",
    canonical_solution="    return a + b\n",
    test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
)
_EVENS = Problem(
    task_id="Mini/1",
    entry_point="evens",
    prompt="def evens(xs):\n    out = []\n",
    suffix="    return out\n",
    canonical_solution="    for x in xs:\n        if x % 2 == 0:\n            out.append(x)\n",
    test="def check(candidate):\n    assert candidate([1, 2, 3, 4]) == [2, 4]\n    assert candidate([]) == []\n",
)
_SPAN = Problem(
    task_id="Mini/2",
    entry_point="scale",
    prompt="def scale(xs, k):\n    return [x * ",
    suffix=" xs]\n",
    canonical_solution="k for x in",
    test="def check(candidate):\n    assert candidate([1, 2], 3) == [3, 6]\n",
)
MINI_PROBLEMS = (_ADD, _EVENS, _SPAN)
