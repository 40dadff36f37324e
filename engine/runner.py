"""One request path: a family's runner turns a request into a denoising state, and steps states from logits.

Every model family plugs into the engine through a ``Runner`` (vLLM's engine core has the same split: a
scheduler that owns queues, a runner that runs steps, one state object per request):

* ``prepare(request) -> Prompt``: tokenize and lay out the prompt (CPU only, no model; the server runs it off its
  event loop). An engine only trims the context to its model's limit here, as a safety net: ``fim`` decides the
  window around the cursor. A too-long canvas is clamped with ``engine.contract.fit_canvas``.
* ``start(prompt, ctx) -> (state, computed)``: prefill the context (reusing the session's ``ContextCache`` where
  the family has an exact one) and set up the request's ``DenoiseState``.
* ``forward(states) -> logits``: ONE model step for every state given, packed into one batch where the family can
  (the server's continuous batching); ``LocalEngine`` calls it with a single state.
* ``split(state, rows) -> parts``: the state's next step as parts of at most `rows` candidate rows each
  (``row_slices``), which ``forward`` takes in place of states, in any rounds; the parts' logits, concatenated
  along the first dimension, are the step's. The server's scheduler runs a big request's step this way between
  small ones'. Diffill's diffusion model slices (``DiffillModel.denoise``'s `rows`: each part's logits equal those
  rows of the whole step's); the AR twin (one position per candidate a step) and the released coders run a step
  whole (``[state]``).
* ``state.step(logits)``: the family's commit rule; ``state.advance(state.open_flag())``: whether it is done;
  ``completions(state)``: the decoded candidates.

``LocalEngine`` (``engine.api``) drives one state until it is finished; the batch scheduler
(``engine.serve.scheduler``) drives many, and adds only queueing and cancellation. This module holds the contract
and Diffill's own runner (the diffusion model and its autoregressive twin); ``engine.adapters.runner`` holds the
released diffusion coders'.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

import torch
from torch import Tensor

from engine.cache import ContextCache, KVCache
from engine.contract import Completion, CompletionRequest, SampleOptions, fit_canvas, with_temperature
from engine.layout import N_CONTEXT_TAGS, context_tokens, encode_chunks
from engine.model import DiffillModel
from engine.sample import (
    Prediction,
    candidate_scores,
    denoise_step,
    end_at_line_limit,
    line_breaks,
    predict,
    row_temperatures,
    strip_eos,
)
from engine.tokenizer import CodeTokenizer


@dataclass(frozen=True)
class Prompt:
    """A prepared request: the model's prompt tokens and the canvas it will fill."""

    request: CompletionRequest
    tokens: list[int]  # the context (Diffill) or the whole prompt with the canvas masks in place (adapters)
    canvas_length: int  # after clamping to the model's maximum
    requested_tokens: int  # prompt tokens before trimming to the model's context (the server's size limit)
    layout: Any = None  # family-specific layout (adapters: where the canvas sits, logit shift)


class DenoiseState(Protocol):
    """One request between steps."""

    options: SampleOptions
    steps_done: int

    def step(self, logits: Tensor) -> None:
        """Commit what this step decides, from the logits ``Runner.forward`` produced for this state."""
        ...

    def open_flag(self) -> Tensor:
        """0-d int tensor, 0 when nothing is left to do (no host sync; the driver syncs many flags at once)."""
        ...

    def advance(self, flag: int) -> bool:
        """Given ``open_flag``'s value after a step: True when the request is finished. A state may change shape
        here (grow its canvas, branch its candidates) before the next step."""
        ...


class StepBudget:
    """``advance`` of a state that is done when its step budget is spent or nothing is left open."""

    options: SampleOptions

    @property
    def exhausted(self) -> bool:
        raise NotImplementedError

    def advance(self, flag: int) -> bool:
        return self.exhausted or (self.options.early_exit and not flag)


def run_to_end(state: DenoiseState, forward: Callable[[list[Any]], list[Tensor]]) -> None:
    """Drive one state with single-request steps until it is finished (``LocalEngine``'s loop)."""
    while True:
        state.step(forward([state])[0])
        if state.advance(int(state.open_flag())):  # the one host sync per step
            return


class Runner(Protocol):
    name: str
    max_context: int
    max_canvas: int
    session_cache: bool  # the family keeps an exact context cache per session (ContextCache in a SessionStore)

    def count_tokens(self, text: str) -> int: ...

    def new_cache(self) -> ContextCache: ...

    def prepare(self, request: CompletionRequest) -> Prompt: ...

    def start(self, prompt: Prompt, ctx: ContextCache | None) -> tuple[DenoiseState, int]: ...

    def forward(self, states: list[Any]) -> list[Tensor]: ...

    def split(self, state: Any, rows: int) -> list[Any]: ...

    def completions(self, state: Any) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]: ...


