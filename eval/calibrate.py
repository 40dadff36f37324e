"""``diffill eval calibrate RUN_DIR... [--held-out RUN_DIR...]``: fit the show-or-stay-silent confidence.

Input: runs of ``diffill eval jsonl --half calibration`` (any suite works), whose records keep every distinct
post-processed text with its signals and its label (``eval.showing``). Fit: a logistic regression of "right"
(first line within edit similarity 0.8) on ``fim.confidence.FEATURES`` over every non-degenerate text, by Newton's
method (iteratively reweighted least squares) with an L2 penalty on the weights and a faint one on the bias --
seven numbers, pure Python. The default threshold is then chosen on the same runs: the one with the best precision
among those that keep at least ``KEEP`` of the right suggestions the editor showed before show-or-stay-silent.

Output: ``calibration.json`` (coefficients, threshold, tables), ``calibration.md`` (the fit, the reliability
table, the operating points), ``calibration.png`` (precision against show rate as the threshold moves, one line per
run, the editor before show-or-stay-silent as a cross) and, with ``--save MODEL_DIR``, the fit itself as the
checkpoint's ``confidence.json`` (``fim.confidence.Calibration``): the model's scores mean what this fit says only
for that model, so the fit travels with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.showing import at_threshold, baseline, curve, plot_curves, reliability, rescore, signals_of
from eval.suites.files import DataError
from fim.confidence import CALIBRATION_FILE, FEATURES, Calibration, feature_vector

KEEP = 0.6  # share of today's right suggestions the default threshold must keep (the goal is 0.5; margin for noise)
L2 = 1.0  # penalty on the weights: few positives must not push a weight to infinity
BIAS_L2 = 1e-3  # and a faint one on the bias, so runs with no right suggestion at all still give a finite fit
ITERATIONS = 50


def load_records(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "results.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir} holds no results.jsonl (not an eval run)")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if records and "assessed" not in records[0]:
        raise DataError(f"{run_dir} was run before show-or-stay-silent (no assessed texts); run it again")
    return records


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """x with matrix @ x = vector, by Gaussian elimination with partial pivoting (matrix is small and SPD)."""
    n = len(vector)
    a = [row[:] + [vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col and a[col][col] != 0:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[i][n] / a[i][i] if a[i][i] else 0.0 for i in range(n)]


def fit(rows: Sequence[tuple[list[float], bool]], l2: float = L2, bias_l2: float = BIAS_L2) -> list[float]:
    """Weights of a logistic regression (bias first) by Newton's method on the ridge-penalised likelihood."""
    if not rows:
        raise DataError("no assessed texts to fit on")
    dim = len(rows[0][0])
    penalty = [bias_l2, *([l2] * (dim - 1))]
    w = [0.0] * dim
    for _ in range(ITERATIONS):
        grad = [penalty[j] * w[j] for j in range(dim)]
        hess = [[penalty[i] if i == j else 0.0 for j in range(dim)] for i in range(dim)]
        for x, y in rows:
            z = sum(wi * xi for wi, xi in zip(w, x, strict=True))
            p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
            for i in range(dim):
                grad[i] += (p - float(y)) * x[i]
                for j in range(dim):
                    hess[i][j] += p * (1 - p) * x[i] * x[j]
        step = _solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step, strict=True)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return w


def training_rows(records: Sequence[Mapping[str, Any]]) -> list[tuple[list[float], bool]]:
    return [
        (feature_vector(signals_of(e)), bool(e["right"]))
        for r in records
        for e in r["assessed"]
        if e["rejected"] is None
    ]


def choose_threshold(records: Sequence[Mapping[str, Any]], coefficients: Mapping[str, float]) -> float:
    """The best-precision threshold that keeps KEEP of the right suggestions shown without show-or-stay-silent
    (the lowest such threshold on ties); 0 when nothing was right before."""
    before = baseline(records)["right"]
    if before == 0:
        return 0.0
    seen = sorted({rescore(e, coefficients) for r in records for e in r["assessed"] if e["rejected"] is None})
    best = (-1.0, 0.0)
    for threshold in [0.0, *seen]:
        point = at_threshold(records, threshold, coefficients)
        if point["right"] >= KEEP * before and point["precision_right"] > best[0]:
            best = (point["precision_right"], threshold)
    return best[1]


