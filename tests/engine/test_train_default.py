"""scripts/train_default.sh end to end on a tiny budget: corpus -> tokenizer -> AR base -> both twins -> export.

The recipe's stages are real `diffill train` runs (tiny preset, a handful of steps); the exported pair must load
and share one tokenizer, and re-running the finished script must train nothing more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.checkpoint import load_checkpoint
from tests.engine.test_train import write_corpus

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_default.sh"


@pytest.mark.slow
def test_recipe_trains_and_exports_both_twins_from_one_base(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "CORPUS": str(write_corpus(tmp_path / "corpus")),
        "RUNS": str(tmp_path / "runs"),
        "EXPORT": str(tmp_path / "weights"),
        "PRESET": "tiny",
        "VOCAB": "400",
        "TOKENIZER_CHARS": "300000",
        "BATCH": "2",
        "CONTEXT": "64",
        "BASE_STEPS": "4",
        "ADAPT_STEPS": "2",
        "SAVE_EVERY": "2",
        "WARMUP": "2",
        "THREADS": "2",
    }
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, capture_output=True, timeout=300)
    diffusion, tok = load_checkpoint(tmp_path / "weights" / "default", device="cpu")
    ar, ar_tok = load_checkpoint(tmp_path / "weights" / "default-ar", device="cpu")
    assert diffusion.config.shift_logits and not diffusion.config.causal_canvas
    assert ar.config.causal_canvas
    assert diffusion.config.max_context == ar.config.max_context == 64  # CONTEXT: what they trained on
    assert tok.to_json() == ar_tok.to_json() and tok.vocab_size == 400
    runs = tmp_path / "runs"
    paths = {
        "base": runs / "base.log",
        "diffusion": runs / "twins-4" / "diffusion.log",
        "ar": runs / "twins-4" / "ar.log",
    }
    logs = {run: path.read_text() for run, path in paths.items()}
    assert "adapting the AR checkpoint" in logs["diffusion"]
    # Finished: a second run trains nothing (no stage log grows) and exports the same weights again.
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, capture_output=True, timeout=120)
    for run, text in logs.items():
        assert paths[run].read_text() == text, run
    # A longer base later: the base resumes from its step 4 (it does not start over) and fresh twins branch from it.
    subprocess.run(["bash", str(SCRIPT)], env={**env, "BASE_STEPS": "6"}, check=True, capture_output=True, timeout=300)
    assert "resumed from" in paths["base"].read_text().removeprefix(logs["base"])
    assert (runs / "twins-6" / "diffusion" / "model" / "config.json").is_file()
    assert paths["diffusion"].read_text() == logs["diffusion"]
