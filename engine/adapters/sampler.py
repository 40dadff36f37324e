"""The reference samplers of Dream and LLaDA, on a fill-in-the-middle canvas, with an optional approximate cache.

Every step predicts all canvas positions, then commits ``k`` still-masked positions, best first by an ordering
score, plus any whose token probability exceeds ``SampleOptions.threshold`` (Fast-dLLM's parallel decoding rule;
``threshold=1`` gives the reference samplers exactly). Committed tokens are never revisited.

* Dream (``generation_utils.py``, ``_sample``): timesteps ``linspace(1, eps, steps + 1)``; step i commits
  ``int(masked * (1 - s / t))`` positions (all on the last step). Tokens are drawn from the tempered, top-p/top-k
  filtered distribution; the ordering ``alg`` is ``maskgit_plus`` (probability of the drawn token),
  ``topk_margin`` (top-1 minus top-2 probability) or ``entropy`` (negative entropy); ``alg_temp > 0`` draws the
  positions instead of taking the top ones (Gumbel-top-k == Dream's softmax(confidence / alg_temp) multinomial).
* LLaDA (``generate.py``): the canvas is cut into blocks of ``block_length`` filled left to right
  (semi-autoregressive); a block's steps each commit ``ceil(masked / steps_left)`` positions (the same counts as
  ``get_num_transfer_tokens``), ordered by ``low_confidence`` (untempered softmax probability of the drawn token)
  or ``random``. Tokens come from Gumbel-max at ``temperature`` (the same distribution as softmax(logits / T)).

Shifted families (Dream, Open-dCoder) read position p's prediction from the logits at p - 1.

Approximate cache (``refresh_every = r > 0``; Fast-dLLM dual cache, Wu et al. 2025): on a refresh step (every r
steps, and at each block start) the exact full forward runs and the keys/values of every position outside the
canvas window are kept; the steps in between recompute only the window (the canvas, plus the position before it
when logits are shifted) against those stale keys/values. ``cache_drift`` measures what that costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.adapters.model import ContextKV, DiffusionLM
from engine.sample import SampleOptions, row_temperatures, sample_categorical

ORDERS = ("maskgit_plus", "topk_margin", "entropy", "low_confidence", "random")
SCHEDULES = ("dream", "llada")


@dataclass(frozen=True)
class AdapterSampling:
    """Reference-sampler settings that SampleOptions (steps, threshold, temperature, seed) does not cover."""

    order: str = "entropy"  # Dream's alg / LLaDA's remasking: how masked positions are ranked
    schedule: str = "dream"  # how many positions a step commits
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


# Model-card defaults: DiffuCoder / Dream-Coder use alg="entropy", top_p=0.95; LLaDA's generate.py uses
# low_confidence remasking with block_length=32.
DREAM_SAMPLING = AdapterSampling(order="entropy", schedule="dream", top_p=0.95)
LLADA_SAMPLING = AdapterSampling(order="low_confidence", schedule="llada", block_length=32)


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
        positions = range(self.canvas_start, self.canvas_start + self.canvas_len)
        return [max(p - 1, 0) - ws if self.shift else p - ws for p in positions]


def full_pass(model: DiffusionLM, seq: Tensor, layout: Layout, keep: bool) -> tuple[Tensor, ContextKV | None]:
    """Exact canvas logits (N, L, V) from a forward over the whole sequence; optionally the context keys/values."""
    ws, we = layout.window
    hidden, ctx = model.encode(seq, keep=(ws, we) if keep else None)
    rows = torch.tensor(layout.logit_rows(), device=seq.device) + ws
    return model.head(hidden[:, rows]), ctx


def window_pass(model: DiffusionLM, seq: Tensor, layout: Layout, ctx: ContextKV) -> Tensor:
    """Approximate canvas logits: recompute the window only, against cached context keys/values."""
    ws, we = layout.window
    hidden, _ = model.encode(seq[:, ws:we], start=ws, context=ctx)
    rows = torch.tensor(layout.logit_rows(), device=seq.device)
    return model.head(hidden[:, rows])


def filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Dream's top-k then top-p (nucleus; the first token above the mass is kept) filters, -inf elsewhere."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum > top_p
        drop[..., 1:] = drop[..., :-1].clone()
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    return logits


def predict(
    logits: Tensor, temps: Tensor, sampling: AdapterSampling, banned: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Tokens (N, L), their probability (N, L) and the ordering score (N, L; higher = commit first)."""
    logits = logits.float().index_fill(-1, banned, -math.inf)
    greedy = temps == 0  # (N, 1, 1)
    scaled = filter_logits(logits / torch.where(greedy, 1.0, temps), sampling.top_k, sampling.top_p)
    probs = scaled.softmax(dim=-1)  # (N, L, V)
    tokens = torch.where(greedy.squeeze(-1), probs.argmax(dim=-1), sample_categorical(probs, generator))
    prob = probs.gather(-1, tokens[..., None]).squeeze(-1)
    if sampling.order == "maskgit_plus":
        score = prob
    elif sampling.order == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        score = top2[..., 0] - top2[..., 1]
    elif sampling.order == "entropy":
        score = (probs * (probs + 1e-10).log()).sum(dim=-1)
    elif sampling.order == "low_confidence":
        score = logits.softmax(dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
    else:  # random
        score = torch.rand(prob.shape, generator=generator, device=prob.device)
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


def blocks(canvas_len: int, block_length: int | None, steps: int) -> list[tuple[int, int, int]]:
    """(start, end, steps) per semi-autoregressive block; the step budget is split evenly (at least one each)."""
    size = block_length or canvas_len
    bounds = [(s, min(s + size, canvas_len)) for s in range(0, canvas_len, size)]
    return [(s, e, max(1, steps // len(bounds))) for s, e in bounds]


@torch.inference_mode()
def denoise(
    model: DiffusionLM,
    layout: Layout,
    num_candidates: int,
    options: SampleOptions,
    sampling: AdapterSampling,
    *,
    banned: Tensor,
) -> tuple[Tensor, Tensor]:
    """Fill the canvas of `layout` for num_candidates rows (row 0 greedy): tokens and commit log-probs (N, L)."""
    device = model.embed.weight.device
    generator = torch.Generator(device=device).manual_seed(options.seed)
    seq = torch.tensor(layout.tokens, device=device).repeat(num_candidates, 1)  # (N, T)
    c0, L = layout.canvas_start, layout.canvas_len
    canvas = seq[:, c0 : c0 + L]  # a view: commits write into seq
    masked = torch.ones(canvas.shape, dtype=torch.bool, device=device)
    logp = torch.zeros(canvas.shape, device=device)
    temps = row_temperatures(num_candidates, options.temperature, device)
    approximate, ctx, step = sampling.refresh_every > 0, None, 0
    for b0, b1, block_steps in blocks(L, sampling.block_length, options.steps):
        allowed = torch.zeros(L, dtype=torch.bool, device=device)
        allowed[b0:b1] = True
        for j in range(block_steps):
            if not approximate or j == 0 or step % sampling.refresh_every == 0:
                logits, ctx = full_pass(model, seq, layout, keep=approximate)
            else:
                logits = window_pass(model, seq, layout, ctx)
            predicted = predict(logits, temps, sampling, banned, generator)
            remaining = (masked & allowed).sum(dim=-1, keepdim=True)
            commit(canvas, masked, logp, predicted, commit_count(remaining, j, block_steps, sampling),
                   options.threshold, allowed)  # fmt: skip
            step += 1
            if options.early_exit and not (masked & allowed).any():  # the one host sync per step
                break
    return canvas.clone(), logp


@dataclass(frozen=True)
class DriftStep:
    step: int
    refreshed: bool  # the approximate path ran the exact full forward this step
    max_abs_diff: float  # max |approximate - exact| canvas logit
    argmax_agreement: float  # fraction of canvas positions whose argmax token agrees


@torch.inference_mode()
def cache_drift(
    model: DiffusionLM, layout: Layout, options: SampleOptions, sampling: AdapterSampling, *, banned: Tensor
) -> list[DriftStep]:
    """Follow the exact (greedy, one row) trajectory and, at each step, compare the approximate cache's logits
    (refreshed every sampling.refresh_every steps) with the exact full forward's."""
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
        out.append(DriftStep(step, refreshed, (approx - exact).abs().max().item(), agree))
        predicted = predict(exact, temps, sampling, banned, generator)
        remaining = masked.sum(dim=-1, keepdim=True)
        commit(canvas, masked, logp, predicted, commit_count(remaining, step, options.steps, sampling),
               options.threshold, allowed)  # fmt: skip
    return out
