"""Engine-level policy: CPU threads for a model that shares its machine with an editor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from engine import api
from engine.api import editor_threads, load_engine
from engine.checkpoint import cpu_has_bf16_matmul


@pytest.mark.parametrize("cores,expected", [(None, 1), (1, 1), (2, 1), (6, 3), (8, 4), (64, 4)])
def test_editor_threads_default_to_half_the_cores_between_one_and_four(monkeypatch, cores, expected) -> None:
    monkeypatch.setattr(api.os, "cpu_count", lambda: cores)
    assert editor_threads() == expected
    assert editor_threads(7) == 7  # an explicit setting wins


def test_editor_threads_refuse_zero() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        editor_threads(0)


def test_the_engine_pins_its_threads_in_whichever_thread_runs_the_model(tiny_checkpoint) -> None:
    engine = load_engine(tiny_checkpoint, device="cpu", threads=1)
    assert engine.describe()["cpu_threads"] == 1

    def complete_in_a_used_thread() -> int:
        torch.set_num_threads(2)  # this worker thread has run torch code with another setting already
        engine.complete("x = ", "\n", language="python", canvas_length=4, num_candidates=1)
        return torch.get_num_threads()

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(complete_in_a_used_thread).result() == 1


def test_a_local_model_runs_in_bfloat16_when_asked_and_refuses_unknown_types(tiny_checkpoint) -> None:
    engine = load_engine(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert engine.describe()["dtype"] == "bfloat16"
    out = engine.complete("def f(x):\n    return ", "\n", language="python", canvas_length=8, num_candidates=2)
    assert len(out) == 2 and all(c.tokens <= 8 for c in out)
    assert load_engine(tiny_checkpoint, device="cpu").describe()["dtype"] == "float32"  # the library's CPU default
    auto = "bfloat16" if cpu_has_bf16_matmul() else "float32"  # the entry points' default follows the CPU's units
    assert load_engine(tiny_checkpoint, device="cpu", dtype="auto").describe()["dtype"] == auto
    assert load_engine(tiny_checkpoint, device="cpu", dtype="float32").describe()["dtype"] == "float32"
    with pytest.raises(ValueError, match="dtype"):
        load_engine(tiny_checkpoint, device="cpu", dtype="int3")


def test_loading_in_a_passing_thread_returns_the_engine_or_raises_its_error(tiny_checkpoint, tmp_path) -> None:
    """What `diffill serve` loads with: the work runs on another thread that ends, its result or error comes back."""
    import threading

    from engine.errors import CheckpointError

    seen = []
    engine = api.in_passing_thread(
        lambda: seen.append(threading.current_thread()) or load_engine(tiny_checkpoint, device="cpu", threads=1)
    )
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()
    assert engine.describe()["max_canvas"] > 0
    with pytest.raises(CheckpointError):
        api.in_passing_thread(load_engine, tmp_path / "missing", device="cpu")
