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


@pytest.fixture(scope="session")
def safim_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three SAFIM split files, gzipped JSON Lines as published."""
    from eval.suites.safim import SPLITS
    from tests.eval.suite_rows import SAFIM_ROWS

    root = tmp_path_factory.mktemp("safim")
    for split, name in SPLITS.items():
        with gzip.open(root / name, "wt", encoding="utf-8") as f:
            for row in SAFIM_ROWS[split]:
                f.write(json.dumps(row) + "\n")
    return root


@pytest.fixture(scope="session")
def santacoder_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.eval.suite_rows import SANTACODER_ROWS

    path = tmp_path_factory.mktemp("santacoder") / "santacoder-fim-task.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SANTACODER_ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small project: two source files, plus what `repo` must skip (binary, hidden, vendored, huge, unknown)."""
    from tests.eval.suite_rows import REPO_FILES

    root = tmp_path_factory.mktemp("project")
    for name, text in REPO_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "pkg" / "blob.py").write_bytes(b"x = 1\n\0\0binary")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.py").write_text("token = 'x'\n")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "dep.js").write_text("module.exports = 1;\n")
    (root / "pkg" / "huge.py").write_text("x = 1\n" * 100_000)
    (root / "README.md").write_text("# readme\n")
    return root


@pytest.fixture(scope="session")
def sharp_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_tokenizer) -> Path:
    """The tiny model with its matrices scaled 4x: at the default initialisation random weights write the same
    junk for every request, sharper ones write text that depends on the prefix, suffix, language and steps -- so
    equal completions from two paths mean the paths sent the same request."""
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel

    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(4.0)
    return save_checkpoint(tmp_path_factory.mktemp("sharp") / "model", model, small_tokenizer)
