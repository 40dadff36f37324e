"""One PyTorch network for the Qwen2/Qwen3-layout diffusion coders (Dream, DiffuCoder, Open-dCoder, CoDA, Tiny-A2D)
and LLaDA.

Pre-norm decoder blocks without a causal mask: RMSNorm computed in float32 (as Qwen2/LLaDA do) and rotary positions
with the rotate-half convention (Su et al. 2021) in float32 (both ``engine.model``'s: the same math), grouped-query
attention (Ainslie et al. 2023) with optional q/k/v biases and optional per-head q/k RMSNorm before the rotation
(Qwen3), SwiGLU feed-forward (Shazeer 2020), optional tied output head. Parameter names are ours;
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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.adapters.families import ArchSpec
from engine.model import Linear, RMSNorm, apply_rotary, rotary_tables


@dataclass(frozen=True)
class ServingLimits:
    """What a request may ask of a loaded model (``AdapterRunner.max_context`` / ``max_canvas``)."""

    max_context: int  # prompt tokens (prefix + suffix + format tokens)
    max_canvas: int  # masked middle positions


def default_limits(spec: ArchSpec, trained_context: int | None = None, canvas_cap: int = 256) -> ServingLimits:
    """Prompt + canvas within the context the release was trained on (else the config's positions, capped at 4,096:
    attention cost grows with it, and completion needs the nearby code more than the whole file); the canvas gets up
    to a quarter of that (at most canvas_cap), the prompt the rest. Dream's 2,048 -> 1,792 + 256."""
    total = min(trained_context or 4096, spec.max_positions)
    canvas = max(1, min(canvas_cap, total // 4))
    return ServingLimits(max_context=total - canvas, max_canvas=canvas)


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
        self.q = Linear(spec.hidden_size, spec.num_heads * spec.head_dim, bias=spec.qkv_bias)
        self.k = Linear(spec.hidden_size, spec.num_kv_heads * spec.head_dim, bias=spec.qkv_bias)
        self.v = Linear(spec.hidden_size, spec.num_kv_heads * spec.head_dim, bias=spec.qkv_bias)
        self.o = Linear(spec.num_heads * spec.head_dim, spec.hidden_size, bias=False)
        self.q_norm = RMSNorm(spec.head_dim, spec.norm_eps) if spec.qk_norm else None
        self.k_norm = RMSNorm(spec.head_dim, spec.norm_eps) if spec.qk_norm else None

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, context: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, C) -> (output (B, T, C), k, v (B, kv_heads, T, D) of x's own positions)."""
        B, T, _ = x.shape
        y, k, v = self.attend(self.q(x), self.k(x), self.v(x), B, T, cos, sin, context)
        return self.o(y), k, v

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        B: int,
        T: int,
        cos: Tensor,
        sin: Tensor,
        context: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Projected q/k/v of B rows of T tokens -> attention output (B, T, H * D) before o, and k, v."""
        q = q.view(B, T, self.heads, self.head_dim)  # (B, T, H, D)
        k = k.view(B, T, self.kv_heads, self.head_dim)  # (B, T, Hkv, D)
        if self.q_norm is not None and self.k_norm is not None:  # Qwen3: per head, before the rotation
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, D), (B, Hkv, T, D)
        v = v.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        keys, values = k, v
        if context is not None:  # no mask: the order of keys does not matter, their rotary phases carry position
            keys, values = torch.cat((context[0], k), dim=2), torch.cat((context[1], v), dim=2)
        group = self.heads // self.kv_heads
        keys = keys.repeat_interleave(group, dim=1)  # GQA: each kv head serves `group` query heads
        values = values.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, keys, values)  # (B, H, T, D), bidirectional
        return y.transpose(1, 2).reshape(B, T, -1), k, v

    def packed(self, x: Tensor, shapes: list[tuple[int, int]], cos: Tensor, sin: Tensor) -> Tensor:
        """Several requests' rows as one flat token batch x (sum B_i * T_i, C): projections once over all tokens,
        attention per request (its B_i rows of T_i tokens attend within their own row)."""
        q, k, v = self.q(x), self.k(x), self.v(x)
        outs, offset = [], 0
        for B, T in shapes:
            part = slice(offset, offset + B * T)
            y, _, _ = self.attend(q[part], k[part], v[part], B, T, cos[:T], sin[:T])
            outs.append(y.reshape(B * T, -1))
            offset += B * T
        return self.o(torch.cat(outs))


class MLP(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.gate = Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.up = Linear(spec.hidden_size, spec.intermediate_size, bias=False)
        self.down = Linear(spec.intermediate_size, spec.hidden_size, bias=False)

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

    def __init__(self, spec: ArchSpec, limits: ServingLimits | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.limits = limits or default_limits(spec)
        self.embed = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(Block(spec) for _ in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.norm_eps)
        self.lm_head = Linear(spec.hidden_size, spec.vocab_size, bias=False)
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
            spec = self.spec
            self._rope = rotary_tables(spec.head_dim, size, spec.rope_theta, spec.rope_linear_factor, device)
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

    def encode_packed(self, seqs: list[Tensor]) -> list[Tensor]:
        """Exact hidden states for several requests at once (continuous batching): seqs[i] (B_i, T_i) ->
        (B_i, T_i, C) each, equal to ``encode(seqs[i])[0]`` to float rounding."""
        shapes = [(s.shape[0], s.shape[1]) for s in seqs]
        cos, sin = self._rotary(0, max(T for _, T in shapes))
        x = self.embed(torch.cat([s.reshape(-1) for s in seqs]))  # (sum B_i * T_i, C)
        if self.spec.embed_scale != 1.0:
            x = x * self.spec.embed_scale
        for layer in self.layers:
            x = x + layer.attn.packed(layer.attn_norm(x), shapes, cos, sin)
            x = x + layer.mlp(layer.mlp_norm(x))
        sizes = [B * T for B, T in shapes]
        return [h.view(B, T, -1) for h, (B, T) in zip(x.split(sizes), shapes, strict=True)]

    def head(self, hidden: Tensor) -> Tensor:
        logits = self.lm_head(self.norm(hidden))
        return logits * self.spec.logit_scale if self.spec.logit_scale != 1.0 else logits

    def forward(self, ids: Tensor) -> Tensor:
        """Exact logits (B, T, V) for every position; full bidirectional attention."""
        return self.head(self.encode(ids)[0])


@torch.no_grad()
def randomize(model: DiffusionLM, seed: int) -> DiffusionLM:
    """Random weights that keep activations in range and make every tensor matter (norms and biases too): a
    released model's shape without its weights, for benchmarks and tests."""
    device = model.embed.weight.device  # drawn where the model lives: a 7B model's 7e9 draws are slow on a host
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen, device=device)
        if name.endswith("norm.weight"):
            p.copy_(1 + 0.1 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        else:
            p.copy_(noise / math.sqrt(p.shape[-1]))
    return model
