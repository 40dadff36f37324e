"""Show rate and precision of what is shown: is the ghost text worth the user's attention?

A suggestion that is wrong costs attention; showing nothing costs nothing. So every run reports, beside pass@1 and
exact match, how often the editor shows something (**show rate**) and how often what it shows is right
(**precision**: exact match of the whole middle, and first line within edit similarity 0.8 of the expected first
line -- "right" below, the label the confidence model is calibrated on). Each task's record keeps every distinct
post-processed text with its signals (``fim.validate.assess``), labelled here against the expected middle and
re-judged by the current degenerate-text filters, so a run can be re-decided offline with any threshold or
coefficients:

* ``unfiltered``: what the editor showed before show-or-stay-silent -- the best-scoring non-blank text, no filters;
* ``decide(entries, t)``: the most confident text that is not degenerate and has confidence >= t (the editor now);
* ``curve``: show rate and precision as t moves; ``reliability``: predicted confidence against measured precision
  in bins (a calibrated score sits on the diagonal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.editor import FimTask
from eval.metrics import edit_similarity, exact_match, first_line, mean
from eval.plotting import pyplot
from fim.confidence import UNCALIBRATED, Calibration, Context, Signals, confidence, degenerate

SIMILAR = 0.8  # first-line edit similarity that counts as right
CURVE_POINTS = 21


def is_right(text: str, middle: str) -> bool:
    """First non-empty line within edit similarity SIMILAR of the expected one (exact matches included)."""
    return bool(text.strip()) and edit_similarity(first_line(text), first_line(middle)) >= SIMILAR


def labelled(record: Mapping[str, Any], task: FimTask) -> dict[str, Any]:
    """The record's show fields: shown, shown exactly right / right, and each assessed text labelled against the
    task's middle and re-judged by the current degenerate-text filters (so old runs are read with today's rules)."""
    completion = record.get("completion") or ""
    middle = task.middle
    line_before = task.text[: task.cursor].rsplit("\n", 1)[-1]
    suffix = task.text[task.cursor :].replace("\r\n", "\n")
    entries = [
        dict(entry)
        | {
            "rejected": degenerate(entry["text"], Context(line_before, suffix, bool(entry["prose"]))),
            "exact": exact_match(entry["text"], middle),
            "right": is_right(entry["text"], middle),
            "similarity": edit_similarity(first_line(entry["text"]), first_line(middle)),
        }
        for entry in record.get("assessed", ())
    ]
    return {
        "shown": bool(completion.strip()),
        "shown_exact": bool(completion.strip()) and exact_match(completion, middle),
        "shown_right": is_right(completion, middle),
        "assessed": entries,
    }


def signals_of(entry: Mapping[str, Any]) -> Signals:
    return Signals(**{name: entry[name] for name in Signals.__dataclass_fields__})


def rescore(entry: Mapping[str, Any], coefficients: Mapping[str, float] | None) -> float:
    """The entry's confidence under other coefficients (None: as recorded)."""
    return entry["confidence"] if coefficients is None else confidence(signals_of(entry), coefficients)


