"""The GPU benchmark command (scripts/bench_adapters_gpu.sh) runs end to end on CPU at tiny sizes: every column of
issue 17's measurement comes out, in the table and the JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from eval.bench_adapters import SIZES, spec_for

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_benchmark_script_runs_tiny_on_cpu_and_reports_every_measure(tmp_path: Path) -> None:
    env = os.environ | {"DEVICE": "cpu", "DTYPE": "float32", "SIZES": "tiny", "CONTEXT": "48", "CANVAS": "8"}
    env |= {"STEPS": "4", "REFRESH": "2", "REPEAT": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bench_adapters_gpu.sh"), str(tmp_path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert row["size"] == "tiny" and row["context"] == 48 + 8 + 2 and row["dtype"] == "float32"
    for key in ("exact_step_ms", "approx_step_ms", "exact_tok_s", "approx_tok_s", "first_exact_ms", "first_approx_ms"):
        assert row[key] > 0, key
    assert 0.0 <= row["argmax_agree"] <= 1.0 and 0.0 <= row["final_agree"] <= 1.0
    assert "| tiny |" in (tmp_path / "bench.md").read_text()


def test_the_release_shapes_have_the_published_parameter_counts() -> None:
    def params(size: str) -> float:
        s = spec_for(size, None)
        attn = s.hidden_size * s.head_dim * (2 * s.num_heads + 2 * s.num_kv_heads)
        mlp = 3 * s.hidden_size * s.intermediate_size
        head = 0 if s.tie_embeddings else s.vocab_size * s.hidden_size
        return (s.num_layers * (attn + mlp) + s.vocab_size * s.hidden_size + head) / 1e9

    assert set(SIZES) >= {"open-dcoder-0.5b", "coda-1.7b", "dream-coder-7b"}
    assert 0.45 < params("open-dcoder-0.5b") < 0.52  # Qwen2.5-Coder-0.5B: 0.49B
    assert 1.9 < params("coda-1.7b") < 2.1  # Qwen3-1.7B: 2.0B with its own head (1.7B without embeddings)
    assert 7.5 < params("dream-coder-7b") < 7.7  # Qwen2.5-7B: 7.6B
