"""Checkpoints round-trip bit-exactly, shard below the size limit, and fail with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.checkpoint import INDEX_NAME, load_checkpoint, save_checkpoint
from engine.config import ModelConfig, preset
from engine.errors import CheckpointError
from engine.model import DiffillModel


def assert_same_weights(a: DiffillModel, b: DiffillModel) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def test_save_load_round_trip_is_bit_exact(tiny_checkpoint: Path) -> None:
    model, tok = load_checkpoint(tiny_checkpoint, device="cpu")
    torch.manual_seed(0)
    original = DiffillModel(preset("tiny", vocab_size=tok.vocab_size))
    assert_same_weights(model, original)
    assert model.lm_head.weight is model.embed.weight  # tying survives loading
    tokens = torch.randint(0, tok.vocab_size, (2, 20))
    pad = torch.zeros(2, dtype=torch.long)
    with torch.inference_mode():
        assert torch.equal(model(tokens, pad, 12), original.eval()(tokens, pad, 12))


def test_sharded_checkpoint_round_trips_and_respects_shard_size(tmp_path: Path, small_tokenizer) -> None:
    torch.manual_seed(3)
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    limit = 200_000
    save_checkpoint(tmp_path, model, small_tokenizer, max_shard_bytes=limit)
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / INDEX_NAME).exists()
    biggest_tensor = max(t.numel() * 4 for t in model.state_dict().values())
    assert all(p.stat().st_size <= max(limit, biggest_tensor) + 16_384 for p in shards)
    loaded, _ = load_checkpoint(tmp_path, device="cpu")
    assert_same_weights(loaded, model)


def test_half_precision_checkpoint_loads_as_float32_on_cpu(tmp_path: Path, small_tokenizer) -> None:
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    save_checkpoint(tmp_path, model, small_tokenizer, dtype=torch.bfloat16)
    loaded, _ = load_checkpoint(tmp_path, device="cpu")
    assert loaded.embed.weight.dtype == torch.float32
    assert torch.equal(loaded.embed.weight, model.embed.weight.to(torch.bfloat16).float())


def test_config_loading_tolerates_added_keys(tmp_path: Path) -> None:
    data = {**preset("tiny").to_dict(), "some_future_field": 3}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert ModelConfig.load(tmp_path / "config.json") == preset("tiny")


def copy_checkpoint(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda d: (d / "config.json").unlink(), "config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json"),
        (lambda d: (d / "config.json").write_text('{"d_model": 63}'), "config.json"),
        (lambda d: (d / "config.json").write_text('{"temperature": -1}'), "config.json"),
        (lambda d: (d / "config.json").write_text('{"top_k": 0}'), "config.json"),
        (lambda d: (d / "config.json").write_text('{"top_k": 2.5}'), "config.json"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json"),
        (lambda d: (d / "tokenizer.json").write_text("garbage"), "tokenizer.json"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
        (lambda d: truncate(d / "model.safetensors"), "model.safetensors"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "model.safetensors"),
    ],
    ids=[
        *(
            "no-config",
            "bad-json",
            "bad-config",
            "bad-temperature",
            "top-k-0",
            "top-k-float",
            "no-tokenizer",
            "bad-tokenizer",
            "no-weights",
        ),
        *("truncated", "garbage"),
    ],
)
def test_damaged_checkpoint_errors_name_the_file(tiny_checkpoint: Path, tmp_path: Path, damage, expected) -> None:
    d = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    damage(d)
    with pytest.raises(CheckpointError, match=expected.replace(".", r"\.")):
        load_checkpoint(d, device="cpu")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_missing_shard_is_named(tmp_path: Path, small_tokenizer) -> None:
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size))
    save_checkpoint(tmp_path, model, small_tokenizer, max_shard_bytes=200_000)
    victim = sorted(tmp_path.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=victim.name):
        load_checkpoint(tmp_path, device="cpu")


def test_weights_that_do_not_match_the_config_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    d = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((d / "config.json").read_text())
    config["n_layers"] = 3
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match config.json"):
        load_checkpoint(d, device="cpu")


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere", device="cpu")
