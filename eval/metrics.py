"""The scores every suite reports, one definition each: pass@k, exact match, edit similarity, percentiles.

- pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1),
  ``1 - C(n-c, k) / C(n, k)``, computed as a stable product.
- exact match: equal after stripping surrounding whitespace.
- edit similarity: ``1 - Levenshtein(a, b) / max(|a|, |b|)`` over characters (1.0 for two empty strings), the
  normalised edit distance that code-completion papers report as "ES" (CodeXGLUE line completion, RepoCoder,
  CrossCodeEval).
- first line: the first non-empty line, stripped -- what SantaCoder, DreamOn and Open-dLLM score on one-line
  middles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = [
    "edit_similarity",
    "exact_match",
    "first_line",
    "levenshtein",
    "mean",
    "pass_at_k",
    "percentile",
    "spread",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k), as a stable product (Chen et al.)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def exact_match(completion: str, reference: str) -> bool:
    return completion.strip() == reference.strip()


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (insert, delete, substitute; unit costs), O(|a|·|b|) time, O(min) memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(completion: str, reference: str) -> float:
    """1 - Levenshtein / max length, in [0, 1]; both empty -> 1.0."""
    longest = max(len(completion), len(reference))
    return 1.0 if longest == 0 else 1.0 - levenshtein(completion, reference) / longest


def first_line(text: str) -> str:
    """The first non-empty line, stripped ("" when there is none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "mean": mean(values)}
