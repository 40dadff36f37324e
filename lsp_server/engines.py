"""Engine selection: one small factory from settings to a `CompletionEngine`, plus what the server derives from it.

The server never imports torch on its own thread: `create_engine` runs in a worker thread and imports the engine
lazily, so `initialize` is answered at once and the model loads while the editor goes on. A remote engine
(`engine.remote.RemoteEngine`, a `diffill serve` box) has the same protocol; when that module is not installed
the factory raises `EngineUnavailable` with a message fit for `window/showMessage`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import CheckpointError
from fim.request import FimSettings
from lsp_server.settings import CompletionSettings, Settings

if TYPE_CHECKING:
    from engine.contract import CompletionEngine

__all__ = ["EngineUnavailable", "create_engine", "describe", "fim_settings", "warm_up"]

log = logging.getLogger(__name__)


class EngineUnavailable(RuntimeError):
    """The configured engine cannot be created in this installation."""


def _remote_engine(settings: Settings) -> CompletionEngine:
    try:
        from engine.remote import RemoteEngine  # built by the serving work; optional here
    except ImportError as exc:
        raise EngineUnavailable(
            f"diffill.remote.url is set ({settings.remote.url}) but this installation has no remote engine "
            "(engine.remote.RemoteEngine); clear the setting to use the local model"
        ) from exc
    return RemoteEngine(settings.remote.url, token=settings.remote.token)


def create_engine(settings: Settings, default_model: str | None = None) -> CompletionEngine:
    """The engine the settings ask for: remote when `remote.url` is set, else a local checkpoint.

    The local checkpoint is `model.path`, else the server's `--model`, else the embedded default model.
    Blocking (imports torch, reads weights): call it from a worker thread.
    """
    if settings.remote.url:
        return _remote_engine(settings)
    path = settings.model.path or default_model
    if path is not None and not Path(path).expanduser().is_dir():
        # Before importing torch (seconds): a mistyped path is the most common failure and should show at once.
        raise CheckpointError(f"checkpoint directory not found: {path}")
    from engine.api import editor_threads, load_engine

    threads = editor_threads(settings.model.threads)
    log.info("loading model %s on %s (%d CPU threads)", path or "(embedded default)", settings.model.device, threads)
    model = Path(path).expanduser() if path else None
    model_settings = settings.model
    return load_engine(
        model, device=model_settings.device, threads=threads, preset=model_settings.preset, dtype=model_settings.dtype
    )


def describe(engine: CompletionEngine) -> dict[str, Any]:
    try:
        return dict(engine.describe())
    except Exception:  # a remote engine may fail to answer; the description is informational
        log.exception("engine.describe() failed")
        return {}


def warm_up(engine: CompletionEngine, fim: FimSettings, sampling: CompletionSettings) -> None:
    """One single-line-shaped completion, so the first real request does not pay for lazy initialisation
    (allocator pools and kernels are per shape)."""
    from engine.contract import SampleOptions

    options = SampleOptions(
        steps=sampling.steps, threshold=sampling.threshold, temperature=sampling.temperature, max_lines=1
    )
    engine.complete(
        "def main():\n    ",
        "\n",
        language="python",
        canvas_length=fim.single_line_canvas,
        num_candidates=fim.single_line_candidates,
        options=options,
    )


def fim_settings(settings: Settings, description: dict[str, Any]) -> FimSettings:
    """fim's sizes from the user's settings, clamped to what the model can take (canvas, context)."""
    changes: dict[str, int] = {"max_lines": settings.completion.max_lines, "repairs": settings.completion.repairs}
    if (candidates := settings.completion.candidates) is not None:
        changes |= {"single_line_candidates": candidates, "multi_line_candidates": candidates}
    fim = FimSettings(cross_file_tokens=settings.cross_file.max_tokens, first_steps=settings.completion.first_steps)
    fitted = fim.fitted(description)  # no quick first ask for a model that is not a diffusion one
    return dataclasses.replace(fitted, **changes)
