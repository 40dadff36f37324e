"""Lazy, per-tensor loading of Hugging Face safetensors checkpoints into a model built on the meta device.

Why lazy: a 7B checkpoint is 15 GB of bf16; reading it whole (``load_file``) would hold a second copy in host
memory. The model is built with ``accelerate.init_empty_weights`` (parameters on the meta device, no memory),
then each tensor is read with ``safetensors.safe_open`` (memory-mapped), cast, and placed with
``accelerate.utils.set_module_tensor_to_device``, so peak memory is the model plus one tensor.

Sharded checkpoints follow the Hugging Face convention: ``model.safetensors.index.json`` with a ``weight_map``
from tensor name to shard file. Every failure names what is at fault: a shard listed in the index but absent,
a tensor the config implies but no file holds, a shape that disagrees with ``config.json``, a corrupt file.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import torch
from accelerate.utils import set_module_tensor_to_device
from safetensors import SafetensorError, safe_open
from tqdm import tqdm

from engine.checkpoint import save_weights, shard_map, weight_files
from engine.errors import CheckpointError


def tensor_locations(directory: Path) -> dict[str, Path]:
    """Tensor name -> the file that holds it (from the index, or the single file's header)."""
    locations = shard_map(directory)
    if locations is not None:
        return locations
    (single,) = weight_files(directory)
    try:
        with safe_open(str(single), framework="pt", device="cpu") as f:
            return dict.fromkeys(f.keys(), single)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"corrupt or truncated weight file {single}: {e}") from e


def load_tensors(
    model: torch.nn.Module,
    directory: Path,
    names: dict[str, str],
    device: torch.device,
    dtype: torch.dtype,
    progress: bool = True,
) -> None:
    """Fill model parameters (ours -> checkpoint tensor name) from the checkpoint, one tensor at a time."""
    where = tensor_locations(directory)
    missing = [theirs for theirs in names.values() if theirs not in where]
    if missing:
        raise CheckpointError(
            f"tensor {missing[0]} (and {len(missing) - 1} more) expected by {directory / 'config.json'} "
            f"is in no weight file of {directory}"
        )
    by_file: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    for ours, theirs in names.items():
        by_file[where[theirs]].append((ours, theirs))
    expected = {name: p.shape for name, p in model.named_parameters()}
    bar = tqdm(total=len(names), desc=f"loading {directory.name}", unit="tensor", file=sys.stderr, disable=not progress)
    with bar:
        for path, pairs in by_file.items():
            try:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    for ours, theirs in pairs:
                        tensor = f.get_tensor(theirs)
                        if tensor.shape != expected[ours]:
                            raise CheckpointError(
                                f"tensor {theirs} in {path} has shape {tuple(tensor.shape)}, config.json implies "
                                f"{tuple(expected[ours])}"
                            )
                        set_module_tensor_to_device(model, ours, device, value=tensor, dtype=dtype)
                        bar.update()
            except (SafetensorError, OSError, RuntimeError) as e:
                raise CheckpointError(f"corrupt or truncated weight file {path}: {e}") from e


def save_tensors(
    model: torch.nn.Module,
    directory: Path,
    names: dict[str, str],
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 15 * 2**20,
) -> list[Path]:
    """Write parameters under their checkpoint names (sharded with an index above max_shard_bytes)."""
    params = dict(model.named_parameters())
    state = {}
    for ours, theirs in names.items():
        t = params[ours].detach().to("cpu")
        state[theirs] = (t.to(dtype) if dtype is not None else t).contiguous()
    return save_weights(state, directory, max_shard_bytes)
