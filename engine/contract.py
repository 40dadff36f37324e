"""The engine's contract: one request, its result, and the protocol every completion engine implements.

This module sits at the bottom of ``engine`` and imports neither torch nor any other engine module, so callers
(the language server, ``eval``, ``diffill serve``, ``engine.remote``) can name the types without loading a model.

* ``CompletionRequest``: what to fill (prefix, suffix, language), how big (canvas length, candidates), how to
  sample (``SampleOptions``), which editor session's context cache to reuse, and ``ContextChunk``s: text from other
  files of the project (cross-file context, docs/context.md) that the prompt places before the current file.
* ``Completion`` / ``CompletionStats`` / ``CompletionResult``: what comes back.
* ``CompletionEngine``: the protocol of ``LocalEngine`` (a model in this process, whatever its family) and
  ``RemoteEngine`` (a ``diffill serve`` box). Callers use these methods only, never ``getattr`` past them.
* The size rules every path applies the same way: ``check_request_sizes`` refuses nonsense, ``fit_canvas``
  clamps a canvas longer than the model supports (an upper bound, as OpenAI's ``max_tokens`` is).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

# Weight/activation types a local model can run in. "auto" (engine.checkpoint.default_dtype): bfloat16 on GPUs and
# on CPUs with AMX / AVX512-BF16 (a warm single-line request took 368 instead of 825 CPU-ms, docs/speed.md), else
# float32.
DTYPES = ("auto", "float32", "bfloat16")

# The alternatives' temperature of a model that names none (its checkpoint's `temperature`, the adapters' presets).
DEFAULT_TEMPERATURE = 0.8

MAX_CANDIDATES = 64  # one batch of candidates per request; more is a client error, not a bigger batch
# How a released coder samples (engine.adapters.presets): "fast" for typing (the request's steps, threshold and
# temperature), "reference" = the sampling its release was evaluated with. Diffill's own model has one way.
PRESETS = ("fast", "reference")
DEFAULT_PRESET = "fast"


# Cross-file chunks one request may carry (llama.vscode sends up to 16 by default); more is a client error.
MAX_CHUNKS = 64


def check_temperature(value: float | None) -> None:
    """A temperature (None: left to the model) must be a number >= 0 (NaN is not)."""
    if value is not None and not value >= 0:
        raise ValueError(f"temperature must be >= 0, got {value}")


def check_preset(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return name


@dataclass(frozen=True)
class SampleOptions:
    # Denoising step budget K: a 24-token single-line canvas finishes in 8 steps at 3 tokens/step.
    steps: int = 8
    # Commit every position at least this confident; 0.9 keeps quality near one-token-per-step decoding
    # (Fast-dLLM's parallel-decoding threshold) while committing easy tokens (indentation, brackets) in bulk.
    threshold: float = 0.9
    # Temperature of candidates after the first; 0 = greedy. The first candidate is always greedy so that one
    # candidate is the model's single best guess. None: the model's own (``DEFAULT_TEMPERATURE`` unless its
    # checkpoint says otherwise; the runner fills it in, ``with_temperature``).
    temperature: float | None = None
    seed: int = 0
    early_exit: bool = True
    # Diffusion canvases start this long and grow by as much only while the middle has not ended inside them
    # (the last position is not <eos>); None = the whole canvas from the first step. Each segment gets its share
    # of `steps` (16 of 32 positions: half). Most single-line middles end within 16 tokens (docs/speed.md).
    initial_canvas: int | None = None
    # Steps the trunk runs before the candidates branch off it (0 = all candidates from the first step); at the
    # branching step each trunk row's logits are shared by its share of the candidates, which draw their own
    # tokens from them: a branch costs no forward until the step after it (``engine.runner.DiffusionState``).
    branch_after: int = 0
    # Rows of the trunk: the greedy candidate and trunk - 1 sampled ones.
    trunk: int = 1
    # Stop a candidate once its text holds this many line breaks (0 = no limit): the editor shows one line in
    # single-line mode, so nothing after the first line break is worth a step (fim's ``FimRequest.max_lines``).
    max_lines: int = 0
    # Run only the canvas positions a step can change through the model (those still masked, and those committed
    # in the step before, whose keys/values were computed with a mask as input); every other committed position's
    # keys/values are the ones it got in the step after its commit (a delayed canvas cache, as dKV-Cache's decode
    # variant; an approximation: a bidirectional canvas would update them every step). Diffill's diffusion model
    # only. Quality unchanged within noise on HumanEval-Infilling single-line, 0.58x the positions run at 8 steps
    # (docs/speed.md, round 12).
    canvas_cache: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.initial_canvas is not None and self.initial_canvas < 1:
            raise ValueError(f"initial_canvas must be >= 1, got {self.initial_canvas}")
        if self.branch_after < 0:
            raise ValueError(f"branch_after must be >= 0, got {self.branch_after}")
        if self.trunk < 1:
            raise ValueError(f"trunk must be >= 1, got {self.trunk}")
        if self.max_lines < 0:
            raise ValueError(f"max_lines must be >= 0, got {self.max_lines}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        check_temperature(self.temperature)


@dataclass(frozen=True)
class ContextChunk:
    """Text from another file of the project (a definition, a region the user edited), tagged with its path."""

    path: str  # as the model sees it: relative to the workspace root, "/" separated
    text: str


@dataclass(frozen=True)
class CompletionRequest:
    """One fill-in-the-middle request. `prefix + suffix` is the window fim cut around the cursor; `chunks` come
    least relevant first (the layout places the last nearest the file and drops from the front when over budget,
    as llama.cpp does with ``input_extra``)."""

    prefix: str
    suffix: str
    language: str
    canvas_length: int
    num_candidates: int
    options: SampleOptions = SampleOptions()
    session_id: str | None = None  # the editor document whose context cache to reuse; None = a private one
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    chunks: tuple[ContextChunk, ...] = ()


def with_temperature(request: CompletionRequest, default: float) -> CompletionRequest:
    """`request` with the model's `default` temperature where its options leave it to the model (None)."""
    if request.options.temperature is not None:
        return request
    return replace(request, options=replace(request.options, temperature=default))


