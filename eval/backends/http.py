"""Completion servers a team may already run, as ``CompletionEngine``s: OpenAI-style, llama.cpp, Ollama.

- ``OpenAICompletions``: ``POST /v1/completions`` with ``prompt`` (prefix) and ``suffix`` -- the legacy OpenAI
  completions API that vLLM, llama.cpp's server, LocalAI and ``diffill serve`` implement. ``max_tokens`` is the
  canvas length, ``n`` the number of candidates, in the server's order (the first ranks best). One candidate is
  asked greedily (temperature 0): the model's best guess, as the in-process engine's first candidate is.
- ``LlamaCppInfill``: llama.cpp's ``POST /infill`` (``input_prefix``, ``input_suffix``, ``n_predict``; cross-file
  chunks as ``input_extra``). The other two have no field for cross-file chunks and leave them out.
- ``OllamaGenerate``: Ollama's ``POST /api/generate`` with ``suffix`` (the model's template does the FIM layout),
  ``stream: false``, ``options.num_predict``.

The last two answer one text per request, so they give one greedy candidate whatever the request asks (pass@k
needs a backend that returns n). ``extra`` fields are merged into every request body (sampling knobs a server
understands, e.g. ``{"steps": 4}`` for ``diffill serve``); ``send_language`` adds the task's language as a
``language`` field, the extension ``diffill serve`` reads (llama.cpp and Ollama ignore unknown fields; OpenAI's own
API refuses them, so it is off by default). One keep-alive connection is reused across calls; every
failure is a ``BackendError`` that names the server and what it said.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from engine.contract import Completion, ContextChunk, SampleOptions
from engine.errors import DiffillError
from eval.backends.base import StatelessBackend
from fim.request import approx_tokens

__all__ = ["BackendError", "LlamaCppInfill", "OllamaGenerate", "OpenAICompletions"]


class BackendError(DiffillError):
    """A completion server could not be reached or answered something else than its API promises."""


class JsonClient:
    """POST JSON, read JSON, over one reused HTTP/1.1 connection (single-threaded use)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"invalid server URL {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        self.base = parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None:
            return self._conn, True
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn, False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        where = f"{self.url}{path}"
        for attempt in range(2):
            conn, reused = self._connection()
            try:
                conn.request("POST", self.base + path, body=data, headers=self._headers)
                response = conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection
                raise BackendError(f"{where}: the server closed the connection ({e})") from None
            except ConnectionRefusedError:
                self.close()
                raise BackendError(f"cannot connect to {where}: connection refused (is the server running?)") from None
            except (TimeoutError, OSError, http.client.HTTPException) as e:
                self.close()
                raise BackendError(f"{where}: {type(e).__name__}: {e}") from None
            if response.will_close:
                self.close()
            return _decode(where, response.status, payload)
        raise AssertionError("unreachable")


def _decode(where: str, status: int, payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if status != 200:
        message = data.get("error") if isinstance(data, dict) else None
        if isinstance(message, dict):
            message = message.get("message")
        text = message if isinstance(message, str) else payload[:200].decode("utf-8", "replace")
        raise BackendError(f"{where} answered {status}: {text or '(empty reply)'}")
    if not isinstance(data, dict):
        raise BackendError(f"{where}: the reply is not a JSON object: {payload[:200]!r}")
    return data


def _completion(text: Any, rank: int, tokens: Any, where: str) -> Completion:

    if not isinstance(text, str):
        raise BackendError(f"{where}: expected a completion string, got {type(text).__name__}")
    count = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else approx_tokens(text)
    return Completion(text=text, score=-float(rank), tokens=count)


@dataclass
class _HttpBackend(StatelessBackend):
    url: str
    model: str | None = None
    token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    send_language: bool = False  # add the task's language as "language" (diffill serve's extension field)
    timeout: float = 120.0
    kind = "http"

    def __post_init__(self) -> None:
        self.client = JsonClient(self.url, self.token, self.timeout)

    def describe(self) -> dict[str, Any]:
        return {"name": self.model or self.client.url, "kind": self.kind, "url": self.client.url}

    def close(self) -> None:
        self.client.close()

    def _body(self, body: dict[str, Any], language: str) -> dict[str, Any]:
        return body | ({"language": language} if self.send_language else {}) | self.extra


@dataclass
class OpenAICompletions(_HttpBackend):
    kind = "openai"

    def complete(
        self,
        prefix: str,
        suffix: str,
        *,
        language: str,
        canvas_length: int,
        num_candidates: int,
        options: SampleOptions | None = None,
        session_id: str | None = None,
        chunks: Sequence[ContextChunk] = (),
    ) -> list[Completion]:
        path = "/completions" if self.client.base.endswith("/v1") else "/v1/completions"
        body = {
            "model": self.model or "default",
            "prompt": prefix,
            "suffix": suffix,
            "max_tokens": canvas_length,
            "n": num_candidates,
            "temperature": options.temperature if options is not None and num_candidates > 1 else 0.0,
            **({"seed": options.seed} if options is not None else {}),
        }
        reply = self.client.post(path, self._body(body, language))
        choices = reply.get("choices")
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise BackendError(f"{self.client.url}{path}: the reply has no 'choices' list")
        choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        total = usage.get("completion_tokens") if len(choices) == 1 else None
        return [_completion(c.get("text"), i, total, self.client.url + path) for i, c in enumerate(choices)]


@dataclass
class LlamaCppInfill(_HttpBackend):
    kind = "llama-cpp"

    def complete(
        self,
        prefix: str,
        suffix: str,
        *,
        language: str,
        canvas_length: int,
        num_candidates: int,
        options: SampleOptions | None = None,
        session_id: str | None = None,
        chunks: Sequence[ContextChunk] = (),
    ) -> list[Completion]:
        body = {
            "input_prefix": prefix,
            "input_suffix": suffix,
            "prompt": "",
            "n_predict": canvas_length,
            "temperature": 0.0,
            "stream": False,
            **({"seed": options.seed} if options is not None else {}),
            **({"input_extra": [{"filename": c.path, "text": c.text} for c in chunks]} if chunks else {}),
        }
        reply = self.client.post("/infill", self._body(body, language))
        return [_completion(reply.get("content"), 0, reply.get("tokens_predicted"), self.client.url + "/infill")]


@dataclass
class OllamaGenerate(_HttpBackend):
    kind = "ollama"

    def complete(
        self,
        prefix: str,
        suffix: str,
        *,
        language: str,
        canvas_length: int,
        num_candidates: int,
        options: SampleOptions | None = None,
        session_id: str | None = None,
        chunks: Sequence[ContextChunk] = (),
    ) -> list[Completion]:
        sampling = {"temperature": 0.0, "num_predict": canvas_length}
        if options is not None:
            sampling["seed"] = options.seed
        body = {"model": self.model or "", "prompt": prefix, "suffix": suffix, "stream": False, "options": sampling}
        reply = self.client.post("/api/generate", self._body(body, language))
        return [_completion(reply.get("response"), 0, reply.get("eval_count"), self.client.url + "/api/generate")]
