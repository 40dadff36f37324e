"""The in-process engine: any model family's runner behind the ``CompletionEngine`` protocol, and its loader.

``CompletionEngine`` (``engine.contract``) has two implementations: ``LocalEngine`` (model in this process, CPU or
GPU, whatever its family) and ``RemoteEngine`` (a ``diffill serve`` box), so switching is configuration only.

``LocalEngine`` drives one request's denoising state with its runner's single step (``engine.runner``) -- the same
state and commit rule the server's batch scheduler drives with the packed step -- and keeps one context cache per
editor session in a byte-budget LRU (``engine.sessions.SessionStore``, the store the server uses too). Model work
is serialised by a lock; callers run it off their event loop.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from engine.checkpoint import auto_dtype, load_checkpoint, resolve_device
from engine.contract import (
    DEFAULT_PRESET,
    DTYPES,
    Completion,
    CompletionRequest,
    CompletionStats,
    ContextChunk,
    SampleOptions,
    check_chunks,
    check_preset,
    check_request_sizes,
)
from engine.errors import CheckpointError
from engine.runner import DiffillRunner, Runner, run_to_end
from engine.sessions import SessionStore
from fim.confidence import CALIBRATION_FILE, Calibration

T = TypeVar("T")
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "default"
DEFAULT_AR_MODEL = WEIGHTS_DIR / "default-ar"
# Context caches an editor-side engine keeps warm: ~24 MB per 2k-token document for the embedded model.
DEFAULT_CACHE_BUDGET = 256 * 2**20


class LocalEngine:
    """A model in this process behind its family's runner. Thread-safe: one request runs the model at a time."""

    def __init__(
        self,
        runner: Runner,
        *,
        threads: int | None = None,
        cache_budget_bytes: int = DEFAULT_CACHE_BUDGET,
        calibration: Calibration | None = None,
    ) -> None:
        self.runner = runner
        self.calibration = calibration  # the checkpoint's show-or-stay-silent fit (confidence.json), if it has one
        self.threads = threads  # CPU threads for the model's ops (`pin_threads`); None: torch's setting
        self.sessions = SessionStore(runner.new_cache, cache_budget_bytes)
        self._last_stats: CompletionStats | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def ready(self) -> bool:
        return True

    @property
    def last_stats(self) -> CompletionStats | None:
        return self._last_stats

    def describe(self) -> dict[str, Any]:
        info = self.runner.describe()
        if info.get("device", "").startswith("cpu"):
            info["cpu_threads"] = self.threads or torch.get_num_threads()
        if self.calibration is not None:
            info["calibration"] = self.calibration.to_json()
        return info

    def count_tokens(self, text: str) -> int:
        return self.runner.count_tokens(text)

    def forget(self, session_id: str) -> None:
        with self._lock:
            self.sessions.forget(session_id)

    def close(self) -> None:
        with self._lock:
            for session_id in self.sessions.idle_sessions:
                self.sessions.forget(session_id)

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
        chunks: Sequence[ContextChunk] = (),
    ) -> list[Completion]:
        check_request_sizes(canvas_length, num_candidates)
        request = CompletionRequest(
            prefix, suffix, language, canvas_length, num_candidates, options, session_id, chunks=check_chunks(chunks)
        )
        prompt = self.runner.prepare(request)
        runner = self.runner
        with self._lock, torch.inference_mode():
            pin_threads(self.threads)
            t0 = time.perf_counter()
            ctx = self.sessions.acquire(session_id) if runner.session_cache else None
            keep = False
            try:
                state, computed = runner.start(prompt, ctx)
                t1 = time.perf_counter()
                run_to_end(state, runner.forward)
                completions = runner.completions(state)
                keep = True
            finally:
                if ctx is not None:
                    self.sessions.release(session_id, ctx, keep=keep)
            t2 = time.perf_counter()
        self._last_stats = CompletionStats(
            context_tokens=len(prompt.tokens),
            computed_tokens=computed,
            prefill_ms=(t1 - t0) * 1e3,
            sample_ms=(t2 - t1) * 1e3,
            steps=state.steps_done,
        )
        return completions


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


