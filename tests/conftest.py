"""Shared fixtures: a small real tokenizer trained on stdlib code, and a tiny random-weight checkpoint."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAINING_FILES = ["textwrap.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "keyword.py", "glob.py"]


def stdlib_texts() -> list[str]:
    return [(STDLIB / name).read_text(encoding="utf-8") for name in TRAINING_FILES]


@pytest.fixture(scope="session")
def small_tokenizer():
    from engine.tokenizer import train_tokenizer

    return train_tokenizer(stdlib_texts(), vocab_size=1024, show_progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_tokenizer) -> Path:
    """A tiny diffusion model with random weights, saved as a real checkpoint directory."""
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel

    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "model", model, small_tokenizer)


@pytest.fixture(scope="session")
def default_engine():
    """The embedded default model with its trained weights, as the tests of the request path use it."""
    from engine.api import load_engine

    return load_engine(None, device="cpu", threads=1, dtype="float32")


@pytest.fixture(scope="module", params=["dream", "open-dcoder", "coda", "a2d-qwen2", "a2d-qwen3", "llada"])
def family_checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(family, checkpoint directory) of a tiny random model in each released family's exact on-disk layout."""
    from engine.adapters.families import FAMILIES
    from tests.engine.adapter_fixtures import tiny_checkpoint as family_tiny_checkpoint

    family = next(f for f in FAMILIES if f.name == request.param)
    return family, family_tiny_checkpoint(tmp_path_factory.mktemp(family.name) / "model", family, seed=1)
