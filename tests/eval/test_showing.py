"""Show rate and precision for every run, the JSON Lines (fim-dev) suite and its halves, and the calibration fit."""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
from pathlib import Path

import pytest

from eval.calibrate import fit
from eval.cli import main
from eval.showing import at_threshold, baseline, curve, decide, reliability
from eval.suites.jsonl import load_tasks

SOURCE = """def area(width, height):
    return width * height


def perimeter(width, height):
    return 2 * (width + height)


def volume(width, height, depth):
    base = area(width, height)
    return base * depth


def scaled(width, height, factor):
    return area(width * factor, height * factor)
"""
# (kind, the middle as it appears in SOURCE, the text before it that places the cursor)
SPANS = [
    ("rest-of-line", "height\n", "return width * "),
    ("rest-of-line", "(width + height)\n", "return 2 * "),
    ("full-line", "base = area(width, height)", "depth):\n    "),
    ("full-line", "return base * depth", "height)\n    "),
    ("block", "return area(width * factor, height * factor)", "factor):\n    "),
    ("block", "return width * height", "def area(width, height):\n    "),
]


def _rows() -> list[dict[str, str]]:
    rows = []
    for number, (kind, middle, before) in enumerate(SPANS):
        middle = middle.rstrip("\n")
        start = SOURCE.index(before + middle) + len(before)
        end = start + len(middle)
        prefix, suffix = SOURCE[:start], SOURCE[end:]
        rows.append(
            {"id": f"shapes.py#{number}", "kind": kind, "path": "shapes.py", "prefix": prefix}
            | {"middle": middle, "suffix": suffix}
        )
    return rows


@pytest.fixture(scope="module")
def fim_dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fim-dev") / "shapes-fim-dev.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in _rows():
            f.write(json.dumps(row) + "\n")
    return path


def test_the_halves_split_every_kind_evenly_and_never_share_a_task(fim_dev: Path) -> None:
    everything = {t.task_id for t in load_tasks(fim_dev)}
    calibration = {t.task_id for t in load_tasks(fim_dev, "calibration")}
    held_out = {t.task_id for t in load_tasks(fim_dev, "held-out")}
    assert calibration | held_out == everything and not calibration & held_out
    assert sorted(t.rsplit(":", 1)[1] for t in calibration) == ["block", "full-line", "rest-of-line"]
    task = load_tasks(fim_dev)[0]
    assert task.text[: task.cursor] + task.middle + task.text[task.cursor :] == SOURCE
    assert [t.task_id for t in load_tasks(fim_dev, limit=1)] == [t.task_id for t in load_tasks(fim_dev)][::2]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_every_run_reports_show_rate_and_precision_beside_exact_match(fim_dev: Path, tmp_path: Path) -> None:
    assert main(["jsonl", "--data", str(fim_dev), "--oracle", "--out", str(tmp_path / "oracle"), "--no-progress"]) == 0
    summary = _summary(tmp_path / "oracle")
    assert summary["exact_match"] == 1.0 and summary["show_rate"] == 1.0
    assert summary["precision_exact"] == 1.0 and summary["precision_right"] == 1.0
    assert summary["unfiltered"]["right"] == 6 and summary["show_curve"][0]["show_rate"] == 1.0
    argv = ["jsonl", "--data", str(fim_dev), "--baseline", "copy", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "copy")]) == 0
    copy = _summary(tmp_path / "copy")
    assert copy["show_rate"] < 1.0 and copy["shown_right"] <= 6 * copy["show_rate"]


