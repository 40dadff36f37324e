"""Checkpoint directories: ``config.json`` + safetensors weights (one file, or shards + index) + ``tokenizer.json``.

The sharded layout follows the Hugging Face convention (``model.safetensors.index.json`` with a ``weight_map``)
so tools that read those directories read ours. Shards stay below a size limit (16 MiB by default) so weights can
live in a git repository. Every failure names the file at fault: a missing or truncated shard, a corrupt header,
a tensor the model expects but no file holds, a shape that does not match the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.config import ModelConfig
from engine.errors import CheckpointError
from engine.model import DiffillModel
from engine.tokenizer import CodeTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_NAME = "tokenizer.json"
DEFAULT_SHARD_BYTES = 15 * 2**20  # below the repository's 16 MiB per-file limit, with room for the header


def model_state(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """State dict without tied duplicates (safetensors refuses shared storage), optionally cast."""
    seen: dict[int, str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen:
            continue
        seen[key] = name
        t = tensor.detach().to("cpu")
        out[name] = (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()
    return out


def plan_shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[list[str]]:
    """Greedy in-order packing of tensor names into shards of at most max_bytes (a bigger tensor gets its own)."""
    shards: list[list[str]] = [[]]
    size = 0
    for name, t in state.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    return shards


def save_weights(
    state: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES
) -> list[Path]:
    for old in [*directory.glob("model*.safetensors"), directory / INDEX_NAME]:
        old.unlink(missing_ok=True)
    shards = plan_shards(state, max_shard_bytes)
    if len(shards) == 1:
        path = directory / WEIGHTS_NAME
        save_file(state, str(path), metadata={"format": "pt"})
        return [path]
    paths, weight_map = [], {}
    for i, names in enumerate(shards, start=1):
        path = directory / f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: state[n] for n in names}, str(path), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, path.name))
        paths.append(path)
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return paths


def save_checkpoint(
    directory: str | Path,
    model: DiffillModel,
    tokenizer: CodeTokenizer,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_NAME)
    save_weights(model_state(model, dtype), directory, max_shard_bytes)
    tokenizer.save(directory / TOKENIZER_NAME)
    return directory


def shard_map(directory: Path) -> dict[str, Path] | None:
    """Tensor name -> shard file from ``model.safetensors.index.json`` (every shard checked to exist), or None
    for an unsharded checkpoint. Diffill's own and the released models' checkpoints share this convention."""
    index = directory / INDEX_NAME
    if not index.exists():
        return None
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        locations = {str(tensor): directory / name for tensor, name in weight_map.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt shard index {index}: {e}") from e
    for f in dict.fromkeys(locations.values()):
        if not f.exists():
            raise CheckpointError(f"missing weight shard {f} (listed in {index})")
    return locations


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint, validated against the index when there is one."""
    locations = shard_map(directory)
    if locations is not None:
        return list(dict.fromkeys(locations.values()))
    single = directory / WEIGHTS_NAME
    if single.exists():
        return [single]
    raise CheckpointError(f"no weights in {directory}: expected {WEIGHTS_NAME} or {INDEX_NAME}")


def read_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f), device="cpu"))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"corrupt or truncated weight file {f}: {e}") from e
    return state


def load_state_into(model: DiffillModel, state: dict[str, torch.Tensor], directory: Path) -> None:
    expected = model.state_dict()
    optional = {"lm_head.weight"} if model.config.tie_embeddings else set()  # stored once, as embed.weight
    missing = [n for n in expected if n not in state and n not in optional]
    unexpected = [n for n in state if n not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {directory} do not match config.json: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, t in state.items():
        if t.shape != expected[name].shape:
            raise CheckpointError(
                f"tensor {name} in {directory} has shape {tuple(t.shape)}, config.json implies "
                f"{tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16, read from /proc/cpuinfo's flags)."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:  # not Linux: no way to tell cheaply, keep float32
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def default_dtype(device: torch.device) -> torch.dtype:
    """What the loaders cast to when not told: bfloat16 on GPUs, float32 elsewhere (exact round trips on CPU)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def auto_dtype(device: torch.device) -> torch.dtype:
    """``dtype="auto"``, what the product's entry points run (``diffill lsp``/``complete``/``serve``/``eval``):
    bfloat16 also on CPUs with bf16 matrix units, where it takes half the CPU time of float32 (docs/speed.md);
    float32 on other CPUs (emulated bf16 is slower than float32)."""
    if device.type == "cpu" and cpu_has_bf16_matmul():
        return torch.bfloat16
    return default_dtype(device)


def load_checkpoint(
    directory: str | Path, device: str = "auto", dtype: torch.dtype | None = None
) -> tuple[DiffillModel, CodeTokenizer]:
    """Load model + tokenizer from a checkpoint directory. Float32 on CPU, bf16 on GPU unless `dtype` is given."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    config = ModelConfig.load(directory / CONFIG_NAME)
    tokenizer = CodeTokenizer.load(directory / TOKENIZER_NAME)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{directory / TOKENIZER_NAME} has {tokenizer.vocab_size} tokens but config.json's vocab_size is "
            f"{config.vocab_size}"
        )
    state = read_weights(weight_files(directory))
    dev = resolve_device(device)
    model = DiffillModel(config)
    load_state_into(model, state, directory)
    return cast_model(model, dev, dtype or default_dtype(dev)).eval(), tokenizer


def cast_model(model: DiffillModel, device: torch.device, dtype: torch.dtype) -> DiffillModel:
    """Move and cast the weights; the rotary tables stay float32 (bf16 angles lose precision at long range)."""
    cos, sin = model.rope_cos, model.rope_sin
    model = model.to(device=device, dtype=dtype)
    model.rope_cos, model.rope_sin = cos.to(device), sin.to(device)
    return model
