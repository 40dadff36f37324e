"""The reference samplers of Dream, LLaDA and Open-dCoder, on a fill-in-the-middle canvas, with an optional
approximate cache.

The per-request state that calls these functions between steps is ``engine.adapters.runner.AdapterState``.
Every step predicts all canvas positions, then commits ``k`` still-masked positions, best first by an ordering
score, plus any whose token probability exceeds ``SampleOptions.threshold`` (Fast-dLLM's parallel decoding rule;
``threshold=1`` gives the reference samplers exactly). Committed tokens are never revisited.

* Dream (``generation_utils.py``, ``_sample``): timesteps ``linspace(1, eps, steps + 1)``; step i commits
  ``int(masked * (1 - s / t))`` positions (all on the last step). Tokens are drawn from the tempered distribution
  filtered by top-p, then top-k (``sample_tokens``' order); the ordering ``alg`` is ``maskgit_plus`` (probability
  of the drawn token),
  ``topk_margin`` (top-1 minus top-2 probability) or ``entropy`` (negative entropy); ``alg_temp > 0`` draws the
  positions instead of taking the top ones (Gumbel-top-k == Dream's softmax(confidence / alg_temp) multinomial).
* LLaDA (``generate.py``): the canvas is cut into blocks of ``block_length`` filled left to right
  (semi-autoregressive); a block's steps each commit ``ceil(masked / steps_left)`` positions (the same counts as
  ``get_num_transfer_tokens``), ordered by ``low_confidence`` (untempered softmax probability of the drawn token)
  or ``random``. Tokens come from Gumbel-max at ``temperature`` (the same distribution as softmax(logits / T)).
* Open-dCoder's ``p2`` (path planning, Peng et al. 2025, arXiv 2502.03540; Open-dLLM ``generation_utils.py``):
  every step predicts *every* canvas position, then keeps the ``kappa = (i + 1) / steps`` fraction with the highest
  probability of their drawn token and re-masks the rest -- committed tokens may be masked again. Newly unmasked
  positions take the drawn token; positions that stay unmasked keep theirs. The threshold does not apply.

Shifted families (Dream, Open-dCoder, CoDA) read position p's prediction from the logits at p - 1.

Approximate cache (``refresh_every = r > 0``; Fast-dLLM dual cache, Wu et al. 2025): on a refresh step (every r
steps, and at each block start) the exact full forward runs and the keys/values of every position outside the
canvas window are kept; the steps in between recompute only the window (the canvas, plus the position before it
when logits are shifted) against those stale keys/values. ``cache_drift`` measures what that costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.adapters.model import ContextKV, DiffusionLM
from engine.contract import SampleOptions
from engine.sample import sample_categorical

ORDERS = ("maskgit_plus", "topk_margin", "entropy", "low_confidence", "random")  # see ORDER_SCORES
SCHEDULES = ("dream", "llada", "p2")


@dataclass(frozen=True)
class AdapterSampling:
    """Reference-sampler settings that SampleOptions (steps, threshold, temperature, seed) does not cover."""

    order: str = "entropy"  # Dream's alg / LLaDA's remasking: how masked positions are ranked
    schedule: str = "dream"  # how many positions a step commits ("p2": how many stay unmasked, re-masking others)
    top_p: float | None = None
    top_k: int | None = None
    alg_temp: float = 0.0  # > 0: draw positions by softmax(score / alg_temp) instead of taking the top ones
    eps: float = 1e-3  # Dream's final timestep
    block_length: int | None = None  # LLaDA semi-autoregressive blocks; None = the whole canvas is one block
    refresh_every: int = 0  # 0 = exact full forward every step; r > 0 = approximate cache refreshed every r steps

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.block_length is not None and self.block_length < 1:
            raise ValueError(f"block_length must be >= 1, got {self.block_length}")
        if self.refresh_every < 0 or self.alg_temp < 0 or not 0.0 < self.eps < 1.0:
            raise ValueError("refresh_every and alg_temp must be >= 0 and eps in (0, 1)")


@dataclass(frozen=True)
class Layout:
    """A prompt with the canvas in place: tokens (mask ids on the canvas), where the canvas is, shifted or not."""

    tokens: list[int]
    canvas_start: int
    canvas_len: int
    shift: bool

    @property
    def window(self) -> tuple[int, int]:
        """Positions a window pass recomputes: the canvas, and the position before it when logits are shifted."""
        start = max(self.canvas_start - 1, 0) if self.shift else self.canvas_start
        return start, self.canvas_start + self.canvas_len

    def logit_rows(self) -> list[int]:
        """For each canvas position, the window row whose logits predict it."""
        ws = self.window[0]
        return [p - ws for p in self.logit_positions()]

    def logit_positions(self) -> list[int]:
        """For each canvas position, the sequence position whose logits predict it (p - 1 when shifted)."""
        positions = range(self.canvas_start, self.canvas_start + self.canvas_len)
        return [max(p - 1, 0) if self.shift else p for p in positions]


def full_pass(model: DiffusionLM, seq: Tensor, layout: Layout, keep: bool) -> tuple[Tensor, ContextKV | None]:
    """Exact canvas logits (N, L, V) from a forward over the whole sequence; optionally the context keys/values."""
    hidden, ctx = model.encode(seq, keep=layout.window if keep else None)
    return model.head(hidden[:, layout.logit_positions()]), ctx


def window_pass(model: DiffusionLM, seq: Tensor, layout: Layout, ctx: ContextKV) -> Tensor:
    """Approximate canvas logits: recompute the window only, against cached context keys/values."""
    ws, we = layout.window
    hidden, _ = model.encode(seq[:, ws:we], start=ws, context=ctx)
    rows = torch.tensor(layout.logit_rows(), device=seq.device)
    return model.head(hidden[:, rows])


def top_p_filter(logits: Tensor, top_p: float, probe: int = 1024) -> Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (the token crossing it included).

    Sorting a 152k vocabulary for every canvas position costs ~1 s per step on a laptop CPU; a peaked
    distribution's nucleus lies in its top `probe` tokens, found by topk. When some row's nucleus is wider (flat
    distributions, e.g. random weights), the full sort runs. Same set either way; one host sync.
    """
    probs = logits.softmax(dim=-1)
    k = min(probe, logits.shape[-1])
    top, order = probs.topk(k, dim=-1)  # (..., k), descending
    cum = top.cumsum(dim=-1)
    if k < logits.shape[-1] and not bool((cum[..., -1] > top_p).all()):
        top, order = probs.sort(dim=-1, descending=True)
        cum = top.cumsum(dim=-1)
    before = torch.cat((torch.zeros_like(cum[..., :1]), cum[..., :-1]), dim=-1)  # mass ranked above each token
    keep = before <= top_p  # the first token is always kept
    keep_all = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order, keep)
    return logits.masked_fill(~keep_all, -math.inf)


def filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Dream's filters in ``sample_tokens``' order: top-p (nucleus) first, then top-k; -inf outside."""
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    return logits


ScoreFn = Callable[[Tensor, Tensor, Tensor, Tensor, torch.Generator], Tensor]


def _prob_of_token(logits: Tensor, probs: Tensor, tokens: Tensor, prob: Tensor, gen: torch.Generator) -> Tensor:
    return prob  # Dream maskgit_plus: probability of the drawn token under the sampling distribution


def _margin(logits: Tensor, probs: Tensor, tokens: Tensor, prob: Tensor, gen: torch.Generator) -> Tensor:
    top2 = probs.topk(2, dim=-1).values  # Dream topk_margin
    return top2[..., 0] - top2[..., 1]


def _neg_entropy(logits: Tensor, probs: Tensor, tokens: Tensor, prob: Tensor, gen: torch.Generator) -> Tensor:
    return (probs * (probs + 1e-10).log()).sum(dim=-1)  # Dream entropy


def _untempered_prob(logits: Tensor, probs: Tensor, tokens: Tensor, prob: Tensor, gen: torch.Generator) -> Tensor:
    return logits.softmax(dim=-1).gather(-1, tokens[..., None]).squeeze(-1)  # LLaDA low_confidence


def _random(logits: Tensor, probs: Tensor, tokens: Tensor, prob: Tensor, gen: torch.Generator) -> Tensor:
    return torch.rand(prob.shape, generator=gen, device=prob.device)  # LLaDA random remasking


# Ordering scores, higher = commit first. Inputs: raw logits, sampling probs (N, L, V), drawn tokens and their
# probability (N, L), the generator.
ORDER_SCORES: dict[str, ScoreFn] = {
    "maskgit_plus": _prob_of_token,
    "topk_margin": _margin,
    "entropy": _neg_entropy,
    "low_confidence": _untempered_prob,
    "random": _random,
}


def predict(
    logits: Tensor,
    temps: Tensor,
    sampling: AdapterSampling,
    banned: Tensor,
    generator: torch.Generator,
    draw: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tokens (N, L), their probability (N, L) and the ordering score (N, L; higher = commit first).

    draw=False when every row is greedy (known on the host): skips an (N, L, V) noise draw.
    """
    logits = logits.float().index_fill(-1, banned, -math.inf)
    greedy = temps == 0  # (N, 1, 1)
    scaled = filter_logits(logits / torch.where(greedy, 1.0, temps), sampling.top_k, sampling.top_p)
    probs = scaled.softmax(dim=-1)  # (N, L, V)
    tokens = probs.argmax(dim=-1)
    if draw:
        tokens = torch.where(greedy.squeeze(-1), tokens, sample_categorical(probs, generator))
    prob = probs.gather(-1, tokens[..., None]).squeeze(-1)
    score = ORDER_SCORES[sampling.order](logits, probs, tokens, prob, generator)
    if sampling.alg_temp > 0:  # Gumbel-top-k: a draw without replacement from softmax(score / alg_temp)
        u = torch.rand(score.shape, generator=generator, device=score.device).clamp(1e-20, 1 - 1e-7)
        score = score / sampling.alg_temp - (-u.log()).log()
    return tokens, prob, score


