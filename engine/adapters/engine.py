"""``AdapterEngine``: the CompletionEngine protocol over an external diffusion coder, and its loader.

Infilling prompt formats (each family's own; see ``docs/external-models.md``):

* Dream / Dream-Coder / DiffuCoder: ``<|beginoftext|> prefix [mask] * L suffix <|endoftext|>`` (DreamOn's
  ``process_infilling_prompt``);
* Open-dCoder: ``prefix [mask] * L suffix`` (its ``eval_infill.py``; Qwen2 adds no bos);
* LLaDA: ``<|startoftext|> prefix <|mdm_mask|> * L suffix`` (plain text around the masks, as in its paper's
  infilling use; bos as its tokenizer starts every text).

A canvas of L masks sits in place of the middle; the model attends both ways, so the suffix conditions the
middle directly. The middle is the canvas up to its first end token (eos, or the padding the model was trained
to fill unused positions with, e.g. Dream's ``<|dlm_pad|>``). Each request builds its own prompt: with full
bidirectional attention the prefix's keys depend on the canvas, so there is no exact cache to keep across
requests (``session_id`` is accepted and ignored).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights

from engine.adapters.families import LLADA, Family, arch_spec, detect_family, read_config
from engine.adapters.model import DiffusionLM, ServingLimits, default_limits
from engine.adapters.sampler import DREAM_SAMPLING, LLADA_SAMPLING, AdapterSampling, Layout, denoise
from engine.adapters.tokenizer import AdapterTokenizer
from engine.adapters.weights import load_tensors
from engine.api import Completion, check_request_sizes, pin_threads  # engine.api imports us lazily: no cycle
from engine.checkpoint import resolve_device
from engine.errors import CheckpointError
from engine.sample import SampleOptions


def fit_context(prefix: list[int], suffix: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Keep the end of the prefix and the start of the suffix; the suffix gets at most a third of the budget
    unless the prefix leaves room (code right above the cursor matters most)."""
    if len(prefix) + len(suffix) <= budget:
        return prefix, suffix
    keep_suffix = min(len(suffix), max(budget // 3, budget - len(prefix)))
    keep_prefix = budget - keep_suffix
    return prefix[len(prefix) - keep_prefix :] if keep_prefix else [], suffix[:keep_suffix]


def build_layout(family: Family, tok: AdapterTokenizer, prefix: list[int], suffix: list[int], canvas: int) -> Layout:
    head = [tok.bos_id] if family.bos_in_prompt and tok.bos_id is not None else []
    tail = [tok.eos_id] if family.eos_after_suffix else []
    start = len(head) + len(prefix)
    tokens = [*head, *prefix, *[tok.mask_id] * canvas, *suffix, *tail]
    return Layout(tokens=tokens, canvas_start=start, canvas_len=canvas, shift=family.shift_logits)


def middle_and_score(row: list[int], logp: list[float], end_ids: frozenset[int]) -> tuple[list[int], float]:
    """The middle (tokens before the first end token) and the mean log-probability up to and including it."""
    end = next((i for i, t in enumerate(row) if t in end_ids), None)
    scored = logp[: (end + 1 if end is not None else len(row))]
    return row[:end] if end is not None else row, sum(scored) / max(1, len(scored))


@dataclass
class AdapterEngine:
    """An external diffusion coder in this process. Thread-safe: one request runs the model at a time."""

    model: DiffusionLM
    tokenizer: AdapterTokenizer
    family: Family
    sampling: AdapterSampling
    name: str = "external"
    last_timing_ms: float = 0.0
    threads: int | None = None  # CPU threads for the model's ops (engine.api.pin_threads); None: torch's setting
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        tok, rows = self.tokenizer, self.model.spec.vocab_size
        unused = range(min(tok.vocab_size, rows), rows)  # head rows past the tokenizer decode to nothing
        banned = sorted(set(tok.special_ids) | set(unused))
        self._banned = torch.tensor(banned, dtype=torch.long, device=self.device)

    @property
    def ready(self) -> bool:
        return True

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "diffusion",
            "family": self.family.name,
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "dtype": str(self.model.embed.weight.dtype).removeprefix("torch."),
            "max_context": self.model.config.max_context,
            "max_canvas": self.model.config.max_canvas,
            "sampling": asdict(self.sampling),
        }

    def forget(self, session_id: str) -> None:
        """Nothing is kept per session (see the module docstring)."""

    def complete(
        self,
        prefix: str,
        suffix: str,
        *,
        language: str,
        canvas_length: int,
        num_candidates: int,
        options: SampleOptions = SampleOptions(),  # noqa: B008 - frozen dataclass, safe as a default
        session_id: str | None = None,
    ) -> list[Completion]:
        limits = self.model.config
        check_request_sizes(canvas_length, num_candidates)
        canvas_length = min(canvas_length, limits.max_canvas)  # as LocalEngine: the longest canvas it supports
        tok = self.tokenizer
        before, after = fit_context(tok.encode(prefix), tok.encode(suffix), limits.max_context - 2)
        layout = build_layout(self.family, tok, before, after, canvas_length)
        with self._lock:
            pin_threads(self.threads)
            t0 = time.perf_counter()
            tokens, logp = denoise(self.model, layout, num_candidates, options, self.sampling, banned=self._banned)
            rows, logps = tokens.tolist(), logp.tolist()
            self.last_timing_ms = (time.perf_counter() - t0) * 1e3
        out = []
        for row, lp in zip(rows, logps, strict=True):
            middle, score = middle_and_score(row, lp, tok.end_ids)
            out.append(Completion(text=tok.decode(middle), score=float(score), tokens=len(middle)))
        return out


def is_external(directory: str | Path) -> bool:
    """True when config.json names an architecture other than Diffill's own (which may omit model_type)."""
    config = read_config(Path(directory))
    return str(config.get("model_type", "diffill")).lower() != "diffill" or bool(config.get("architectures"))


def load_model(
    directory: Path,
    family: Family,
    config: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    limits: ServingLimits | None = None,
    progress: bool = True,
) -> DiffusionLM:
    """Build on the meta device, then fill tensor by tensor from the (possibly sharded) safetensors files."""
    spec = arch_spec(family, config, directory / "config.json")
    with init_empty_weights():
        model = DiffusionLM(spec, limits or default_limits(spec))
    load_tensors(model, directory, family.tensor_names(spec), device, dtype, progress)
    model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left:
        raise CheckpointError(f"parameters {left[:3]} were not loaded from {directory}")
    return model.eval()


def load_adapter_engine(
    path: str | Path,
    device: str = "auto",
    *,
    dtype: torch.dtype | None = None,
    sampling: AdapterSampling | None = None,
    limits: ServingLimits | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> AdapterEngine:
    """Load an external checkpoint directory. bf16 on GPU, float32 on CPU unless dtype is given. `threads`: CPU
    threads for the model's ops (engine.api.pin_threads)."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    config = read_config(directory)
    family = detect_family(config, directory / "config.json")
    tokenizer = AdapterTokenizer.load(directory, family, config)
    dev = resolve_device(device)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    model = load_model(directory, family, config, dev, dtype, limits, progress)
    if tokenizer.mask_id >= model.spec.vocab_size:
        raise CheckpointError(
            f"mask token id {tokenizer.mask_id} is outside the model's {model.spec.vocab_size} embedding rows "
            f"({directory / 'config.json'})"
        )
    default = LLADA_SAMPLING if family is LLADA else DREAM_SAMPLING
    return AdapterEngine(model, tokenizer, family, sampling or default, name=directory.name, threads=threads)
