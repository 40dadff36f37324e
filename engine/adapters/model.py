"""One PyTorch network for the Qwen2-layout diffusion coders (Dream, DiffuCoder, Open-dCoder) and LLaDA.

Pre-norm decoder blocks without a causal mask: RMSNorm computed in float32 (as Qwen2/LLaDA do), rotary positions
with the rotate-half convention (Su et al. 2021) in float32, grouped-query attention (Ainslie et al. 2023) with
optional q/k/v biases, SwiGLU feed-forward (Shazeer 2020), optional tied output head. Parameter names are ours;
``Family.tensor_names`` maps them to each checkpoint's names.

Two ways to run it:

* ``encode(ids)``: the exact forward over the whole sequence (every position attends to every position).
  With ``keep=(start, end)`` it also returns, per layer, the keys/values of the positions *outside* the window.
* ``encode(window_ids, start=s, context=kv)``: the window's positions only, attending to the cached keys/values
  of everything else plus their own fresh ones. This is Fast-dLLM's "dual cache" (Wu et al. 2025, arXiv
  2505.22618): with bidirectional attention the prefix/suffix keys *do* depend on the canvas, so a cache built at
  step t is stale at step t + 1 -- an approximation, refreshed every few steps by the sampler.

``head`` turns hidden states into logits; callers apply it to the positions they need only (the head is the
largest matmul of a small model: 896 x 151936 for Qwen2.5-0.5B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.adapters.families import ArchSpec


class RMSNorm(nn.Module):
    """Qwen2/LLaDA RMSNorm: normalise in float32, cast back, then scale (the cast happens before the weight)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotary_tables(spec: ArchSpec, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos/sin (length, head_dim // 2), float32; linear rope scaling divides positions by its factor."""
    d = spec.head_dim
    inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=device) / d))
    positions = torch.arange(length, dtype=torch.float64, device=device) / spec.rope_linear_factor
    angles = torch.outer(positions, inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE in float32. x: (B, H, T, D); cos/sin: (T, D/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


@dataclass(frozen=True)
class ServingLimits:
    """What a request may ask of a loaded model (the CLI reads ``engine.model.config.max_canvas``)."""

    max_context: int  # prompt tokens (prefix + suffix + format tokens)
    max_canvas: int  # masked middle positions


def default_limits(spec: ArchSpec, context_cap: int = 4096, canvas_cap: int = 256) -> ServingLimits:
    """Canvas up to a quarter of the positions (at most canvas_cap); the context gets the rest, capped: attention
    cost grows with it, and completion needs the nearby code more than the whole file."""
    canvas = max(1, min(canvas_cap, spec.max_positions // 4))
    return ServingLimits(max_context=min(context_cap, spec.max_positions) - canvas, max_canvas=canvas)


@dataclass
class ContextKV:
    """Per-layer keys/values (after rotary) of the positions outside a window: each (B, kv_heads, T_ctx, D)."""

    keys: list[Tensor]
    values: list[Tensor]
    window: tuple[int, int]


class Attention(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = spec.num_heads, spec.num_kv_heads, spec.head_dim
        self.q = nn.Linear(spec.hidden_size, spec.num_heads * spec.head_dim, bias=spec.qkv_bias)
        self.k = nn.Linear(spec.hidden_size, spec.num_kv_heads * spec.head_dim, bias=spec.qkv_bias)
        self.v = nn.Linear(spec.hidden_size, spec.num_kv_heads * spec.head_dim, bias=spec.qkv_bias)
        self.o = nn.Linear(spec.num_heads * spec.head_dim, spec.hidden_size, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, context: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, C) -> (output (B, T, C), k, v (B, kv_heads, T, D) of x's own positions)."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        keys, values = k, v
        if context is not None:  # no mask: the order of keys does not matter, their rotary phases carry position
            keys, values = torch.cat((context[0], k), dim=2), torch.cat((context[1], v), dim=2)
        group = self.heads // self.kv_heads
        keys = keys.repeat_interleave(group, dim=1)  # GQA: each kv head serves `group` query heads
        values = values.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, keys, values)  # (B, H, T, D), bidirectional
        return self.o(y.transpose(1, 2).reshape(B, T, -1)), k, v


class MLP(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.gate = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.up = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.down = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.attn = Attention(spec)
        self.mlp_norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.mlp = MLP(spec)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, context: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        a, k, v = self.attn(self.attn_norm(x), cos, sin, context)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), k, v


class DiffusionLM(nn.Module):
    """Embedding, blocks, final norm, head. ``forward`` = exact logits for every position, no sampling."""

    def __init__(self, spec: ArchSpec, config: ServingLimits | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.config = config or default_limits(spec)
        self.embed = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(Block(spec) for _ in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        if spec.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self._rope: tuple[Tensor, Tensor] | None = None  # plain attributes, not buffers: built on first use

    def tie_weights(self) -> None:
        if self.spec.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _rotary(self, start: int, length: int) -> tuple[Tensor, Tensor]:
        device = self.embed.weight.device
        if self._rope is None or self._rope[0].shape[0] < start + length or self._rope[0].device != device:
            size = max(start + length, 2 * (self._rope[0].shape[0] if self._rope is not None else 512))
            self._rope = rotary_tables(self.spec, size, device)
        cos, sin = self._rope
        return cos[start : start + length], sin[start : start + length]

    def encode(
        self,
        ids: Tensor,
        start: int = 0,
        context: ContextKV | None = None,
        keep: tuple[int, int] | None = None,
    ) -> tuple[Tensor, ContextKV | None]:
        """Hidden states (B, T, C) of ids at positions start..start+T-1 (before the final norm).

        context: cached keys/values of the other positions (window mode). keep=(s, e): also return the keys/values
        of every position outside [s, e) for a later window pass (only in a full pass, start == 0).
        """
        cos, sin = self._rotary(start, ids.shape[1])
        x = self.embed(ids)
        if self.spec.embed_scale != 1.0:
            x = x * self.spec.embed_scale
        kept = ContextKV([], [], keep) if keep is not None else None
        for i, layer in enumerate(self.layers):
            ctx = (context.keys[i], context.values[i]) if context is not None else None
            x, k, v = layer(x, cos, sin, ctx)
            if kept is not None:
                s, e = keep
                kept.keys.append(torch.cat((k[:, :, :s], k[:, :, e:]), dim=2))
                kept.values.append(torch.cat((v[:, :, :s], v[:, :, e:]), dim=2))
        return x, kept

    def head(self, hidden: Tensor) -> Tensor:
        logits = self.lm_head(self.norm(hidden))
        return logits * self.spec.logit_scale if self.spec.logit_scale != 1.0 else logits

    def forward(self, ids: Tensor) -> Tensor:
        """Exact logits (B, T, V) for every position; full bidirectional attention."""
        return self.head(self.encode(ids)[0])