def unfiltered(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """What the editor showed before show-or-stay-silent: the best-scoring non-blank text."""
    kept = [e for e in entries if e["text"].strip()]
    return max(kept, key=lambda e: e["score"]) if kept else None


def decide(
    entries: Sequence[Mapping[str, Any]], threshold: float, coefficients: Mapping[str, float] | None = None
) -> tuple[Mapping[str, Any], float] | None:
    """The text the editor shows at this threshold, with its confidence, or None (stay silent)."""
    scored = [(e, rescore(e, coefficients)) for e in entries if e["rejected"] is None]
    scored = [(e, c) for e, c in scored if c >= threshold]
    return max(scored, key=lambda ec: (ec[1], ec[0]["score"])) if scored else None


def _rates(picks: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    shown = [p for p in picks if p is not None]
    return {
        "tasks": len(picks),
        "shown": len(shown),
        "show_rate": len(shown) / len(picks) if picks else math.nan,
        "right": sum(p["right"] for p in shown),
        "degenerate": sum(p["rejected"] is not None for p in shown),
        "exact": sum(p["exact"] for p in shown),
        "precision_right": mean(p["right"] for p in shown),
        "precision_exact": mean(p["exact"] for p in shown),
    }


def at_threshold(
    records: Sequence[Mapping[str, Any]], threshold: float, coefficients: Mapping[str, float] | None = None
) -> dict[str, Any]:
    picks = [decide(r["assessed"], threshold, coefficients) for r in records]
    return {"threshold": threshold} | _rates([p[0] if p else None for p in picks])


def baseline(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _rates([unfiltered(r["assessed"]) for r in records])


def curve(
    records: Sequence[Mapping[str, Any]], coefficients: Mapping[str, float] | None = None, points: int = CURVE_POINTS
) -> list[dict[str, Any]]:
    """Show rate and precision at thresholds spread over the confidences seen (quantiles), lowest first."""
    seen = sorted(rescore(e, coefficients) for r in records for e in r["assessed"] if e["rejected"] is None)
    if not seen:
        return []
    cuts = sorted({0.0, *(seen[round(i * (len(seen) - 1) / (points - 1))] for i in range(points))})
    return [at_threshold(records, t, coefficients) for t in cuts]


def reliability(
    records: Sequence[Mapping[str, Any]], coefficients: Mapping[str, float] | None = None, bins: int = 5
) -> list[dict[str, Any]]:
    """Every non-degenerate assessed text binned by confidence (equal counts): mean predicted vs measured right,
    and the mean first-line edit similarity (a softer view of the same ordering)."""
    pairs = sorted(
        (rescore(e, coefficients), e["right"], e.get("similarity", math.nan))
        for r in records
        for e in r["assessed"]
        if e["rejected"] is None
    )
    rows = []
    for i in range(bins):
        chunk = pairs[i * len(pairs) // bins : (i + 1) * len(pairs) // bins]
        if chunk:
            rows.append(
                {
                    "low": chunk[0][0],
                    "high": chunk[-1][0],
                    "texts": len(chunk),
                    "predicted": mean(c for c, _, _ in chunk),
                    "measured": mean(float(r) for _, r, _ in chunk),
                    "similarity": mean(s for _, _, s in chunk),
                }
            )
    return rows


def show_summary(records: Sequence[Mapping[str, Any]], calibration: Calibration = UNCALIBRATED) -> dict[str, Any]:
    """What every run reports about showing: the run's show rate and precision, the same before
    show-or-stay-silent and at the model's default threshold (what an editor shows when the user sets nothing),
    and the curve as the threshold moves (records need the fields ``labelled`` adds)."""
    if not records or "shown" not in records[0]:
        return {}
    shown = [r for r in records if r["shown"]]
    return {
        "show_rate": len(shown) / len(records),
        "precision_exact": mean(r["shown_exact"] for r in shown),
        "precision_right": mean(r["shown_right"] for r in shown),
        "shown_right": sum(r["shown_right"] for r in shown),
        "unfiltered": baseline(records),
        "model_default": at_threshold(records, calibration.min_confidence),
        "show_curve": curve(records),
    }


def plot_curves(curves: Sequence[tuple[str, list[dict[str, Any]], Mapping[str, Any] | None]], path: Path) -> bool:
    """Precision (right) against show rate, one line per run, a cross where the run stood before
    show-or-stay-silent; False without matplotlib."""
    plt = pyplot("plot")
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, points, before) in enumerate(curves):
        kept = [p for p in points if p["shown"]]
        colour = f"C{i % 10}"
        ax.plot(
            [p["show_rate"] for p in kept], [p["precision_right"] for p in kept], "o-", ms=3, color=colour, label=name
        )
        if before and not math.isnan(before["precision_right"]):
            ax.plot([before["show_rate"]], [before["precision_right"]], "x", ms=9, color=colour)
    ax.set_xlabel("show rate (tasks where ghost text is shown)")
    ax.set_ylabel("precision of shown text (first line ES >= 0.8)")
    ax.set_title("Precision vs show rate as minConfidence moves (x: before show-or-stay-silent)", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