def commit_count(remaining: Tensor, step: int, steps: int, sampling: AdapterSampling) -> Tensor:
    """Positions to commit this step per row (N, 1), from the masked positions left in the block."""
    if step == steps - 1:
        return remaining
    if sampling.schedule == "llada":
        return (remaining + (steps - step) - 1) // (steps - step)  # ceil: get_num_transfer_tokens' counts
    t = 1 - step * (1 - sampling.eps) / steps
    s = 1 - (step + 1) * (1 - sampling.eps) / steps
    return (remaining.float() * (1 - s / t)).floor().long()


def commit(
    canvas: Tensor,
    masked: Tensor,
    logp: Tensor,
    predicted: tuple[Tensor, Tensor, Tensor],
    k: Tensor,
    threshold: float,
    allowed: Tensor,
) -> None:
    """Commit, in place, the k best-scored allowed masked positions and any with probability > threshold."""
    tokens, prob, score = predicted
    candidates = masked & allowed
    score = torch.where(candidates, score, -math.inf)
    rank = score.argsort(dim=-1, descending=True).argsort(dim=-1)  # 0 = best
    chosen = candidates & ((rank < k) | (prob > threshold))
    canvas.copy_(torch.where(chosen, tokens, canvas))
    logp.copy_(torch.where(chosen, prob.clamp_min(1e-12).log(), logp))
    masked &= ~chosen


def p2_commit(
    canvas: Tensor,
    masked: Tensor,
    logp: Tensor,
    predicted: tuple[Tensor, Tensor, Tensor],
    step: int,
    steps: int,
    mask_id: int,
) -> None:
    """Open-dCoder's p2 step, in place: keep the kappa = (step + 1) / steps best-scored canvas positions unmasked
    (scores of every position, committed or not), re-mask the rest; unmasked masks take the drawn token."""
    tokens, prob, score = predicted
    remask = int(canvas.shape[-1] * (1 - (step + 1) / steps))  # the same count for every row
    rank = score.argsort(dim=-1).argsort(dim=-1)  # 0 = lowest score
    to_mask = rank < remask
    fill = masked & ~to_mask
    canvas.copy_(torch.where(fill, tokens, torch.where(to_mask, mask_id, canvas)))
    logp.copy_(torch.where(fill, prob.clamp_min(1e-12).log(), torch.where(to_mask, 0.0, logp)))
    masked.copy_(to_mask)


def blocks(canvas_len: int, block_length: int | None, steps: int) -> list[tuple[int, int, int]]:
    """(start, end, steps) per semi-autoregressive block; the step budget is split evenly (at least one each)."""
    size = block_length or canvas_len
    bounds = [(s, min(s + size, canvas_len)) for s in range(0, canvas_len, size)]
    return [(s, e, max(1, steps // len(bounds))) for s, e in bounds]


@dataclass(frozen=True)
class DriftStep:
    step: int
    refreshed: bool  # the approximate path ran the exact full forward this step
    max_abs_diff: float  # max |approximate - exact| canvas logit
    argmax_agreement: float  # fraction of canvas positions whose argmax token agrees
    logit_std: float  # spread of the exact canvas logits, to read max_abs_diff against


@torch.inference_mode()
def cache_drift(
    model: DiffusionLM, layout: Layout, options: SampleOptions, sampling: AdapterSampling, *, banned: Tensor
) -> list[DriftStep]:
    """Follow the exact (greedy, one row) trajectory and, at each step, compare the approximate cache's logits
    (refreshed every sampling.refresh_every steps) with the exact full forward's."""
    if sampling.schedule == "p2":
        raise ValueError("cache_drift follows the dream and llada schedules (p2 re-masks committed tokens)")
    device = model.embed.weight.device
    generator = torch.Generator(device=device).manual_seed(options.seed)
    seq = torch.tensor([layout.tokens], device=device)
    c0, L = layout.canvas_start, layout.canvas_len
    canvas, masked = seq[:, c0 : c0 + L], torch.ones(1, L, dtype=torch.bool, device=device)
    logp, temps = torch.zeros(1, L, device=device), torch.zeros(1, 1, 1, device=device)
    out, ctx, every = [], None, max(1, sampling.refresh_every)
    allowed = torch.ones(L, dtype=torch.bool, device=device)
    for step in range(options.steps):
        refreshed = step % every == 0
        exact, fresh = full_pass(model, seq, layout, keep=refreshed)
        approx = exact if refreshed else window_pass(model, seq, layout, ctx)
        ctx = fresh if refreshed else ctx
        agree = (approx.argmax(-1) == exact.argmax(-1)).float().mean().item()
        out.append(DriftStep(step, refreshed, (approx - exact).abs().max().item(), agree, exact.std().item()))
        predicted = predict(exact, temps, sampling, banned, generator, draw=False)
        remaining = masked.sum(dim=-1, keepdim=True)
        commit(canvas, masked, logp, predicted, commit_count(remaining, step, options.steps, sampling),
               options.threshold, allowed)  # fmt: skip
    return out
