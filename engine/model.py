"""The Diffill transformer: a masked-diffusion code model with an exact, reusable context cache.

Architecture: pre-norm decoder blocks with RMSNorm (Zhang & Sennrich 2019), rotary positions (Su et al. 2021,
rotate-half convention), SwiGLU feed-forward (Shazeer 2020), no biases, tied embeddings.

Sequence layout (see ``engine.layout``): ``context = [lang, fim_suffix, suffix.., fim_prefix, prefix.., fim_middle]``
followed by a canvas of L positions at the cursor. The attention mask is the key decision of the design:

* context tokens attend causally to context only (suffix, then prefix), so their keys/values never depend on
  the canvas: they are computed once per request (``extend``) and reused by every denoising step;
* canvas tokens attend to the whole context and to the whole canvas (bidirectional; ``causal_canvas`` makes it
  causal, which is the autoregressive twin).

Three entry points share the blocks: ``forward`` (training: full sequence with an explicit mask), ``extend``
(append tokens to a ``KVCache`` causally: prefilling a context, growing it when the user types, and AR decoding)
and ``denoise`` (one denoising step: canvas against the cached context). ``forward`` returns logits and never
samples; sampling lives in ``engine.sample``.

Logit shift (``ModelConfig.shift_logits``, diffusion adapted from AR as in Dream / DiffuCoder): canvas position i
is read from the output at position i - 1, position 0 from the context's last position (whose final hidden state
``extend`` keeps in the cache). ``forward`` returns every position's own logits (training places the targets);
``denoise`` and ``denoise_packed`` apply the shift, so they always return logits per canvas position.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.cache import KVCache
from engine.config import ModelConfig


class CanvasStep(NamedTuple):
    """One request's part of a denoising step (``DiffillModel.denoise_packed``): which canvas positions run through
    the model (`queries`, flat row-major indices into its n x L canvas), their rotary tables, their attention mask
    (``canvas_mask``) and the scratch slots after the context where their keys/values go (``KVCache.scratch``)."""

    rows: int
    length: int
    queries: Tensor | None  # None: every position, in order
    cos: Tensor
    sin: Tensor
    mask: Tensor
    slots: Tensor  # (T,) scratch position of each query after the context: row in the whole canvas x L + column

    @property
    def tokens(self) -> int:
        return self.rows * self.length if self.queries is None else len(self.queries)


class RMSNorm(nn.Module):
    """Normalise in float32, cast back, then scale (Qwen2/LLaDA's order, so the adapters share this norm)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


def rotary_tables(
    head_dim: int, length: int, theta: float, scale: float = 1.0, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """cos/sin tables (length, head_dim // 2), float32, for positions 0..length-1 divided by `scale` (linear
    rope scaling; 1.0 = none). Angles are computed in float64 so long positions keep their precision."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim))
    positions = torch.arange(length, dtype=torch.float64, device=device) / scale
    angles = torch.outer(positions, inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE computed in float32, cast back. x: (B, H, T, D); cos/sin broadcast to (.., T, D/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


def bucket_rows(rows: int) -> int:
    """Row count a bfloat16 CPU matmul runs at: the next power of two up to 64, then the next multiple of 64."""
    return 1 << (rows - 1).bit_length() if rows <= 64 else -(-rows // 64) * 64


class Linear(nn.Linear):
    """``nn.Linear`` that, in bfloat16 inference on CPU, pads its rows to ``bucket_rows``.

    oneDNN (which runs bf16 matmuls on CPU) builds and keeps a kernel for every input shape it sees; a
    completion engine feeds it ever new row counts (prefills of any length, canvases narrowing), and a process
    grew by ~1 GB per 1,000 shapes (measured: 223 -> 2,549 MB after 2,000 row counts of one bf16 layer). With
    rows bucketed, a layer sees a few dozen shapes. Float32, training and GPUs take the plain path.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype is not torch.bfloat16 or x.device.type != "cpu" or torch.is_grad_enabled():
            return super().forward(x)
        rows = x.numel() // x.shape[-1]
        pad = bucket_rows(rows) - rows
        if pad == 0:
            return super().forward(x)
        flat = F.pad(x.reshape(rows, x.shape[-1]), (0, 0, 0, pad))
        return super().forward(flat)[:rows].view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = Linear(cfg.d_model, cfg.d_model, bias=False)

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, T, D)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def _out(self, y: Tensor) -> Tensor:
        B, H, T, D = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, H * D))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        """Full sequence with an explicit boolean mask (B, 1, T, T), True = may attend."""
        q, k, v = self._qkv(x, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def extend(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int) -> Tensor:
        """Append x's keys/values at cache.length.. and attend causally to everything cached before them."""
        q, k, v = self._qkv(x, cos, sin)
        start, T = cache.length, x.shape[1]
        keys, values = cache.write(layer, start, k, v)  # (B, H, start + T, D)
        if start == 0:  # a fresh prefill: plain causal attention, which SDPA runs without materialising a mask
            return self._out(F.scaled_dot_product_attention(q, keys, values, is_causal=True))
        # Causal with an offset: new token i sees cached tokens and new tokens 0..i.
        mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
        return self._out(F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))

    def denoise_packed(self, x: Tensor, steps: list[CanvasStep], caches: list[KVCache], layer: int) -> Tensor:
        """Several requests' canvas positions as one flat token batch x (T_total, C): the projections run once over
        all tokens; attention runs per request against that request's own cached context and canvas scratch."""
        qkv = self.qkv(x)  # (T_total, 3C): one matmul for every request
        outs, offset = [], 0
        for step, cache in zip(steps, caches, strict=True):
            T = step.tokens
            part = qkv[offset : offset + T].view(1, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = apply_rotary(part[0], step.cos, step.sin), apply_rotary(part[1], step.cos, step.sin), part[2]
            y = attend_canvas(q, k, v, cache, layer, step.mask, step.slots)  # (1, H, T, D)
            outs.append(y[0].transpose(0, 1).reshape(T, -1))
            offset += T
        return self.proj(torch.cat(outs))


def canvas_mask(slots: Tensor, length: int, context: int, canvas_keys: int, causal: bool) -> Tensor:
    """Boolean mask (len(slots), context + canvas_keys) of ``attend_canvas``: a canvas query at scratch slot s (its
    row's index in the whole canvas x `length` + its column) sees the whole context and its own row's canvas (all
    of it, or causally), not the other rows' canvases, whose keys share the scratch."""
    keys = torch.arange(canvas_keys, device=slots.device)
    same_row = (slots[:, None] // length) == (keys[None, :] // length)
    if causal:
        same_row &= keys[None, :] <= slots[:, None]
    return torch.cat((torch.ones(len(slots), context, dtype=torch.bool, device=slots.device), same_row), dim=1)


def attend_canvas(q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int, mask: Tensor, slots: Tensor) -> Tensor:
    """Attention of canvas queries over [context ; own canvas row]. q, k, v: (1, H, T, D), the T positions of a
    step, any rows folded into one query axis; the context is the cache's (batch 1, shared by every row); mask
    from ``canvas_mask``. The queries' keys/values are written at their `slots` of the cache's spare positions
    after the context (``KVCache.scratch``: no copy of the context), so the whole step is one fused SDPA call
    against one key sequence laid out as the whole canvas's would be, whatever rows or positions run: a row slice
    of a step gets those rows of the whole step's outputs (the fused kernel's blocking follows key positions and
    length; keys laid out afresh differed in the last bits), and positions that do not run this step are read
    from what an earlier step left in their slots (``SampleOptions.canvas_cache``).

    Measured on CPU (B=4, L=32, C=1,460, 1 thread): 3.4 ms instead of 8.4 for the explicit score matrices and
    float32 softmax it replaced (2.4 vs 8.1 in bfloat16; docs/speed.md). Cost O(T * (C + B * L)) per head.
    """
    keys, values = cache.scratch(layer, k[0], v[0], slots, mask.shape[1] - cache.length)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (1, H, T, D)


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = Linear(cfg.d_model, 2 * cfg.ffn_hidden, bias=False)
        self.down = Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.mlp(self.mlp_norm(x))

    def extend(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int) -> Tensor:
        x = x + self.attn.extend(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))

    def denoise_packed(self, x: Tensor, steps: list[CanvasStep], caches: list[KVCache], layer: int) -> Tensor:
        x = x + self.attn.denoise_packed(self.attn_norm(x), steps, caches, layer)
        return x + self.mlp(self.mlp_norm(x))


def sequence_mask(pad: Tensor, context_len: int, canvas_len: int, causal_canvas: bool) -> Tensor:
    """Boolean attention mask (B, 1, T, T) for left-padded ``context + canvas`` rows; True = may attend.

    pad: (B,) number of pad tokens at the start of each row's context. Context queries see earlier valid
    context; canvas queries see all valid context and the canvas (all of it, or causally). Pad queries see only
    themselves so that no softmax row is empty (their outputs are never used).
    """
    T = context_len + canvas_len
    idx = torch.arange(T, device=pad.device)
    q, k = idx[:, None], idx[None, :]  # (T, 1), (1, T)
    in_canvas_q, in_canvas_k = q >= context_len, k >= context_len
    canvas_rule = (k <= q) if causal_canvas else torch.ones(T, T, dtype=torch.bool, device=pad.device)
    allowed = torch.where(in_canvas_q, ~in_canvas_k | canvas_rule, (k <= q) & ~in_canvas_k)  # (T, T)
    valid_k = k[None] >= pad[:, None, None]  # (B, 1, T)
    valid_q = q[None] >= pad[:, None, None]  # (B, T, 1)
    mask = (allowed[None] & valid_k & valid_q) | (q == k)[None]
    return mask[:, None]  # (B, 1, T, T)


class DiffillModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale residual output projections by depth so the residual stream starts near unit size.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _rotary(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions: (B, T) or (T,) -> cos/sin of shape (B or 1, 1, T, D/2)."""
        if positions.dim() == 1:
            positions = positions[None]
        return self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]

    def forward(self, tokens: Tensor, pad: Tensor, context_len: int, select: Tensor | None = None) -> Tensor:
        """Training forward. tokens: (B, T) = left-padded context (context_len) + canvas; pad: (B,).

        Returns logits (B, T, V); with `select` (B, T) bool, only the selected positions' logits, (N, V) in
        row-major order -- the vocabulary projection is most of a small model's step, and a loss needs only a
        few positions. Positions count from each row's first real token, so a padded row gets the same
        positions as the same row unpadded (and as the cached path).
        """
        B, T = tokens.shape
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds max_seq_len {self.config.max_seq_len}")
        positions = (torch.arange(T, device=tokens.device)[None] - pad[:, None]).clamp(min=0)  # (B, T)
        cos, sin = self._rotary(positions)
        mask = sequence_mask(pad, context_len, T - context_len, self.config.causal_canvas)
        x = self.embed(tokens)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.lm_head(self.norm(x if select is None else x[select]))

    def new_cache(self, batch: int = 1, capacity: int = 256) -> KVCache:
        """An empty cache; it grows on demand up to the positions a request needs."""
        cfg = self.config
        return KVCache(
            n_layers=cfg.n_layers,
            batch=batch,
            n_heads=cfg.n_heads,
            head_dim=cfg.head_dim,
            capacity=min(capacity, cfg.max_seq_len),
            dtype=self.embed.weight.dtype,
            device=self.embed.weight.device,
        )

    def extend(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """Append tokens (B, T) to the cache causally; returns logits of the last new position (B, V)."""
        B, T = tokens.shape
        start = cache.length
        if start + T > self.config.max_seq_len:
            raise ValueError(f"{start + T} positions exceed max_seq_len {self.config.max_seq_len}")
        cache.reserve(start + T)
        cos, sin = self._rotary(torch.arange(start, start + T, device=tokens.device))
        x = self.embed(tokens)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block.extend(x, cos, sin, cache, i)
        cache.length = start + T
        cache.last_hidden = x[:, -1]
        return self.lm_head(self.norm(x[:, -1]))

    def _shifted(self, x: Tensor, cache: KVCache) -> Tensor:
        """Canvas hidden states (B, L, C) -> [h(context last), h(0), ..., h(L-2)]: the shifted-logits readout."""
        if cache.last_hidden is None:
            raise ValueError("a shifted-logits model needs the context's last hidden state: extend the cache first")
        first = cache.last_hidden[:1, None].to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat((first, x[:, :-1]), dim=1)

    def _canvas_step(
        self, canvas: Tensor, cache: KVCache, rows: tuple[int, int] | None, queries: Tensor | None
    ) -> CanvasStep:
        """A canvas's positions to run, their rotary tables and attention mask for one step, with room for the
        whole canvas's keys after the context."""
        n, L = canvas.shape
        C = cache.length
        if C + L > self.config.max_seq_len:
            raise ValueError(f"context {C} + canvas {L} exceeds max_seq_len {self.config.max_seq_len}")
        first, total = rows or (0, n)
        local = torch.arange(n * L, device=canvas.device) if queries is None else queries
        cos, sin = self._rotary(C + local % L)
        slots = first * L + local
        cache.reserve(C + total * L)  # attend_canvas keeps the rows' canvas keys/values after the context
        mask = canvas_mask(slots, L, C, max(total, first + n) * L, self.config.causal_canvas)
        return CanvasStep(n, L, queries, cos, sin, mask, slots)

    def denoise(
        self,
        canvas: Tensor,
        cache: KVCache,
        select: Tensor | None = None,
        rows: tuple[int, int] | None = None,
        queries: Tensor | None = None,
    ) -> Tensor:
        """One denoising step: canvas tokens (B, L) against the cached context (batch 1). Returns (B, L, V), or
        with `select` (P,) (flat row-major indices into the B x L canvas) the logits of those positions only,
        (P, V): the vocabulary projection is the largest matmul of a small model, and committed positions need none.
        With `rows` = (first, total) the canvas is rows first..first + B of a step over `total` rows (each row
        attends only to the context and itself): the logits equal those rows of the whole step's
        (``attend_canvas``), so a big step can run in row slices. With `queries` (T,) (flat indices as `select`)
        only those positions run through the model; every other position's keys/values are read from the scratch
        an earlier step of this canvas left in the cache, and its logits are not meaningful
        (``SampleOptions.canvas_cache``)."""
        return self.denoise_packed([canvas], [cache], [select], [rows], [queries])[0]

    def denoise_packed(
        self,
        canvases: list[Tensor],
        caches: list[KVCache],
        select: list[Tensor | None] | None = None,
        rows: list[tuple[int, int] | None] | None = None,
        queries: list[Tensor | None] | None = None,
    ) -> list[Tensor]:
        """One denoising step for several requests at once (continuous batching): canvases[i] (n_i, L_i) against
        caches[i] (batch 1), optionally a row slice `rows[i]` and the positions `queries[i]` that run (``denoise``).
        Returns logits (n_i, L_i, V) per request (or (P_i, V) of `select[i]`'s positions), equal to ``denoise`` on
        each alone."""
        rows = rows or [None] * len(canvases)
        queries = queries or [None] * len(canvases)
        steps = [
            self._canvas_step(c, cache, r, q) for c, cache, r, q in zip(canvases, caches, rows, queries, strict=True)
        ]
        flat = [c.reshape(-1) for c in canvases]
        tokens = [f if s.queries is None else f[s.queries] for f, s in zip(flat, steps, strict=True)]
        x = self.embed(torch.cat(tokens))  # (T_total, C)
        for i, block in enumerate(self.blocks):
            x = block.denoise_packed(x, steps, caches, i)
        hidden = []
        for h, step in zip(x.split([s.tokens for s in steps]), steps, strict=True):
            if step.queries is not None:  # positions that did not run: zeros (their logits are not used)
                h = h.new_zeros(step.rows * step.length, h.shape[-1]).index_copy_(0, step.queries, h)
            hidden.append(h.view(step.rows, step.length, -1))
        if self.config.shift_logits:
            hidden = [self._shifted(h, cache) for h, cache in zip(hidden, caches, strict=True)]
        select = select or [None] * len(canvases)
        flat_hidden = [h.reshape(-1, h.shape[-1]) for h in hidden]
        picked = [h if sel is None else h[sel] for h, sel in zip(flat_hidden, select, strict=True)]
        logits = self.lm_head(self.norm(torch.cat(picked)))  # (T', V)
        chunks = logits.split([len(p) for p in picked])
        return [
            chunk.view(h.shape[0], h.shape[1], -1) if sel is None else chunk
            for chunk, h, sel in zip(chunks, hidden, select, strict=True)
        ]
