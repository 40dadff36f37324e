"""``diffill eval report RUN_DIR...``: the runs side by side, as a table a team can paste and one plot.

Each run directory holds the ``summary.json`` that ``eval.runner`` writes. The table has one row per run, grouped
by suite: the suite's headline quality (pass@1 for executed suites, exact match for matched ones), edit
similarity, p50/p95 latency per completion (what the editor waits for) and tokens/s. The plot puts quality against
p50 latency (log scale), one marker per run, one colour per suite. Reference rows (copy, oracle) answer in
microseconds; they are drawn at the plot's left edge, labelled. Beside them: show rate and precision of what
is shown, and ``showing.png``, precision against show rate as ``completion.minConfidence`` moves, one line per run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.plotting import log_latency_axis, pyplot
from eval.showing import plot_curves
from eval.suites.files import DataError

REFERENCE_KINDS = ("copy", "oracle")
MIN_LATENCY_MS = 0.01  # where sub-microsecond reference rows sit on the log axis


@dataclass(frozen=True)
class Row:
    suite: str
    backend: str
    kind: str
    metric: str
    quality: float
    edit_similarity: float
    p50_ms: float
    p95_ms: float
    tokens_per_s: float
    problems: int
    run: str
    show_rate: float = math.nan  # tasks where the editor showed something
    precision: float = math.nan  # shown and right (first line within edit similarity 0.8)
    show_curve: tuple[dict[str, Any], ...] = ()
    unfiltered: dict[str, Any] | None = None

    @property
    def reference(self) -> bool:
        return self.kind in REFERENCE_KINDS


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def load_row(run_dir: Path) -> Row:
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{run_dir} holds no summary.json (not a finished eval run)") from None
    except ValueError as e:
        raise DataError(f"{path} is not JSON: {e}") from None
    backend = summary.get("backend") or {}
    engine = summary.get("engine") or {}
    metric = summary.get("headline") or "pass@1"
    latency = summary.get("latency_ms") or {}
    return Row(
        suite=str(summary.get("suite") or summary.get("set") or "?"),
        backend=str(backend.get("label") or engine.get("name") or "?"),
        kind=str(backend.get("kind") or engine.get("kind") or "?"),
        metric=metric,
        quality=_number(summary.get(metric)),
        edit_similarity=_number(summary.get("edit_similarity")),
        p50_ms=_number(latency.get("p50")),
        p95_ms=_number(latency.get("p95")),
        tokens_per_s=_number(summary.get("tokens_per_s")),
        problems=int(summary.get("problems") or 0),
        run=str(run_dir),
        show_rate=_number(summary.get("show_rate")),
        precision=_number(summary.get("precision_right")),
        show_curve=tuple(summary.get("show_curve") or ()),
        unfiltered=summary.get("unfiltered"),
    )


def _cell(value: float, digits: int) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| suite | backend | metric | value | edit sim. | shown | precision | p50 ms | p95 ms | tokens/s | tasks |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: (r.suite, r.reference, -_sortable(r.quality))):
        backend = f"{row.backend} (reference)" if row.reference else row.backend
        speed = math.nan if row.reference else row.tokens_per_s  # a lookup's "tokens/s" measures nothing
        lines.append(
            f"| {row.suite} | {backend} | {row.metric} | {_cell(row.quality, 3)} | {_cell(row.edit_similarity, 3)} "
            f"| {_cell(row.show_rate, 3)} | {_cell(row.precision, 3)} "
            f"| {_cell(row.p50_ms, 1)} | {_cell(row.p95_ms, 1)} | {_cell(speed, 0)} | {row.problems} |"
        )
    notes = [
        "",
        "Latency: engine call + post-processing per completion, cold context (no cache reuse between tasks).",
        "Shown: share of tasks where the editor shows a suggestion; precision: share of those whose first line is "
        "within edit similarity 0.8 of the expected one (eval.showing).",
        "Reference rows: copy = the rest of the nearest line that starts like the cursor's line; oracle = the "
        "expected middle through the same post-processing (the ceiling).",
    ]
    return "\n".join(lines + notes) + "\n"


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def plot(rows: Sequence[Row], path: Path) -> bool:
    """Quality against p50 latency; False (with a note on stderr) when matplotlib is not installed."""
    plt = pyplot("plot")
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    suites = sorted({r.suite for r in rows})
    colours = {suite: f"C{i % 10}" for i, suite in enumerate(suites)}
    for row in rows:
        if math.isnan(row.quality):
            continue
        x = row.p50_ms if row.p50_ms > MIN_LATENCY_MS else MIN_LATENCY_MS
        marker = "s" if row.reference else "o"
        ax.scatter([x], [row.quality], marker=marker, color=colours[row.suite], zorder=3)
        ax.annotate(row.backend, (x, row.quality), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for suite in suites:
        metric = next(r.metric for r in rows if r.suite == suite)
        ax.scatter([], [], marker="o", color=colours[suite], label=f"{suite} ({metric})")
    log_latency_axis(ax, [max(r.p50_ms, MIN_LATENCY_MS) for r in rows if not math.isnan(r.quality)])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("p50 latency per completion (ms, log scale; squares: reference rows)")
    ax.set_ylabel("quality (suite's headline metric)")
    ax.set_title("FIM quality vs latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(run_dirs: Sequence[Path], out_dir: Path) -> tuple[str, list[Path]]:
    """report.md (and report.png with matplotlib) in out_dir; returns the Markdown and the paths written."""
    if not run_dirs:
        raise DataError("no run directories given")
    rows = [load_row(Path(d)) for d in run_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(rows)
    paths = [out_dir / "report.md"]
    paths[0].write_text(text, encoding="utf-8")
    if plot(rows, out_dir / "report.png"):
        paths.append(out_dir / "report.png")
    curves = [(f"{r.suite} {r.backend}", list(r.show_curve), r.unfiltered) for r in rows if r.show_curve]
    if curves and plot_curves(curves, out_dir / "showing.png"):
        paths.append(out_dir / "showing.png")
    return text, paths
