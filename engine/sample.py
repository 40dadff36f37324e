"""Samplers: parallel confidence-based unmasking for the diffusion model, left-to-right decoding for the AR twin.

Diffusion (MaskGIT-style confidence decoding as used by LLaDA/Dream, on an MDLM-trained model): the canvas
starts fully masked; each step predicts every masked position, then commits every masked position whose
confidence passes ``threshold`` -- and at least ``ceil(remaining / steps_left)`` of them, so the canvas is always
complete after ``steps`` steps; those forced commits go to confidence peaks first (``confidence_peaks``).
Committed tokens are never resampled. ``<eos>`` may only be committed where every later position is (predicted)
``<eos>``, so the tail grows from the right, and committing it at position i fills everything after i with
``<eos>`` (the middle has ended there). Every candidate ends its middle where ``<eos>`` is the likeliest token
(`predict`). N candidates run as one batch.

All functions are pure tensor code with an explicit seeded generator and fixed shapes, and never sync with the
host. The per-request state that calls them between steps is ``engine.runner.DiffusionState`` (and
``AutoregressiveState`` for the AR twin); ``SampleOptions`` lives in ``engine.contract``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Prediction",
    "candidate_scores",
    "confidence_peaks",
    "denoise_step",
    "end_at_line_limit",
    "line_breaks",
    "predict",
    "row_temperatures",
    "sample_categorical",
    "strip_eos",
]


def row_temperatures(n: int, temperature: float, device: torch.device | str) -> Tensor:
    """(n, 1, 1): the first row greedy (0), the others at `temperature`."""
    temps = torch.full((n, 1, 1), temperature, device=device)
    temps[0] = 0.0
    return temps


def sample_categorical(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Draw one index per row from probs (..., V) without a host sync (exponential race == Gumbel-max)."""
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)


class Prediction(NamedTuple):
    """One step's choice per position, (B, L) each: `tokens`/`conf` the choice and its probability; `content`/
    `content_conf` the best token other than <eos>, for positions where <eos> may not go (see `denoise_step`)."""

    tokens: Tensor
    conf: Tensor
    content: Tensor
    content_conf: Tensor


def predict(
    logits: Tensor, temps: Tensor, banned: Tensor, generator: torch.Generator | None, eos_id: int, top_k: int
) -> Prediction:
    """Tokens and their probabilities for every position. logits (B, L, V); temps (B, 1, 1).

    Sampled rows draw from the tempered distribution restricted to its `top_k` most likely tokens (the model's
    ``ModelConfig.top_k``) and report the drawn token's tempered probability; greedy rows (temp 0) take the most
    likely token. Every row also ends its middle (<eos>) wherever <eos> is the single most likely token, so a
    sampled row does not fill the end of the canvas, where the model says "the middle is over" more than anything
    else, with content it drew at random.
    (``denoise_step`` lets <eos> go only where every later position is <eos> too, so an uncertain <eos> early in
    the canvas cannot cut a middle short.) On the first 200 HumanEval-Infilling single-line problems, first-line
    edit similarity 0.123 with the earlier rule (greedy rows end where p(<eos>) >= 0.5, sampled rows only where
    they draw <eos>), 0.159 with this one; docs/speed.md, round 4.

    Cost: the draw races exponentials over the top-k candidates only. Racing the whole vocabulary (B x L x V
    random numbers a step) took 37% of a single-line completion's time on CPU (profiled); cutting the tail of a
    12k vocabulary also keeps sampled candidates off implausible tokens (top-k sampling, Fan et al. 2018).
    """
    logits = logits.float().index_fill(-1, banned, -math.inf)
    greedy = temps == 0
    scaled = logits / torch.where(greedy, 1.0, temps)  # (B, L, V)
    log_norm = scaled.logsumexp(dim=-1, keepdim=True)  # (B, L, 1)
    top, index = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1)  # (B, L, K), most likely first
    probs = (top - log_norm).exp()  # tempered probabilities of the top-k tokens
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    score = torch.where(greedy, probs, probs / race)  # argmax of probs / race is a draw (Gumbel-max)
    is_eos = index == eos_id
    drawn = score.argmax(dim=-1, keepdim=True)  # (B, L, 1)
    best = score.masked_fill(is_eos, -1.0).argmax(dim=-1, keepdim=True)  # best content token
    p_eos = (scaled[..., eos_id : eos_id + 1] - log_norm).exp().squeeze(-1)  # (B, L)
    likeliest_content = probs.masked_fill(is_eos, 0.0).amax(dim=-1)  # (B, L)
    ends = is_eos.gather(-1, drawn).squeeze(-1) | (p_eos >= likeliest_content)
    content, content_conf = index.gather(-1, best).squeeze(-1), probs.gather(-1, best).squeeze(-1)
    tokens = torch.where(ends, eos_id, content)
    conf = torch.where(ends, p_eos, content_conf)
    return Prediction(tokens, conf, content, content_conf)