def row_slices(n: int, rows: int) -> list[tuple[int, int]]:
    """[start, stop) of n rows in as few parts of at most `rows` (>= 1) as will do, as even as can be: no part much
    smaller than the others (a tiny part is a tiny matmul, where CPU BLAS rounds differently)."""
    parts = -(-n // max(rows, 1))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(pairwise(bounds))


class TokenizedRunner:
    """What every runner derives from its model and tokenizer the same way."""

    model: torch.nn.Module
    tokenizer: Any  # encode(text) -> list[int]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def split(self, state: Any, rows: int) -> list[Any]:
        """The state's next step in parts (module docstring); by default whole."""
        return [state]

    @functools.cached_property
    def line_breaks(self) -> Tensor:
        """(V,) line breaks in each token's text, for ``SampleOptions.max_lines`` (built on first use)."""
        return line_breaks(self.tokenizer.decode, self.tokenizer.vocab_size, self.device)


# ---------------------------------------------------------------- Diffill's own model


_UNUSED = (0, 0.0, 0, 0.0)  # Prediction fields at committed positions (tokens, conf, content, content_conf)


class DiffusionState:
    """The loop variables of confidence-threshold unmasking (``engine.sample``) for one request.

    Work is spent only where it can change the answer (measured in docs/speed.md): the canvas starts at
    ``options.initial_canvas`` positions and grows by as many, up to the request's canvas, only while the greedy
    row's last position is not <eos> (its middle did not end inside the canvas); each segment gets its share of
    ``options.steps`` (the full canvas's tokens per step: 16 of 32 positions get 4 of 8 steps), so a middle that
    ends early costs less and one that does not costs what the full canvas would; only masked positions get logits
    (``step_select``), and with ``options.canvas_cache`` only the positions a step can change run through the model
    (``step_queries``); the first step, where every row's canvas is fully masked, runs one row (``shared``). With
    ``options.branch_after = k`` the trunk (the greedy candidate, and ``options.trunk`` - 1 sampled ones) runs alone
    for k steps, then the other candidates branch off it: the (k+1)-th step's draws come from the trunk's logits
    (``_fan_out``), and the candidates sample their own continuations. With ``options.max_lines`` a row is over
    once its committed text holds that many line breaks (``engine.sample.end_at_line_limit``): the positions after
    it need no steps.
    """

    part: tuple[int, int] | None = None  # a forward covers the whole canvas (``CanvasRows``: rows of it)

    def __init__(
        self,
        prompt: Prompt,
        cache: KVCache,
        *,
        mask_id: int,
        eos_id: int,
        banned: Tensor,
        breaks: Tensor | None,
        top_k: int,
        shifted: bool = False,
    ) -> None:
        req, device = prompt.request, cache.k.device
        opts = req.options
        self.options, self.cache, self.mask_id, self.eos_id, self.banned = opts, cache, mask_id, eos_id, banned
        self.shifted = shifted  # the model reads position i's logits from position i - 1 (its shift_logits)
        self.top_k = top_k
        self.breaks = breaks if opts.max_lines else None
        self.generator = torch.Generator(device=device).manual_seed(opts.seed)
        self.candidates, self.target = req.num_candidates, prompt.canvas_length
        self.grow_by = min(opts.initial_canvas or self.target, self.target)
        self.segment_budget = max(1, math.ceil(opts.steps * self.grow_by / self.target))  # steps per segment
        self.steps_done = 0
        rows = self.rows_for_step()
        self.canvas = torch.full((rows, self.grow_by), mask_id, dtype=torch.long, device=device)  # (rows, L)
        self.masked = torch.ones_like(self.canvas, dtype=torch.bool)
        self.logp = torch.zeros(self.canvas.shape, device=device)
        self.temps = row_temperatures(rows, opts.temperature, device)
        self.segment_steps = 0  # steps since the canvas last grew
        self.step_select: Tensor | None = None
        self.step_queries: Tensor | None = None
        # Canvas cache (``SampleOptions.canvas_cache``): positions masked when the last step began, whose scratch
        # keys/values were computed from a mask; None when the scratch does not hold this canvas's layout (before
        # the first step over every row, after the canvas grew or branched).
        self.was_masked: Tensor | None = None

    @property
    def shared(self) -> bool:
        """Every row's canvas is the same (the first step's: fully masked), so one row's forward gives every row's
        logits (``DiffillRunner.forward``)."""
        return self.steps_done == 0

    def plan(self) -> None:
        """What the next step's forward computes, set once per step (the forward asks; ``split`` for its parts):
        ``step_select``, the positions still masked (flat row-major indices), the only ones whose logits the step
        needs (None = every position: a fresh canvas or growth, and the step where the rows fan out); with the
        canvas cache, ``step_queries``, the positions that run through the model (None = all)."""
        self.step_select = self.step_queries = None
        if self.segment_steps > 0 and self.rows_for_step() <= self.canvas.shape[0]:
            self.step_select = self.masked.reshape(-1).nonzero().squeeze(1)  # one host sync (the result's length)
        if self.was_masked is not None:
            # Still masked or committed in the last step (their keys/values came from a mask), and for a
            # shifted-logits model the position before each masked one (it reads position i's logits there).
            run = self.was_masked.clone()
            if self.shifted:
                run[:, :-1] |= self.masked[:, 1:]
            if not run.all():
                self.step_queries = run.reshape(-1).nonzero().squeeze(1)

    def step(self, logits: Tensor) -> None:
        """One step from the forward's logits: (rows, L, V) for every position, or (P, V) for ``step_select``'s."""
        opts, select = self.options, self.step_select
        self.step_select = self.step_queries = None
        if opts.canvas_cache:  # the scratch holds every row's canvas after any step but the shared first one
            self.was_masked = None if self.shared else self.masked.clone()
        if select is None:
            logits = self._fan_out(logits)
            pred = predict(logits, self.temps, self.banned, self.generator, self.eos_id, self.top_k)
        else:  # committed positions get no prediction: denoise_step skips them
            temps = self.temps[select // self.canvas.shape[1]]  # (P, 1, 1): each position's row's
            part = predict(logits[:, None], temps, self.banned, self.generator, self.eos_id, self.top_k)
            pred = Prediction(*(self._spread(p[:, 0], select, fill) for p, fill in zip(part, _UNUSED, strict=True)))
        left = max(self.segment_budget - self.segment_steps, 1)
        denoise_step(self.canvas, self.masked, self.logp, pred, left, opts.threshold, self.eos_id)
        if self.breaks is not None:
            end_at_line_limit(self.canvas, self.masked, self.logp, self.breaks, opts.max_lines, self.eos_id)
        self.steps_done += 1
        self.segment_steps += 1

    def split(self, rows: int) -> list[DiffusionState | CanvasRows]:
        """The next step's forward in parts of at most `rows` canvas rows (``row_slices``); [self] when it fits.
        The step is planned once, here, for every part."""
        n = self.canvas.shape[0]
        if n <= rows:
            return [self]
        self.plan()
        return [CanvasRows(self, start, stop) for start, stop in row_slices(n, rows)]

    def _spread(self, part: Tensor, select: Tensor, fill: float) -> Tensor:
        full = part.new_full((self.canvas.numel(),), fill)
        full[select] = part
        return full.view(self.canvas.shape)

    def open_flag(self) -> Tensor:
        """Bit 0: positions still masked; bit 1: the canvas may have to grow (the greedy row's last position is
        not <eos>: the model's best guess did not end inside the canvas; sampled rows that did not end are cut)."""
        flag = self.masked.any().long()
        if self.canvas.shape[1] < self.target:
            flag = flag | 2 * (self.canvas[0, -1] != self.eos_id).long()
        return flag

    def advance(self, flag: int) -> bool:
        opts = self.options
        if not (self.segment_steps >= self.segment_budget or (opts.early_exit and not flag & 1)):
            return False
        if flag & 2:
            self._grow()
            return False
        if self.canvas.shape[0] < self.candidates:  # finished before branching: the rows it has, repeated
            self._fan_out(None, self.candidates)
        return True

    def _grow(self) -> None:
        n, length = self.canvas.shape
        more = min(self.grow_by, self.target - length)
        self.canvas = torch.cat([self.canvas, self.canvas.new_full((n, more), self.mask_id)], dim=1)
        self.masked = torch.cat([self.masked, self.masked.new_ones((n, more))], dim=1)
        self.logp = torch.cat([self.logp, self.logp.new_zeros((n, more))], dim=1)
        self.segment_steps = 0
        self.was_masked = None  # the scratch's layout was the shorter canvas's

    def rows_for_step(self) -> int:
        """Rows whose draws differ in the next step: the trunk (``SampleOptions.trunk``: the greedy row and
        trunk - 1 sampled ones) until ``branch_after`` steps are done, then every candidate."""
        opts = self.options
        return self.candidates if self.steps_done >= opts.branch_after else min(opts.trunk, self.candidates)

    def _fan_out(self, logits: Tensor | None, rows: int | None = None) -> Tensor | None:
        """Grow to `rows` (default ``rows_for_step``) rows before a step's draws, each a copy of one of today's
        rows (as even a share of copies as can be; row 0 stays row 0, the greedy one), with the logits that row's
        forward gave: copies of a canvas would get the same logits from a forward of their own, so the branching
        step's draws come from the trunk's forward, and the copies first differ in what they draw."""
        have, want = self.canvas.shape[0], rows or self.rows_for_step()
        if want <= have:
            return logits
        source = torch.arange(want, device=self.canvas.device) * have // want
        self.canvas, self.masked, self.logp = (t.index_select(0, source) for t in (self.canvas, self.masked, self.logp))
        self.temps = row_temperatures(want, self.options.temperature, self.canvas.device)
        self.was_masked = None  # the new rows have no scratch of their own yet
        return None if logits is None else logits.index_select(0, source)

    def tokens(self) -> tuple[Tensor, Tensor]:
        """Canvas tokens and commit log-probabilities (N, L), padded with <eos> to the request's canvas."""
        n, length = self.canvas.shape
        pad = self.target - length
        if pad == 0:
            return self.canvas, self.logp
        return (
            torch.cat([self.canvas, self.canvas.new_full((n, pad), self.eos_id)], dim=1),
            torch.cat([self.logp, self.logp.new_zeros((n, pad))], dim=1),
        )


class CanvasRows:
    """Rows start..stop of a diffusion state's canvas: one part of its next step (``DiffusionState.split``), what
    ``DiffillRunner.forward`` takes in place of the state."""

    def __init__(self, state: DiffusionState, start: int, stop: int) -> None:
        self.canvas, self.cache = state.canvas[start:stop], state.cache
        self.part, self.shared = (start, state.canvas.shape[0]), state.shared
        L = state.canvas.shape[1]
        self.step_select, self.step_queries = (
            None if flat is None else flat[(flat >= start * L) & (flat < stop * L)] - start * L  # this part's rows
            for flat in (state.step_select, state.step_queries)
        )

    def plan(self) -> None:
        """Planned by the state (``DiffusionState.split``)."""


class AutoregressiveState(StepBudget):
    """Left-to-right decoding for the AR twin: one position per step for all candidates at once.

    The context cache (batch 1) is copied per candidate, so the session's cache stays reusable. Step i reads the
    logits of position i: the prefill's last logits for i = 0, else ``extend`` with the token chosen at i - 1.
    A row is done at <eos>, or with ``options.max_lines`` at the token that brings its text to that many line breaks.
    """

    def __init__(
        self,
        prompt: Prompt,
        cache: KVCache,
        last_logits: Tensor,
        *,
        eos_id: int,
        banned: Tensor,
        breaks: Tensor | None,
        top_k: int,
    ) -> None:
        req, device = prompt.request, cache.k.device
        n, length = req.num_candidates, prompt.canvas_length
        self.options, self.eos_id, self.banned, self.length, self.top_k = req.options, eos_id, banned, length, top_k
        self.generator = torch.Generator(device=device).manual_seed(req.options.seed)
        self.rows = cache.repeat(n, capacity=cache.length + length)
        self.temps = row_temperatures(n, req.options.temperature, device)
        self.out = torch.full((n, length), eos_id, dtype=torch.long, device=device)
        self.logp = torch.zeros(self.out.shape, device=device)
        self.done = torch.zeros(n, dtype=torch.bool, device=device)
        self.breaks = breaks if req.options.max_lines else None
        self.lines = torch.zeros(n, dtype=torch.long, device=device)
        self.first_logits = last_logits.expand(n, -1)  # (N, V)
        self.steps_done = 0

    def next_logits(self, model: DiffillModel) -> Tensor:
        i = self.steps_done
        return self.first_logits if i == 0 else model.extend(self.out[:, i - 1 : i], self.rows)

    def step(self, logits: Tensor) -> None:
        i = self.steps_done
        pred = predict(logits[:, None], self.temps, self.banned, self.generator, self.eos_id, self.top_k)  # (N, 1)
        token, prob = pred.tokens[:, 0], pred.conf[:, 0]
        self.out[:, i] = torch.where(self.done, self.eos_id, token)
        self.logp[:, i] = torch.where(self.done, 0.0, prob.clamp_min(1e-12).log())
        self.done |= token == self.eos_id
        if self.breaks is not None:
            self.lines += self.breaks[token]
            self.done |= self.lines >= self.options.max_lines
        self.steps_done += 1

    def open_flag(self) -> Tensor:
        return (~self.done.all()).long()

    @property
    def exhausted(self) -> bool:
        return self.steps_done >= self.length

    def tokens(self) -> tuple[Tensor, Tensor]:
        return self.out, self.logp


class DiffillRunner(TokenizedRunner):
    """Diffill's transformer: an exact context cache per session, canvas steps against it (``engine.model``)."""

    session_cache = True

    def __init__(self, model: DiffillModel, tokenizer: CodeTokenizer, name: str = "local") -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        cfg = model.config
        self.max_context, self.max_canvas = cfg.max_context, cfg.max_canvas
        self.autoregressive = cfg.causal_canvas
        tok = tokenizer
        self._banned = torch.tensor(sorted(tok.special_ids - {tok.eos_id}), dtype=torch.long, device=self.device)

    def new_cache(self) -> ContextCache:
        return ContextCache(self.model.new_cache())

    def prepare(self, request: CompletionRequest) -> Prompt:
        tok = self.tokenizer
        request = with_temperature(request, self.model.config.temperature)
        prefix, suffix = tok.encode(request.prefix), tok.encode(request.suffix)
        chunks = encode_chunks(tok.encode, request.chunks, request.language)
        context = context_tokens(tok, prefix, suffix, request.language, self.max_context, chunks)
        return Prompt(
            request=request,
            tokens=context,
            canvas_length=fit_canvas(request.canvas_length, self.max_canvas),
            requested_tokens=len(prefix) + len(suffix) + N_CONTEXT_TAGS,
        )

    def start(self, prompt: Prompt, ctx: ContextCache | None) -> tuple[DiffusionState | AutoregressiveState, int]:
        if ctx is None:
            raise ValueError("Diffill's runner needs a context cache")
        last_logits, computed = ctx.update(self.model, prompt.tokens)
        tok = self.tokenizer
        breaks = self.line_breaks if prompt.request.options.max_lines else None
        common = {"eos_id": tok.eos_id, "banned": self._banned, "breaks": breaks, "top_k": self.model.config.top_k}
        if self.autoregressive:
            return AutoregressiveState(prompt, ctx.cache, last_logits, **common), computed
        shifted = self.model.config.shift_logits
        return DiffusionState(prompt, ctx.cache, mask_id=tok.mask_id, shifted=shifted, **common), computed

    def forward(self, states: list[Any]) -> list[Tensor]:
        if self.autoregressive:  # per-candidate caches of different lengths: one extend per request
            return [state.next_logits(self.model) for state in states]
        # A shared canvas (every row the same) runs one row, a step of its own, and its logits are repeated for the
        # others: what a forward over every row would give them, up to the rounding of a smaller matmul (bf16: a
        # unit in the last place of some logits; docs/speed.md, round 8). LocalEngine and the server run the same.
        for s in states:
            s.plan()
        canvases = [s.canvas[:1] if s.shared else s.canvas for s in states]
        parts = [None if s.shared else s.part for s in states]
        select, queries = [s.step_select for s in states], [s.step_queries for s in states]
        if len(states) == 1:
            logits = [self.model.denoise(canvases[0], states[0].cache, select[0], parts[0], queries[0])]
        else:
            logits = self.model.denoise_packed(canvases, [s.cache for s in states], select, parts, queries)
        return [out.expand(len(s.canvas), -1, -1) if s.shared else out for s, out in zip(states, logits, strict=True)]

    def split(self, state: DiffusionState | AutoregressiveState, rows: int) -> list[Any]:
        return state.split(rows) if isinstance(state, DiffusionState) else [state]

    def completions(self, state: DiffusionState | AutoregressiveState) -> list[Completion]:
        tok = self.tokenizer
        tokens, logp = state.tokens()
        scores = candidate_scores(tokens, logp, tok.eos_id).tolist()
        out = []
        for row, score in zip(tokens.tolist(), scores, strict=True):
            middle = strip_eos(row, tok.eos_id)
            out.append(Completion(text=tok.decode(middle), score=float(score), tokens=len(middle)))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "autoregressive" if self.autoregressive else "diffusion",
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "dtype": str(self.model.embed.weight.dtype).removeprefix("torch."),
            "max_context": self.max_context,
            "max_text_tokens": self.max_context - N_CONTEXT_TAGS,  # prefix + suffix (fim budgets against it)
            "max_canvas": self.max_canvas,
            "temperature": self.model.config.temperature,  # what a request that leaves it to the model gets
            "top_k": self.model.config.top_k,
        }