def test_calibrate_fits_the_runs_and_writes_the_tables(fim_dev: Path, tmp_path: Path, capsys) -> None:
    runs = []
    for backend in (["--oracle"], ["--baseline", "copy"]):
        runs.append(tmp_path / backend[-1].strip("-"))
        assert main(["jsonl", "--data", str(fim_dev), *backend, "--out", str(runs[-1]), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "calibration"
    assert main(["calibrate", *map(str, runs), "--held-out", str(runs[0]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## The fit (confidence.json" in text and '"min_confidence":' in text
    assert "| confidence bin | texts | mean predicted | measured right | mean first-line similarity |" in text
    result = json.loads((out / "calibration.json").read_text())
    assert set(result["coefficients"]) >= {"bias", "score", "agreement"}
    assert (out / "calibration.md").read_text() == text


def test_the_fit_is_calibrated_on_its_data_and_ranks_by_the_signal() -> None:
    rng = random.Random(0)
    rows = []
    for _ in range(400):
        x = rng.uniform(-3, 3)
        rows.append(([1.0, x], rng.random() < 1 / (1 + math.exp(-(2 * x - 1)))))
    bias, weight = fit(rows, l2=0.0, bias_l2=0.0)
    assert weight == pytest.approx(2.0, abs=0.6) and bias == pytest.approx(-1.0, abs=0.6)
    # At the maximum of the likelihood, predicted probabilities sum to the number of positives (the bias's
    # gradient is zero): a calibrated mean.
    predicted = sum(1 / (1 + math.exp(-(bias + weight * x[1]))) for x, _ in rows)
    assert predicted == pytest.approx(sum(y for _, y in rows), abs=1e-6)
    # Nothing right at all: still a finite fit, and a small probability.
    (bias,) = fit([([1.0], False)] * 50)
    assert 1 / (1 + math.exp(-bias)) < 0.05


def _entry(text: str, score: float, conf: float, right: bool, rejected: str | None = None) -> dict:
    signals = {"margin": 0.0, "agreement": 0.5, "multi_line": False, "prose": False, "chars": len(text)}
    return (
        {"text": text, "score": score, "confidence": conf, "rejected": rejected, "right": right}
        | signals
        | {"exact": right}
    )


def test_decisions_before_and_after_show_or_stay_silent() -> None:
    records = [
        {"assessed": [_entry(" .", -0.1, 0.9, False, "punctuation"), _entry("x", -2.0, 0.2, False)]},
        {"assessed": [_entry("total", -0.5, 0.7, True)]},
        {"assessed": []},
    ]
    before = baseline(records)
    assert (before["shown"], before["right"]) == (2, 1)  # the best score, degenerate or not
    assert decide(records[0]["assessed"], 0.0)[0]["text"] == "x"  # never the degenerate one
    after = at_threshold(records, 0.5)
    assert (after["shown"], after["right"], after["precision_right"]) == (1, 1, 1.0)
    points = curve(records)
    assert points[0]["threshold"] == 0.0 and [p["shown"] for p in points] == sorted(
        (p["shown"] for p in points), reverse=True
    )
    table = reliability(records, bins=2)
    assert [row["measured"] for row in table] == [0.0, 1.0]


def test_a_fit_saved_into_a_checkpoint_travels_with_the_model(fim_dev: Path, tmp_path: Path, capsys) -> None:
    """`calibrate --save MODEL_DIR` writes confidence.json; the engine loads it, describes it (what editors and
    `diffill serve` clients read), and `--min-confidence model` applies its threshold; a corrupt one is refused.
    The shipped model (a copy): random weights give no text worth assessing."""
    from engine.api import DEFAULT_MODEL, load_engine
    from engine.errors import CheckpointError

    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    base = ["jsonl", "--data", str(fim_dev), "--model", str(model), "--threads", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "before")]) == 0
    assert main(["calibrate", str(tmp_path / "before"), "--out", str(tmp_path / "fit"), "--save", str(model)]) == 0
    saved = json.loads((model / "confidence.json").read_text())
    assert saved == json.loads((tmp_path / "fit" / "calibration.json").read_text())["fit"]
    assert set(saved["coefficients"]) == {"bias", "score", "margin", "agreement", "multi_line", "prose", "log_chars"}
    engine = load_engine(model, device="cpu", threads=1)
    assert engine.describe()["calibration"] == saved
    engine.close()

    # The model's own threshold, raised to 1, silences everything; the summary's model_default says so too.
    (model / "confidence.json").write_text(json.dumps(saved | {"min_confidence": 1.0}))
    assert main([*base, "--min-confidence", "model", "--out", str(tmp_path / "silent")]) == 0
    silent = _summary(tmp_path / "silent")
    assert silent["show_rate"] == 0.0 and silent["model_default"]["shown"] == 0
    assert main([*base, "--out", str(tmp_path / "all")]) == 0  # the benchmark default, 0: shown as before
    assert _summary(tmp_path / "all")["show_rate"] == _summary(tmp_path / "before")["show_rate"]

    (model / "confidence.json").write_text('{"coefficients": {"bias": ')
    with pytest.raises(CheckpointError, match="confidence.json is not a valid confidence calibration"):
        load_engine(model, device="cpu")
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "before"), "--save", str(tmp_path), "--out", str(tmp_path / "x")]) != 0
    assert "not a checkpoint directory (no config.json)" in capsys.readouterr().err