def denoise_step(
    canvas: Tensor,
    masked: Tensor,
    logp: Tensor,
    pred: Prediction,
    steps_left: int,
    threshold: float,
    eos_id: int,
) -> None:
    """Commit positions of one step, in place. canvas (B, L) long; masked (B, L) bool; logp (B, L).

    A canvas is middle tokens then <eos> to the end, so <eos> may only go where every later position is (or is
    predicted to be) <eos>: the tail grows from the right. Elsewhere the position takes its best content token.
    Without this, a low-confidence <eos> predicted early in the canvas ends the middle before tokens the model
    is sure of.
    """
    B, L = canvas.shape
    predicts_eos = pred.tokens == eos_id
    eosish = torch.where(masked, predicts_eos, canvas == eos_id)
    all_eos_from = eosish.flip(-1).long().cumprod(dim=-1).flip(-1).bool()  # every position i.. is <eos>-ish
    may_end = torch.cat([all_eos_from[:, 1:], torch.ones_like(all_eos_from[:, :1])], dim=-1)
    no_eos = predicts_eos & ~may_end
    tokens = torch.where(no_eos, pred.content, pred.tokens)
    conf = torch.where(no_eos, pred.content_conf, pred.conf)

    conf = torch.where(masked, conf, -1.0)
    remaining = masked.sum(dim=-1, keepdim=True)  # (B, 1)
    k_min = (remaining + steps_left - 1) // steps_left  # ceil; 0 for finished rows
    rank = (conf + 2.0 * confidence_peaks(conf)).argsort(dim=-1, descending=True).argsort(dim=-1)  # 0 = first
    commit = masked & ((conf >= threshold) | (rank < k_min))
    canvas.copy_(torch.where(commit, tokens, canvas))
    logp.copy_(torch.where(commit, conf.clamp_min(1e-12).log(), logp))
    masked &= ~commit
    # <eos> tail: after the first committed <eos>, the middle is over.
    is_eos = (canvas == eos_id) & ~masked
    first = torch.where(is_eos.any(dim=-1), is_eos.float().argmax(dim=-1), L)  # (B,)
    tail = torch.arange(L, device=canvas.device)[None] > first[:, None]
    canvas.masked_fill_(tail, eos_id)
    logp.masked_fill_(tail, 0.0)
    masked &= ~tail


def confidence_peaks(conf: Tensor) -> Tensor:
    """(B, L) bool: positions more confident than both neighbours (committed ones count as -1, so a masked position
    beside committed text qualifies). The step budget's forced commits take these first, most confident first.

    Two neighbouring positions committed in one step are each chosen without knowing the other: where the model is
    unsure of the offset, both take the same token (``0 0 0``, ``': ':``). Spreading the forced commits over peaks
    lets every committed token sit next to text decided in an earlier step. On the first 200 HumanEval single-line
    problems (8 steps, 32-token canvas) first-line edit similarity went 0.040 -> 0.089, about what 32 steps (one
    token a step) give (0.095); docs/speed.md.
    """
    edge = conf.new_full(conf[:, :1].shape, -1.0)
    left = torch.cat([edge, conf[:, :-1]], dim=-1)
    right = torch.cat([conf[:, 1:], edge], dim=-1)
    return (conf > left) & (conf >= right)


def line_breaks(decode: Callable[[list[int]], str], vocab_size: int, device: torch.device | str) -> Tensor:
    """(V,) the number of line breaks in each token's text (a BPE token may hold one, e.g. ``):\n``)."""
    return torch.tensor([decode([i]).count("\n") for i in range(vocab_size)], dtype=torch.long, device=device)


def end_at_line_limit(
    canvas: Tensor, masked: Tensor, logp: Tensor, breaks: Tensor, max_lines: int, end_id: int
) -> None:
    """End each row after the committed position where its text reaches `max_lines` line breaks, in place.

    Positions still masked before that one can only add line breaks, so the limit is reached there or earlier:
    whatever follows is never shown. Those positions become <eos> (committed), so they need no more steps, and
    a row whose text is over is done.
    """
    counts = torch.where(masked, 0, breaks[canvas.clamp(max=len(breaks) - 1)])
    reached = counts.cumsum(dim=-1) >= max_lines
    after = torch.cat([torch.zeros_like(reached[:, :1]), reached[:, :-1]], dim=-1)
    canvas.masked_fill_(after, end_id)
    logp.masked_fill_(after, 0.0)
    masked &= ~after


def candidate_scores(tokens: Tensor, logp: Tensor, eos_id: int) -> Tensor:
    """Mean log-probability of each candidate's tokens up to and including its first <eos>. (N,)"""
    N, L = tokens.shape
    is_eos = tokens == eos_id
    first = torch.where(is_eos.any(dim=-1), is_eos.float().argmax(dim=-1), L - 1)
    keep = torch.arange(L, device=tokens.device)[None] <= first[:, None]
    return (logp * keep).sum(dim=-1) / keep.sum(dim=-1)


def strip_eos(row: list[int], eos_id: int) -> list[int]:
    """The middle's tokens: everything before the first <eos>."""
    return row[: row.index(eos_id)] if eos_id in row else row
