"""Fixtures for the evaluation harness: a hand-written mini HumanEval-Infilling set and a tiny AR checkpoint."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eval.humaneval import SETS, Problem, default_data_dir, load_problems
from tests.eval.mini import MINI_PROBLEMS


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four set files in the standard .jsonl.gz format, each holding the three mini problems."""
    root = tmp_path_factory.mktemp("humaneval-mini")
    for name in SETS.values():
        with gzip.open(root / name, "wt", encoding="utf-8") as f:
            for p in MINI_PROBLEMS:
                f.write(json.dumps(p.__dict__) + "\n")
    return root


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = default_data_dir()
    if path is None:
        pytest.skip("HumanEval-Infilling data is not next to the repository (../shared/benchmarks)")
    return path


@pytest.fixture(scope="session")
def real_problems(real_data: Path) -> list[Problem]:
    """A subset, for speed (each program is a fresh interpreter, ~0.1 s on 2 loaded cores): the first 24
    single-line problems and the first 6 of each other set -- every gap shape, whole lines and mid-line spans."""
    sizes = {"single-line": 24, "multi-line": 6, "random-span": 6, "random-span-light": 6}
    return [p for name, size in sizes.items() for p in load_problems(real_data, name, size)]


@pytest.fixture(scope="session")
def tiny_ar_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_tokenizer) -> Path:
    """The tiny model's autoregressive twin (causal canvas), random weights."""
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel

    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size, causal_canvas=True))
    return save_checkpoint(tmp_path_factory.mktemp("tiny-ar") / "model", model, small_tokenizer)