@dataclass(frozen=True)
class Completion:
    text: str
    score: float  # mean log-probability of the candidate's tokens (higher is better)
    tokens: int  # tokens in the middle, <eos> excluded


@dataclass(frozen=True)
class CompletionStats:
    context_tokens: int  # tokens of the model's prompt (context, or the whole prompt of a bidirectional model)
    computed_tokens: int  # context tokens run through the model (the rest came from the session cache)
    prefill_ms: float
    sample_ms: float
    steps: int = 0  # denoising steps (or decoded positions) taken
    queue_ms: float = 0.0  # time waiting for the model (the server's queue)
    batch_max: int = 1  # most requests that shared one step with this one

    def then(self, later: CompletionStats) -> CompletionStats:
        """This call and a `later` one made for the same editor request (its follow-ups: ``fim.ask``) as one:
        computed tokens, times and steps add up; the prompt is this call's; the batch, the larger."""
        return CompletionStats(
            context_tokens=self.context_tokens,
            computed_tokens=self.computed_tokens + later.computed_tokens,
            prefill_ms=self.prefill_ms + later.prefill_ms,
            sample_ms=self.sample_ms + later.sample_ms,
            steps=self.steps + later.steps,
            queue_ms=self.queue_ms + later.queue_ms,
            batch_max=max(self.batch_max, later.batch_max),
        )


@dataclass(frozen=True)
class CompletionResult:
    completions: list[Completion]
    stats: CompletionStats


def check_request_sizes(canvas_length: int, num_candidates: int) -> None:
    """The size checks every engine applies before sampling (each then fits the canvas to its model)."""
    if canvas_length < 1:
        raise ValueError(f"canvas_length must be positive, got {canvas_length}")
    if not 1 <= num_candidates <= MAX_CANDIDATES:
        raise ValueError(f"num_candidates must be in [1, {MAX_CANDIDATES}], got {num_candidates}")


def check_chunks(chunks: Sequence[ContextChunk]) -> tuple[ContextChunk, ...]:
    """The chunks as a tuple, or a ValueError for more than ``MAX_CHUNKS`` or an item that is not a chunk."""
    chunks = tuple(chunks)
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"at most {MAX_CHUNKS} context chunks, got {len(chunks)}")
    if not all(isinstance(c, ContextChunk) for c in chunks):
        raise ValueError("chunks must be ContextChunk(path, text) items")
    return chunks


def fit_canvas(canvas_length: int, max_canvas: int) -> int:
    """A longer canvas than the model supports gets the longest it supports (the canvas is an upper bound)."""
    return min(canvas_length, max_canvas)


@runtime_checkable
class CompletionEngine(Protocol):
    """What the language server, ``eval`` and ``diffill serve`` program against."""

    @property
    def ready(self) -> bool:
        """Whether a request would be served now (a remote box answers its health check)."""
        ...

    @property
    def last_stats(self) -> CompletionStats | None:
        """Stats of the last completed request (tokens reused from the cache, timings), None before any."""
        ...

    def complete(
        self,
        prefix: str,
        suffix: str,
        *,
        language: str,
        canvas_length: int,
        num_candidates: int,
        options: SampleOptions = ...,
        session_id: str | None = None,
        chunks: Sequence[ContextChunk] = (),
    ) -> list[Completion]: ...

    def forget(self, session_id: str) -> None:
        """Drop the session's context cache (the editor closed the document)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this engine's prompt (exact where the tokenizer is here, else an estimate)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The model and its limits (``max_context``, ``max_canvas``), for sizing requests and status displays."""
        ...

    def close(self) -> None:
        """Release what the engine holds (pooled connections, worker threads); it is not used afterwards."""
        ...
