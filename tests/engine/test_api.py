"""Engine-level policy: CPU threads for a model that shares its machine with an editor."""

from __future__ import annotations

import pytest
import torch

from engine import api
from engine.api import LocalEngine, editor_threads, use_editor_threads
from engine.checkpoint import load_checkpoint


@pytest.mark.parametrize("cores,expected", [(None, 1), (1, 1), (2, 1), (6, 3), (8, 4), (64, 4)])
def test_editor_threads_default_to_half_the_cores_between_one_and_four(monkeypatch, cores, expected) -> None:
    monkeypatch.setattr(api.os, "cpu_count", lambda: cores)
    assert editor_threads() == expected
    assert editor_threads(7) == 7  # an explicit setting wins


def test_editor_threads_refuse_zero() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        editor_threads(0)


def test_use_editor_threads_sets_torch_and_the_engine_reports_it(tiny_checkpoint) -> None:
    before = torch.get_num_threads()
    try:
        assert use_editor_threads(1) == 1
        assert torch.get_num_threads() == 1
        engine = LocalEngine(*load_checkpoint(tiny_checkpoint, device="cpu"))
        assert engine.describe()["cpu_threads"] == 1
    finally:
        torch.set_num_threads(before)
