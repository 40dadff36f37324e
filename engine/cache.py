"""Key/value cache for the context, and reuse of a cache across requests.

The context's keys/values do not depend on the canvas (see ``engine.model``), so one cache serves every
denoising step of a request. Between requests, typing at the cursor only appends to the prefix, so the new
context usually shares a long token prefix with the cached one: we keep that part and compute only the rest,
as llama.cpp does for prompts (``common_prefix_len`` + ``KVCache.truncate`` + ``DiffillModel.extend``).
Buffers are preallocated and grow by doubling (``reserve``), so a short file's cache stays small and extending
rarely reallocates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from engine.model import DiffillModel


class KVCache:
    """Per-layer key/value buffers of shape (B, H, capacity, D); positions [0, length) are filled."""

    def __init__(
        self,
        *,
        n_layers: int,
        batch: int,
        n_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (n_layers, batch, n_heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        # Final hidden state (B, d_model) of position length - 1, set by ``DiffillModel.extend``: a shifted-logits
        # diffusion model reads canvas position 0 from it. None when unknown (empty, or truncated).
        self.last_hidden: Tensor | None = None

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def write(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, H, T, D) at [start, start+T) and return views of everything up to start+T."""
        end = start + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def scratch(self, layer: int, k: Tensor, v: Tensor, slots: Tensor, span: int) -> tuple[Tensor, Tensor]:
        """Keys/values (H, T, D) of batch row 0 placed at `slots` (T,) positions after the filled ones, without making
        them part of the cache (``length`` stays): views (1, H, length + span, D) of context + scratch, for one
        attention call. Slots this call does not write keep what an earlier call left there (the caller's mask
        hides them or means to read them). The caller reserves the room first. ``write`` overwrites them."""
        self.k[layer, 0].index_copy_(1, self.length + slots, k)
        self.v[layer, 0].index_copy_(1, self.length + slots, v)
        end = self.length + span
        return self.k[layer, :1, :, :end], self.v[layer, :1, :, :end]

    def view(self, layer: int) -> tuple[Tensor, Tensor]:
        """The filled part of one layer: (B, H, length, D) keys and values."""
        return self.k[layer, :, :, : self.length], self.v[layer, :, :, : self.length]

    def reserve(self, capacity: int) -> None:
        """Grow the buffers to hold at least `capacity` positions (doubling, so growth is amortised)."""
        if capacity <= self.capacity:
            return
        new = max(capacity, 2 * self.capacity)
        n_layers, batch, n_heads, _, head_dim = self.k.shape
        k = self.k.new_zeros((n_layers, batch, n_heads, new, head_dim))
        v = self.v.new_zeros((n_layers, batch, n_heads, new, head_dim))
        k[:, :, :, : self.capacity] = self.k  # the scratch after `length` too (a canvas step may read it again)
        v[:, :, :, : self.capacity] = self.v
        self.k, self.v = k, v

    def truncate(self, length: int) -> None:
        """Forget positions >= length (their buffers are simply overwritten later)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {length}")
        if length != self.length:
            self.last_hidden = None
        self.length = length

    def repeat(self, batch: int, capacity: int | None = None) -> KVCache:
        """A new cache holding `batch` copies of row 0's filled part (for batched autoregressive decoding)."""
        n_layers, _, n_heads, _, head_dim = self.k.shape
        out = KVCache(
            n_layers=n_layers,
            batch=batch,
            n_heads=n_heads,
            head_dim=head_dim,
            capacity=capacity or self.capacity,
            dtype=self.k.dtype,
            device=self.k.device,
        )
        n = self.length
        out.k[:, :, :, :n] = self.k[:, :1, :, :n]
        out.v[:, :, :, :n] = self.v[:, :1, :, :n]
        out.length = n
        if self.last_hidden is not None:
            out.last_hidden = self.last_hidden[:1].expand(batch, -1).clone()
        return out


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ContextCache:
    """A KVCache together with the tokens it holds; ``update`` reuses the longest common token prefix."""

    def __init__(self, cache: KVCache) -> None:
        self.cache = cache
        self.tokens: list[int] = []

    def reusable(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of a new context are already cached.

        At least one token is always recomputed: ``extend`` needs a new token to produce the last position's
        logits, and an identical context would otherwise leave nothing to run.
        """
        return min(common_prefix_len(self.tokens, tokens), max(len(tokens) - 1, 0))

    def update(self, model: DiffillModel, tokens: Sequence[int]) -> tuple[Tensor, int]:
        """Make the cache hold exactly `tokens`, computing only what is not cached yet.

        Returns the logits of the last context position (1, V), used by autoregressive decoding, and the number of
        tokens that were computed.
        """
        if not tokens:
            raise ValueError("context must hold at least one token")
        keep = self.reusable(tokens)
        self.cache.truncate(keep)
        self.cache.reserve(len(tokens))
        self.tokens = []  # stays empty if extend raises, so a failed update never leaves a stale claim
        new = torch.tensor([tokens[keep:]], dtype=torch.long, device=self.cache.k.device)
        logits = model.extend(new, self.cache)
        self.tokens = list(tokens)
        return logits, len(tokens) - keep