def _points_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        "| run | decision | threshold | shown | show rate | degenerate | right | precision (right) | exact "
        "| precision (exact) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in rows:
        threshold = "–" if "threshold" not in p else f"{p['threshold']:.3g}"
        lines.append(
            f"| {name} | {p['decision']} | {threshold} | {p['shown']}/{p['tasks']} | {p['show_rate']:.3f} "
            f"| {p['degenerate']} | {p['right']} | {_pct(p['precision_right'])} | {p['exact']} "
            f"| {_pct(p['precision_exact'])} |"
        )
    return lines


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def markdown(result: Mapping[str, Any]) -> str:
    fit_json = json.dumps(result["fit"], indent=2)
    lines = [f"## The fit ({CALIBRATION_FILE}, `--save MODEL_DIR` writes it)", "", "```json", fit_json, "```", ""]
    lines += ["## Reliability on the calibration runs", ""]
    lines += [
        "| confidence bin | texts | mean predicted | measured right | mean first-line similarity |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["reliability"]:
        lines.append(
            f"| {row['low']:.3g}–{row['high']:.3g} | {row['texts']} | {row['predicted']:.3g} "
            f"| {row['measured']:.3f} | {_pct(row['similarity'])} |"
        )
    lines += ["", f"Monotone: {'yes' if result['monotone'] else 'no'}", "", "## Operating points", ""]
    lines += _points_table([(p["run"], p) for p in result["points"]])
    return "\n".join(lines) + "\n"


def _monotone(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Measured precision never falls from one bin to the next by more than one text's worth: bins differ in size
    by one text, so 2 right of 321 then 2 of 322 is a tie, not a fall."""
    return all(b["measured"] >= a["measured"] - 1 / b["texts"] for a, b in zip(rows, rows[1:], strict=False))


def write_calibration(
    runs: Sequence[Path], held_out: Sequence[Path], out_dir: Path, save: Path | None = None
) -> tuple[str, list[Path]]:
    """Fit on `runs`, choose the threshold there, report every run, and with `save` write the fit into that
    checkpoint directory; returns the Markdown and paths written."""
    if save is not None and not (Path(save) / "config.json").is_file():
        raise DataError(f"--save {save}: not a checkpoint directory (no config.json)")
    if not runs:
        raise DataError("no calibration runs given")
    calibration = [r for run in runs for r in load_records(run)]
    rows = training_rows(calibration)
    weights = fit(rows)
    coefficients = dict(zip(FEATURES, weights, strict=True))
    threshold = choose_threshold(calibration, coefficients)
    table = reliability(calibration, coefficients)
    points, curves = [], []
    for kind, dirs in (("calibration", runs), ("held-out", held_out)):
        for run in dirs:
            records = load_records(run)
            name = f"{Path(run).name} ({kind})"
            before = baseline(records)
            points.append({"run": name, "decision": "unfiltered (before)"} | before)
            points.append({"run": name, "decision": "minConfidence"} | at_threshold(records, threshold, coefficients))
            curves.append((name, curve(records, coefficients), before))
    fitted_on = f"{len(rows)} texts of {len(calibration)} tasks: " + ", ".join(Path(run).name for run in runs)
    fit_json = Calibration(coefficients, threshold, fitted_on).to_json()
    result = {
        "fit": fit_json,
        "coefficients": coefficients,
        "threshold": threshold,
        "reliability": table,
        "monotone": _monotone(table),
        "points": points,
        "runs": [str(r) for r in runs],
        "held_out": [str(r) for r in held_out],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    paths = [out_dir / "calibration.md", out_dir / "calibration.json"]
    paths[0].write_text(text, encoding="utf-8")
    paths[1].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if plot_curves(curves, out_dir / "calibration.png"):
        paths.append(out_dir / "calibration.png")
    if save is not None:
        paths.append(Path(save) / CALIBRATION_FILE)
        paths[-1].write_text(json.dumps(fit_json, indent=2) + "\n", encoding="utf-8")
    return text, paths
