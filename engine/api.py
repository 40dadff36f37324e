"""The engine interface the language server and the network server program against, and its in-process form.

``CompletionEngine`` is one protocol with two implementations: ``LocalEngine`` (model in this process, CPU or GPU)
and ``RemoteEngine`` (a ``diffill serve`` box over the network), so switching is configuration only.

``LocalEngine`` keeps one context cache per editor session (an LRU of a few documents): a request re-tokenizes
prefix/suffix, builds the context (``engine.layout``), extends that session's cache by the tokens that changed,
then samples all candidates as one batch against it. Model work is serialised by a lock; callers run it off
their event loop.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from engine.cache import ContextCache
from engine.checkpoint import load_checkpoint
from engine.errors import CheckpointError
from engine.layout import context_tokens
from engine.model import DiffillModel
from engine.sample import SampleOptions, candidate_scores, fill, generate_autoregressive, strip_eos
from engine.tokenizer import CodeTokenizer

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "default"
DEFAULT_AR_MODEL = WEIGHTS_DIR / "default-ar"


MAX_CANDIDATES = 64  # one batch of candidates per request; more is a client error, not a bigger batch


def check_request_sizes(canvas_length: int, num_candidates: int) -> None:
    """The size checks every engine applies before sampling (each then fits the canvas to its own model)."""
    if canvas_length < 1:
        raise ValueError(f"canvas_length must be positive, got {canvas_length}")
    if not 1 <= num_candidates <= MAX_CANDIDATES:
        raise ValueError(f"num_candidates must be in [1, {MAX_CANDIDATES}], got {num_candidates}")


@dataclass(frozen=True)
class Completion:
    text: str
    score: float  # mean log-probability of the candidate's tokens (higher is better)
    tokens: int  # tokens in the middle, <eos> excluded


@dataclass(frozen=True)
class CompletionStats:
    context_tokens: int
    computed_tokens: int  # context tokens run through the model (the rest came from the session cache)
    prefill_ms: float
    sample_ms: float


@runtime_checkable
class CompletionEngine(Protocol):
    @property
    def ready(self) -> bool: ...

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
    ) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class LocalEngine:
    """A model and tokenizer in this process. Thread-safe: one request runs the model at a time."""

    model: DiffillModel
    tokenizer: CodeTokenizer
    name: str = "local"
    max_sessions: int = 8
    threads: int | None = None  # CPU threads for the model's ops (`pin_threads`); None: torch's setting
    last_stats: CompletionStats | None = None
    _sessions: OrderedDict[str, ContextCache] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        banned = sorted(tok.special_ids - {tok.eos_id})
        self._banned = torch.tensor(banned, dtype=torch.long, device=self.device)

    @property
    def ready(self) -> bool:
        return True

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "name": self.name,
            "kind": "autoregressive" if cfg.causal_canvas else "diffusion",
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "dtype": str(self.model.embed.weight.dtype).removeprefix("torch."),
            "max_context": cfg.max_context,
            "max_canvas": cfg.max_canvas,
            **({"cpu_threads": self.threads or torch.get_num_threads()} if self.device.type == "cpu" else {}),
        }

    def _session(self, session_id: str | None) -> ContextCache:
        key = session_id or ""
        ctx = self._sessions.pop(key, None)
        if ctx is None:
            ctx = ContextCache(self.model.new_cache())
        self._sessions[key] = ctx  # most recently used last
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return ctx

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def complete(
        self,
        prefix: str,
        suffix: str,
        *,
        language: str,
        canvas_length: int,
        num_candidates: int,
        options: SampleOptions = SampleOptions(),  # noqa: B008 - frozen dataclass, safe as a default
        session_id: str | None = None,
    ) -> list[Completion]:
        cfg = self.model.config
        check_request_sizes(canvas_length, num_candidates)
        canvas_length = min(canvas_length, cfg.max_canvas)  # longer asks get the longest canvas the model knows
        tok = self.tokenizer
        context = context_tokens(tok, tok.encode(prefix), tok.encode(suffix), language, cfg.max_context)
        with self._lock, torch.inference_mode():
            pin_threads(self.threads)
            t0 = time.perf_counter()
            ctx = self._session(session_id)
            last_logits, computed = ctx.update(self.model, context)
            t1 = time.perf_counter()
            if cfg.causal_canvas:
                tokens, logp = generate_autoregressive(
                    self.model,
                    ctx.cache,
                    last_logits,
                    canvas_length,
                    num_candidates,
                    options,
                    eos_id=tok.eos_id,
                    banned=self._banned,
                )
            else:
                tokens, logp = fill(
                    self.model,
                    ctx.cache,
                    canvas_length,
                    num_candidates,
                    options,
                    mask_id=tok.mask_id,
                    eos_id=tok.eos_id,
                    banned=self._banned,
                )
            scores = candidate_scores(tokens, logp, tok.eos_id).tolist()
            rows = tokens.tolist()
            t2 = time.perf_counter()
        self.last_stats = CompletionStats(len(context), computed, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
        out = []
        for row, score in zip(rows, scores, strict=True):
            middle = strip_eos(row, tok.eos_id)
            out.append(Completion(text=tok.decode(middle), score=float(score), tokens=len(middle)))
        return out


def editor_threads(requested: int | None = None) -> int:
    """CPU threads for a model that shares its machine with an editor: `requested`, else half the cores, 1..4.

    Measured on a 2-core machine with other work running (MODEL_CARD.md): `diffill complete` took 1.4 s warm with
    1 torch thread and 8.8 s with 2 -- OpenMP threads that wait for each other on oversubscribed cores stall. A
    dedicated serving box (`diffill serve`) keeps torch's own choice, all cores.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return requested
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def pin_threads(threads: int | None) -> None:
    """Make the calling thread's CPU ops use `threads` threads (None: leave torch's setting).

    Called by the thread that runs the model, on every request: with OpenMP the count is a per-thread setting
    that a thread keeps once it has run torch code, so setting it once from the loading thread does not reach
    the worker threads an LSP server or a thread pool later runs the model on.
    """
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_engine(
    path: str | Path | None = None, device: str = "auto", *, autoregressive: bool = False, threads: int | None = None
) -> CompletionEngine:
    """Load a checkpoint directory into an engine; None = the embedded default model shipped with Diffill.

    A Diffill checkpoint gives a LocalEngine. A directory whose config.json names another architecture (Dream,
    Dream-Coder, DiffuCoder, Open-dCoder, LLaDA) loads through ``engine.adapters``; an unknown one is a
    CheckpointError naming config.json and the value. `threads`: CPU threads the engine runs the model with
    (`editor_threads` for an editor-side engine); None keeps torch's setting.
    """
    pin_threads(threads)  # loading runs torch ops too
    if path is None:
        path = DEFAULT_AR_MODEL if autoregressive else DEFAULT_MODEL
        if not (path / "config.json").exists():
            raise CheckpointError(f"the embedded default model is missing from {path}; pass a checkpoint with --model")
    elif (Path(path) / "config.json").exists():
        from engine.adapters import is_external, load_adapter_engine  # torch-heavy; only when asked for

        if is_external(path):
            return load_adapter_engine(path, device=device, threads=threads)
    model, tokenizer = load_checkpoint(path, device=device)
    return LocalEngine(model=model, tokenizer=tokenizer, name=Path(path).name, threads=threads)
