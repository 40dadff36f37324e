"""Where completions come from: any ``CompletionEngine``, chosen by ``--backend`` (see docs/eval.md).

- ``engine``: a Diffill checkpoint in this process (``--model DIR``, default the embedded model), or an external
  diffusion coder through ``engine.adapters``;
- ``remote``: a ``diffill serve`` box over its native msgpack protocol (``engine.remote.RemoteEngine``);
- ``openai`` / ``llama-cpp`` / ``ollama``: a server a team already runs (``eval.backends.http``);
- ``copy`` / ``oracle``: the reference rows (``eval.backends.reference``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eval.backends.http import BackendError, LlamaCppInfill, OllamaGenerate, OpenAICompletions
from eval.backends.reference import CopyEngine, OracleEngine

if TYPE_CHECKING:
    from engine.contract import CompletionEngine

KINDS = ("engine", "remote", "openai", "llama-cpp", "ollama", "copy", "oracle")
_HTTP = {"openai": OpenAICompletions, "llama-cpp": LlamaCppInfill, "ollama": OllamaGenerate}
SINGLE_ANSWER = frozenset({"llama-cpp", "ollama"})  # one text per request: no pass@k samples
DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434", "llama-cpp": "http://127.0.0.1:8080"}


@dataclass(frozen=True)
class BackendSpec:
    kind: str = "engine"
    model: str | None = None  # checkpoint directory (engine) or model name (openai, ollama)
    url: str | None = None
    token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # merged into HTTP request bodies
    send_language: bool = False  # HTTP: the task's language as a "language" field
    autoregressive: bool = False  # engine: the embedded AR twin (or --model as an AR checkpoint)
    device: str = "auto"
    threads: int | None = None
    preset: str = "fast"  # engine: a released coder's sampling ("fast" or "reference", engine.contract.PRESETS)
    dtype: str = "auto"  # engine: what the model runs in (engine.contract.DTYPES)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BackendError(f"unknown backend {self.kind!r}; one of {', '.join(KINDS)}")
        if self.preset != "fast" and self.kind != "engine":
            raise BackendError("--preset goes with the engine backend (a diffill serve box has its own --preset)")
        if self.kind == "remote" and not self.url:
            raise BackendError("the remote backend needs --url (or --remote URL)")
        if self.kind == "openai" and not self.url:
            raise BackendError("the openai backend needs --url of the server")
        if self.kind == "ollama" and not self.model:
            raise BackendError("the ollama backend needs --model NAME (a model pulled into Ollama)")
        if self.token and self.kind not in ("remote", *_HTTP):
            raise BackendError("--token goes with a server backend (remote, openai, llama-cpp, ollama)")
        if (self.extra or self.send_language) and self.kind not in _HTTP:
            raise BackendError("--extra-body and --send-language go with an HTTP backend (openai, llama-cpp, ollama)")

    @property
    def label(self) -> str:
        """How the report names this backend: kind, then model or URL when there is one."""
        detail = self.model or self.url
        if self.kind == "engine":
            detail = self.model or ("default-ar" if self.autoregressive else "default")
        return f"{self.kind}:{detail}" if detail else self.kind

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same backend (the token is left out: it is a secret, not a setting)."""
        return (
            {"kind": self.kind, "label": self.label, "url": self.url, "extra": self.extra}
            | ({"send_language": True} if self.send_language else {})
            | ({"preset": self.preset} if self.preset != "fast" else {})
            | ({"dtype": self.dtype} if self.dtype != "auto" else {})
        )


def open_backend(spec: BackendSpec, tasks: Iterable[Any] = ()) -> CompletionEngine:
    """The engine for a spec; `tasks` (with task_id and middle) only for the oracle."""
    if spec.kind == "oracle":
        return OracleEngine.of(tasks)
    if spec.kind == "copy":
        return CopyEngine()
    if spec.kind == "remote":
        from engine.remote import RemoteEngine

        return RemoteEngine(spec.url or "", token=spec.token)
    if spec.kind in _HTTP:
        url = spec.url or DEFAULT_URLS[spec.kind]
        return _HTTP[spec.kind](
            url, model=spec.model, token=spec.token, extra=dict(spec.extra), send_language=spec.send_language
        )
    import torch

    from engine.api import load_engine

    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        return load_engine(
            spec.model, device=spec.device, autoregressive=spec.autoregressive, preset=spec.preset, dtype=spec.dtype
        )
    except ValueError as e:  # an unknown preset name
        raise BackendError(str(e)) from None
