"""scripts/train_default.sh end to end on a tiny budget: corpus -> tokenizer -> AR base -> both twins -> the
diffusion twin fine-tuned on a teacher's lines -> export.

The recipe's stages are real `diffill train` runs (tiny preset, a handful of steps); the exported pair must load
and share one tokenizer, and re-running the finished script must train nothing more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.checkpoint import load_checkpoint
from tests.engine.test_train import write_corpus

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_default.sh"


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
        "FINETUNE_STEPS": "0",  # the last stage, tested at the end
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
    # Stage 3: both twins continued on further batches, exported from there.
    more = {**env, "BASE_STEPS": "6", "CONTINUE_STEPS": "2"}
    subprocess.run(["bash", str(SCRIPT)], env=more, check=True, capture_output=True, timeout=300)
    continued = runs / "twins-6" / "continued-2"
    for run in ("diffusion", "ar"):
        assert (
            f"starting from the weights of {runs / 'twins-6' / run / 'model'}" in (continued / f"{run}.log").read_text()
        )
    for name, run in (("default", "diffusion"), ("default-ar", "ar")):
        exported = (tmp_path / "weights" / name / "model.safetensors").read_bytes()
        assert exported == (continued / run / "model" / "model.safetensors").read_bytes()
    # CONTINUE_FROM: a pair on its own (all a bare machine has) is continued without a base or a tokenizer run.
    alone = {**more, "RUNS": str(tmp_path / "runs2"), "EXPORT": str(tmp_path / "weights2")}
    alone["CONTINUE_FROM"] = str(tmp_path / "weights")
    subprocess.run(["bash", str(SCRIPT)], env=alone, check=True, capture_output=True, timeout=300)
    assert not (tmp_path / "runs2" / "base").exists() and not (tmp_path / "runs2" / "tokenizer.json").exists()
    assert (tmp_path / "runs2" / "from-weights" / "continued-2" / "ar" / "model" / "config.json").is_file()
    diffusion2, tok2 = load_checkpoint(tmp_path / "weights2" / "default", device="cpu")
    assert diffusion2.config == diffusion.config and tok2.to_json() == tok.to_json()
    assert load_checkpoint(tmp_path / "weights2" / "default-ar", device="cpu")[0].config.causal_canvas
    # Stage 4: the diffusion twin fine-tuned on a teacher's lines (here the embedded AR twin: a tiny one shows
    # nothing worth learning), asked by two distill processes; the AR twin is exported as it was.
    tuned = {**alone, "FINETUNE_STEPS": "2", "DISTILL_COUNT": "3", "TEACHER": str(REPO / "engine/weights/default-ar")}
    subprocess.run(["bash", str(SCRIPT)], env=tuned, check=True, capture_output=True, timeout=300)
    stage = tmp_path / "runs2" / "from-weights" / "continued-2"
    finetuned = stage / "finetuned-2"
    rows = [json.loads(line) for r in (0, 1) for line in (finetuned / f"teacher{r}.jsonl").read_text().splitlines()]
    assert rows and all(row["middle"].strip() and "\n" not in row["middle"] for row in rows)
    assert all((finetuned / f"teacher{r}.jsonl.asked").read_text() == "3\n" for r in (0, 1))
    log = (finetuned / "diffusion.log").read_text()
    assert f"starting from the weights of {stage / 'diffusion' / 'model'}" in log
    for name, run in (("default", finetuned / "diffusion"), ("default-ar", stage / "ar")):
        exported = (tmp_path / "weights2" / name / "model.safetensors").read_bytes()
        assert exported == (run / "model" / "model.safetensors").read_bytes()