def in_passing_thread(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`work(*args, **kwargs)` in a thread that ends with it: its result, or its exception raised here.

    With OpenMP every thread that runs torch code keeps a pool of worker threads, and a model loaded on one thread
    and run on another was measured 15-25% slower per request on a 2-core CPU (docs/speed.md, round 5); loading
    on a thread that then ends leaves no such pool behind for the thread that runs the model.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name="diffill-load")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def load_engine(
    path: str | Path | None = None,
    device: str = "auto",
    *,
    autoregressive: bool = False,
    threads: int | None = None,
    preset: str = DEFAULT_PRESET,
    dtype: str | None = None,
) -> LocalEngine:
    """Load a checkpoint directory into an engine; None = the embedded default model shipped with Diffill.

    A Diffill checkpoint gives a LocalEngine. A directory whose config.json names another architecture (Dream,
    Dream-Coder, DiffuCoder, Open-dCoder, CoDA, Tiny-A2D, LLaDA) loads through ``engine.adapters``; an unknown one is
    a CheckpointError naming config.json and the value. `threads`: CPU threads the engine runs the model with
    (`editor_threads` for an editor-side engine); None keeps torch's setting. `preset`, `dtype`: see
    ``load_runner``.
    """
    pin_threads(threads)  # loading runs torch ops too
    calibration = read_calibration(checkpoint_dir(path, autoregressive=autoregressive))  # fails before the weights
    runner = load_runner(path, device, autoregressive=autoregressive, preset=preset, dtype=dtype)
    return LocalEngine(runner, threads=threads, calibration=calibration)


def checkpoint_dir(path: str | Path | None, *, autoregressive: bool = False) -> Path:
    """The directory a model loads from: `path`, or the embedded default (its AR twin when `autoregressive`)."""
    if path is None:
        return DEFAULT_AR_MODEL if autoregressive else DEFAULT_MODEL
    return Path(path)


def read_calibration(directory: Path) -> Calibration | None:
    """The checkpoint's show-or-stay-silent fit (``confidence.json``), None when it has none; a file that is not a
    valid fit is a CheckpointError naming it."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid confidence calibration: {e}") from None


def load_runner(
    path: str | Path | None = None,
    device: str = "auto",
    *,
    autoregressive: bool = False,
    preset: str = DEFAULT_PRESET,
    dtype: str | None = None,
) -> Runner:
    """The runner of a checkpoint directory (None = the embedded default model): Diffill's own, or an adapter's.

    `preset` ("fast" or "reference", ``engine.contract.PRESETS``) picks a released coder's sampling: the request's
    options with the family's ordering, or the settings its release was evaluated with. Diffill's own model samples
    one way (its reference is its defaults), so it accepts either name and ignores it. `dtype` (``DTYPES``): what
    the model runs in; None = the loaders' default (float32 on CPU, bfloat16 on GPU); "auto" (what the command line
    and the editors default to) = ``engine.checkpoint.auto_dtype``: bfloat16 on CPUs with bf16 matrix units too.
    """
    check_preset(preset)
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        torch_dtype: torch.dtype | None = auto_dtype(resolve_device(device))
    else:
        torch_dtype = getattr(torch, dtype) if dtype is not None else None
    if path is None:
        path = checkpoint_dir(None, autoregressive=autoregressive)
        if not (path / "config.json").exists():
            raise CheckpointError(f"the embedded default model is missing from {path}; pass a checkpoint with --model")
    elif (Path(path) / "config.json").exists():
        from engine.adapters import is_external, load_adapter_runner  # torch-heavy; only when asked for

        if is_external(path):
            return load_adapter_runner(path, device=device, preset=preset, dtype=torch_dtype)
    model, tokenizer = load_checkpoint(path, device=device, dtype=torch_dtype)
    return DiffillRunner(model, tokenizer, name=Path(path).name)
