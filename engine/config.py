"""Model configuration: one frozen dataclass, saved as ``config.json`` (``asdict``), with named presets.

Loading tolerates keys this version does not know (a newer checkpoint's extra fields), so old code can still
read the fields it understands; missing keys take the defaults below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.contract import DEFAULT_TEMPERATURE, check_temperature
from engine.errors import CheckpointError

MODEL_TYPE = "diffill"

# Tokens a sampled candidate draws from at each position when a checkpoint names no `top_k`. 16, not 64: topk over
# a 12k vocabulary for 4 x 32 positions took 9.9 ms at k=64 and 4.8 at k=16 (1 CPU thread); a warm request 298 ->
# 271 CPU-ms.
DEFAULT_TOP_K = 16


@dataclass(frozen=True)
class ModelConfig:
    # Matches the shipped byte-level BPE (12k merges + specials): small enough that the tied embedding is a
    # modest share of a 20M model, large enough that indentation and keywords are single tokens.
    vocab_size: int = 12288
    # Width 384 / 8 layers is ~20M parameters with the tied embedding: fast on a 2-core CPU.
    d_model: int = 384
    n_layers: int = 8
    # Head dim 64 (384 / 6): the size SDPA kernels are tuned for.
    n_heads: int = 6
    # SwiGLU hidden width 3 * d_model (Shazeer 2020 uses ~8/3; a little wider brings the preset to 20M),
    # a multiple of 64 for matmul efficiency.
    ffn_hidden: int = 1152
    # Longest context (suffix + prefix + FIM tags) the rotary table is built for.
    max_context: int = 2048
    # Longest canvas (masked middle) a request may ask for; training targets are padded with <eos> to it.
    max_canvas: int = 64
    # Standard RoPE base (Su et al. 2021); contexts are short enough not to need NTK scaling.
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # Tied input/output embedding: saves vocab_size * d_model parameters, which matters at this size.
    tie_embeddings: bool = True
    # False: the diffusion model (bidirectional canvas). True: the autoregressive twin (causal canvas,
    # next-token loss), the honest peer for every speed and quality claim.
    causal_canvas: bool = False
    # Diffusion only: canvas position i is predicted from the hidden state at i - 1 (for i = 0, the context's last
    # position, <fim_middle>), the one-position shift Dream / DiffuCoder keep when adapting an AR model, so every
    # position keeps predicting "the next token" as it did in AR training. ``denoise`` applies it; callers always
    # get logits per canvas position.
    shift_logits: bool = False
    # Temperature of the alternative candidates when a request leaves it to the model (SampleOptions.temperature
    # None): tuned per model, since what helps one hurts another (docs/speed.md, round 6: the diffusion default
    # shows a line on 82% of HumanEval-Infilling single-line problems at 1.2, 73% at 0.8; its AR twin does best at
    # 0.8).
    temperature: float = DEFAULT_TEMPERATURE
    # How many of a position's likeliest tokens a sampled candidate draws from (``engine.sample.predict``); tuned per
    # model beside the temperature, since the two move together (docs/speed.md, round 7).
    top_k: int = DEFAULT_TOP_K
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_hidden", "max_context", "max_canvas")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if self.shift_logits and self.causal_canvas:
            raise ValueError("shift_logits is for the diffusion model; the AR twin predicts the next token already")
        check_temperature(self.temperature)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r}, got {self.model_type!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def max_seq_len(self) -> int:
        return self.max_context + self.max_canvas

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        data = read_config(path)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"invalid model config {path}: {e}") from e


def read_config(path: str | Path) -> dict[str, Any]:
    """A checkpoint's config.json as a dict (any architecture's); CheckpointError naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"missing model config: {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt model config {path}: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"corrupt model config {path}: expected a JSON object")
    return data


PRESETS: dict[str, ModelConfig] = {
    # Unit tests: a model that runs a forward in milliseconds.
    "tiny": ModelConfig(d_model=64, n_layers=2, n_heads=2, ffn_hidden=192, max_context=512, max_canvas=32),
    # The CPU-trained default: what two hours of a 2-core CPU can train (~8M parameters, 3M of them embedding).
    "cpu-8m": ModelConfig(d_model=256, n_layers=6, n_heads=4, ffn_hidden=768),
    # Issue 15 (the CPU budget is ~100M tokens across sittings; ~20 tokens per parameter), 8k vocabulary. cpu-4m
    # (4.45M, 1.57M of it embedding) is the default recipe's: after 10 minutes side by side on the busy 2-core VM it
    # was ahead of cpu-7m (7.21M, 2.10M embedding) on held-out AR loss, 7.01 vs 7.06 (89 vs 73 steps of 12 rows).
    "cpu-4m": ModelConfig(vocab_size=8192, d_model=192, n_layers=6, n_heads=3, ffn_hidden=576),
    "cpu-7m": ModelConfig(vocab_size=8192, d_model=256, n_layers=6, n_heads=4, ffn_hidden=768),
    # The size the engine benchmark uses (~20M parameters with a 12k vocab).
    "small-20m": ModelConfig(),
    # Guide size for a GPU-trained default that stays fast on a 2-core CPU (~35M parameters).
    "base-35m": ModelConfig(d_model=512, n_layers=8, n_heads=8, ffn_hidden=1408),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return replace(base, **overrides)
