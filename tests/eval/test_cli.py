"""`diffill eval` end to end on tiny random-weight checkpoints and the hand-written mini set.

Random weights produce junk, so these check the plumbing (files, fields, counts), not scores; the oracle run checks
that scores flow through to the summary. One torch thread keeps the runs predictable on 2 loaded cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.cli import main
from eval.humaneval import SETS

COMMON = ["--threads", "1", "--no-progress", "--workers", "2", "--timeout", "10"]


def _read(out: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return records, json.loads((out / "summary.json").read_text())


def test_humaneval_on_a_tiny_model_writes_results_and_summary(tiny_checkpoint, mini_data, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["humaneval-infilling", "--set", "single-line", "--data", str(mini_data), "--model", str(tiny_checkpoint)]
    assert main([*argv, "--limit", "3", "--steps", "4", "--out", str(out), *COMMON]) == 0
    records, summary = _read(out)
    assert [r["task_id"] for r in records] == ["Mini/0", "Mini/1", "Mini/2"]
    for r in records:
        assert {"completion", "passed", "kind", "latency_ms", "exact_match", "raw", "fallback"} <= r.keys()
        assert r["latency_ms"] >= r["model_ms"] > 0 and r["candidates"] >= 1
    assert summary["problems"] == 3 and summary["engine"]["kind"] == "diffusion"
    assert summary["options"]["steps"] == 4 and 0.0 <= summary["pass@1"] <= 1.0
    assert summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"] > 0 and summary["tokens_per_s"] > 0
    assert json.loads(capsys.readouterr().out)["problems"] == 3  # stdout carries the summary only


def test_the_autoregressive_flag_loads_an_ar_checkpoint(tiny_ar_checkpoint, mini_data, tmp_path) -> None:
    out = tmp_path / "ar"
    argv = ["humaneval-infilling", "--data", str(mini_data), "--model", str(tiny_ar_checkpoint), "--autoregressive"]
    assert main([*argv, "--limit", "2", "--out", str(out), *COMMON]) == 0
    records, summary = _read(out)
    assert len(records) == 2 and summary["engine"]["kind"] == "autoregressive"


# Mini/1 is a three-line gap: asked as the editor would on its empty line (auto), one line is all it gets.
@pytest.mark.parametrize(("set_name", "limit"), [("single-line", 1), ("multi-line", 2)])
def test_oracle_answers_pass_and_pass_at_k_is_reported(set_name, limit, mini_data, tmp_path) -> None:
    out = tmp_path / set_name
    argv = ["humaneval-infilling", "--set", set_name, "--data", str(mini_data), "--oracle", "--n", "3"]
    assert main([*argv, "--limit", str(limit), "--out", str(out), *COMMON]) == 0
    records, summary = _read(out)
    assert summary["pass@1"] == 1.0 and summary["pass@k"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert len(records) == limit and all(len(r["samples"]) == 3 for r in records)
    assert summary["options"]["mode"] == ("multi-line" if set_name == "multi-line" else "auto")


def test_speed_sweep_writes_table_json_and_plot(tiny_checkpoint, tiny_ar_checkpoint, mini_data, tmp_path) -> None:
    out = tmp_path / "speed"
    argv = ["speed", "--data", str(mini_data), "--model", str(tiny_checkpoint), "--ar-model", str(tiny_ar_checkpoint)]
    assert main([*argv, "--limit", "2", "--steps", "1", "4", "--thresholds", "0.9", "--out", str(out), *COMMON]) == 0
    report = json.loads((out / "speed.json").read_text())
    assert [p["label"] for p in report["points"]] == ["K=1, τ=0.9", "K=4, τ=0.9", "AR"]
    assert all({"edit_similarity", "show_rate"} <= set(p) for p in report["points"])
    assert "| autoregressive | AR |" in (out / "speed.md").read_text()
    pytest.importorskip("matplotlib")
    assert (out / "speed.png").read_bytes().startswith(b"\x89PNG")


def test_speed_sweep_over_the_diffusion_models_candidates(tiny_checkpoint, mini_data, tmp_path, capsys) -> None:
    out = tmp_path / "speed"
    argv = ["speed", "--data", str(mini_data), "--model", str(tiny_checkpoint), "--no-ar", "--limit", "1"]
    argv += ["--steps", "2", "--thresholds", "0.9", "--diffusion-candidates", "1", "6", "--out", str(out), *COMMON]
    assert main(argv) == 0
    points = json.loads((out / "speed.json").read_text())["points"]
    assert [(p["label"], p["candidates"]) for p in points] == [("K=2, τ=0.9, N=1", 1), ("K=2, τ=0.9, N=6", 6)]
    assert "| diffusion | K=2, τ=0.9, N=6 |" in (out / "speed.md").read_text()
    assert main([*argv, "--diffusion-candidates", "0"]) == 2  # the last one given counts
    assert "--diffusion-candidates must be >= 1" in capsys.readouterr().err


def test_usage_errors_are_reported_not_raised(mini_data, tmp_path, capsys) -> None:
    argv = ["humaneval-infilling", "--data", str(mini_data), "--oracle", "--n", "4", "--temperature", "0"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "--temperature > 0" in capsys.readouterr().err
    assert main(["humaneval-infilling", "--data", str(tmp_path), "--oracle"]) == 2
    assert SETS["single-line"] in capsys.readouterr().err
