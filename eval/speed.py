"""Speed against quality: the diffusion sampler's steps/threshold sweep beside the autoregressive twin.

A masked-diffusion sampler trades quality for latency through its step budget K and its confidence threshold
(parallel commits, Fast-dLLM's threshold rule); the AR twin (same data, same compute, causal canvas) decodes one
token per forward pass. Every configuration runs the same HumanEval-Infilling problems through the editor path
(``eval.humaneval``) in the same process, so pass@1 against p50 latency is one curve per threshold plus one AR
point. Quality is two numbers, as issue 14 judges it: editor pass@1 and first-line edit similarity (with the share
of problems where the editor shows anything: a model whose candidates all break the file shows nothing and scores 0
there). The report answers "at equal quality, how much faster is diffusion": the fastest diffusion configuration
whose pass@1 and edit similarity are both at least the AR twin's.

Writes ``speed.json`` (points and run facts), ``speed.md`` (a table) and ``speed.png`` (matplotlib; skipped with a
note when it is not installed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.editor import GenConfig
from eval.humaneval import ExecCache, Problem, evaluate
from eval.metrics import mean
from eval.plotting import log_latency_axis, pyplot

if TYPE_CHECKING:
    from engine.contract import CompletionEngine


@dataclass(frozen=True)
class SweepConfig:
    base: GenConfig  # everything but steps, threshold and the diffusion model's candidates
    steps: tuple[int, ...]
    thresholds: tuple[float, ...]
    # Candidates per diffusion request to sweep; None = the base's (the request's own unless --candidates). The AR
    # twin keeps the base's: it is the reference at its own settings.
    candidates: tuple[int | None, ...] = (None,)


@dataclass(frozen=True)
class Point:
    model: str  # "diffusion" or "autoregressive"
    steps: int | None  # None for the AR twin (one token per forward pass)
    threshold: float | None
    problems: int
    pass1: float  # editor pass@1
    pass1_raw: float
    exact_match: float
    edit_similarity: float  # first line of the editor's completion against the expected middle's (0 when none)
    show_rate: float  # share of problems where the editor shows something
    p50_ms: float  # per-completion latency (engine + post-processing)
    p95_ms: float
    tokens_per_s: float
    candidates: int | None = None  # diffusion candidates per request when the sweep set them (None: the request's)

    @property
    def label(self) -> str:
        return "AR" if self.steps is None else f"K={self.steps}, τ={self.threshold:g}{self._rows}"

    @property
    def line(self) -> str:
        """The curve the point belongs to in the plot: one per threshold and number of candidates."""
        return f"diffusion τ={self.threshold:g}{self._rows}"

    @property
    def _rows(self) -> str:
        return f", N={self.candidates}" if self.candidates else ""

    @property
    def stderr(self) -> float:
        """Binomial standard error of pass@1: small --limit runs are noisy, and the table says how much."""
        return math.sqrt(self.pass1 * (1 - self.pass1) / self.problems) if self.problems else math.nan

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"label": self.label}


def _point(
    model: str,
    steps: int | None,
    threshold: float | None,
    records: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    candidates: int | None = None,
) -> Point:
    return Point(
        model=model,
        steps=steps,
        threshold=threshold,
        problems=summary["problems"],
        pass1=summary["pass@1"],
        pass1_raw=summary["pass@1_raw"],
        exact_match=summary["exact_match"],
        edit_similarity=summary["edit_similarity"],
        show_rate=mean(bool(r["completion"]) for r in records),
        p50_ms=summary["latency_ms"]["p50"],
        p95_ms=summary["latency_ms"]["p95"],
        tokens_per_s=summary["tokens_per_s"],
        candidates=candidates,
    )


def run_sweep(
    diffusion: CompletionEngine,
    ar: CompletionEngine | None,
    problems: Sequence[Problem],
    sweep: SweepConfig,
    cache: ExecCache,
    *,
    progress: bool = True,
) -> list[Point]:
    """One evaluation per (candidates, steps, threshold), then the AR twin with the base settings."""
    points = []
    for candidates in sweep.candidates:
        for steps in sweep.steps:
            for threshold in sweep.thresholds:
                options = dataclasses.replace(sweep.base.options, steps=steps, threshold=threshold)
                config = dataclasses.replace(sweep.base, options=options, n=1)
                config = dataclasses.replace(config, candidates=candidates) if candidates else config
                if progress:
                    shown = f" candidates={candidates}" if candidates else ""
                    print(f"# diffusion steps={steps} threshold={threshold:g}{shown}", file=sys.stderr)
                records, summary = evaluate(diffusion, problems, config, cache, progress=progress)
                points.append(_point("diffusion", steps, threshold, records, summary, candidates))
    if ar is not None:
        if progress:
            print("# autoregressive twin", file=sys.stderr)
        records, summary = evaluate(ar, problems, dataclasses.replace(sweep.base, n=1), cache, progress=progress)
        points.append(_point("autoregressive", None, None, records, summary))
    return points


def equal_quality(points: Sequence[Point]) -> dict[str, Any] | None:
    """The fastest diffusion point at least as good as the AR twin on both editor pass@1 and first-line edit
    similarity, and the speed ratios; when none is, the best diffusion point (pass@1, then edit similarity) and its
    gaps."""
    ar = next((p for p in points if p.model == "autoregressive"), None)
    diffusion = [p for p in points if p.model == "diffusion"]
    if ar is None or not diffusion or (ar.pass1 == 0 and ar.edit_similarity == 0):
        return None  # nothing to compare at (an AR twin that gets nothing right is matched by anything)
    matching = [p for p in diffusion if p.pass1 >= ar.pass1 and p.edit_similarity >= ar.edit_similarity]
    if not matching:
        best = max(diffusion, key=lambda p: (p.pass1, p.edit_similarity, -p.p50_ms))
        return {
            "ar": ar.label,
            "diffusion": None,
            "best_diffusion": best.label,
            "pass1_gap": ar.pass1 - best.pass1,
            "edit_similarity_gap": ar.edit_similarity - best.edit_similarity,
        }
    fastest = min(matching, key=lambda p: p.p50_ms)
    return {
        "ar": ar.label,
        "diffusion": fastest.label,
        "latency_speedup_p50": ar.p50_ms / fastest.p50_ms if fastest.p50_ms > 0 else math.nan,
        "tokens_per_s_ratio": fastest.tokens_per_s / ar.tokens_per_s if ar.tokens_per_s > 0 else math.nan,
    }


def markdown(points: Sequence[Point], meta: dict[str, Any]) -> str:
    problems = points[0].problems if points else 0
    lines = [
        f"# Speed vs quality: HumanEval-Infilling {meta.get('set', '')}, {problems} problems",
        "",
        "| model | config | pass@1 (editor) | ± s.e. | pass@1 (raw) | exact match | first-line ES | shown "
        "| p50 ms | p95 ms | tokens/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.model} | {p.label} | {p.pass1:.3f} | {p.stderr:.3f} | {p.pass1_raw:.3f} | {p.exact_match:.3f} "
            f"| {p.edit_similarity:.3f} | {p.show_rate:.1%} | {p.p50_ms:.1f} | {p.p95_ms:.1f} | {p.tokens_per_s:.0f} |"
        )
    match = equal_quality(points)
    if match and match.get("diffusion"):
        lines += [
            "",
            f"At equal quality (pass@1 and edit similarity ≥ AR's): {match['diffusion']} is "
            f"{match['latency_speedup_p50']:.2f}x the AR "
            f"twin's p50 speed, {match['tokens_per_s_ratio']:.2f}x its tokens/s.",
        ]
    elif match:
        lines += [
            "",
            "No diffusion configuration reaches the AR twin on both pass@1 and edit similarity (best: "
            f"{match['best_diffusion']}, pass@1 {-match['pass1_gap']:+.3f} and edit similarity "
            f"{-match['edit_similarity_gap']:+.3f} against the AR twin's).",
        ]
    repairs = meta.get("repairs")
    follow = f", with up to {repairs} follow-up requests when no candidate parses (fim.ask)" if repairs else ""
    if first := meta.get("first_steps"):
        follow += (
            f"; a diffusion point of more than {first} steps first asks at {first} steps and again at its own"
            " when nothing is worth showing"
        )
    lines += ["", f"Latency: engine.complete + post-processing per completion{follow}, cold context (no cache reuse)."]
    return "\n".join(lines) + "\n"


QUALITY = (("pass1", "pass@1 (editor)"), ("edit_similarity", "first-line edit similarity"))


def plot(points: Sequence[Point], path: Path, title: str) -> bool:
    """Quality against p50 latency, one panel per quality measure (pass@1, first-line edit similarity): a line per
    threshold and number of candidates (labelled by steps), a star for the AR twin and a dashed line at half its p50
    (issue 14's target)."""
    plt = pyplot("speed.png")
    if plt is None:
        return False
    fig, axes = plt.subplots(1, len(QUALITY), figsize=(12, 4.5))
    for ax, (field, name) in zip(axes, QUALITY, strict=True):
        value = operator.attrgetter(field)
        for curve in dict.fromkeys(p.line for p in points if p.model == "diffusion"):
            line = sorted((p for p in points if p.model == "diffusion" and p.line == curve), key=lambda p: p.p50_ms)
            ax.plot([p.p50_ms for p in line], [value(p) for p in line], marker="o", label=curve)
            for p in line:
                ax.annotate(f"K={p.steps}", (p.p50_ms, value(p)), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for p in points:
            if p.model == "autoregressive":
                star = {"marker": "*", "s": 200, "color": "black", "zorder": 3}
                ax.scatter([p.p50_ms], [value(p)], label="autoregressive twin", **star)
                ax.axvline(p.p50_ms / 2, color="grey", linestyle="--", linewidth=1, label="half the AR twin's p50")
        log_latency_axis(ax, [p.p50_ms for p in points] + [p.p50_ms / 2 for p in points if p.model == "autoregressive"])
        ax.set_ylim(0, max(0.05, 1.1 * max(value(p) for p in points)))
        ax.set_xlabel("p50 latency per completion (ms, log scale)")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(out_dir: Path, points: Sequence[Point], meta: dict[str, Any]) -> list[Path]:
    """speed.json, speed.md and (with matplotlib) speed.png in out_dir; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "points": [p.as_dict() for p in points], "equal_quality": equal_quality(points)}
    paths = [out_dir / "speed.json", out_dir / "speed.md"]
    paths[0].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(points, meta), encoding="utf-8")
    if points and plot(points, out_dir / "speed.png", f"HumanEval-Infilling {meta.get('set', '')}"):
        paths.append(out_dir / "speed.png")
    return paths
