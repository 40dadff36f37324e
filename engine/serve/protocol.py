"""Wire formats of ``diffill serve``: the native msgpack protocol and the JSON endpoints for existing plugins.

Everything here is pure: bytes or decoded objects in, a validated ``CompletionRequest`` (``engine.contract``; or a
``ProtocolError`` carrying the HTTP status) out, and replies built from a ``CompletionResult``. A canvas longer
than the server's limit is clamped (``engine.contract.fit_canvas``), on every route and in-process alike. The
server, the scheduler and ``engine.remote`` share these definitions, so a field name lives in exactly one place.

Native protocol (version 1, see docs/serving.md): ``POST /v1/fim`` with a msgpack map body
(``Content-Type: application/msgpack``), answered with a msgpack map; ``POST /v1/cancel`` with ``{"id": ...}``.
Cross-file context rides in ``chunks``, a list of ``{"path", "text"}`` maps (least relevant first; an optional
field, so older clients and servers interoperate). JSON: OpenAI-style ``POST /v1/completions`` (prompt + suffix)
and llama.cpp-style ``POST /infill`` (its ``input_extra`` list of ``{"filename", "text"}`` carries the chunks).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from engine.contract import (
    MAX_CHUNKS,
    Completion,
    CompletionRequest,
    CompletionResult,
    CompletionStats,
    ContextChunk,
    SampleOptions,
    fit_canvas,
)
from engine.errors import DiffillError

PROTOCOL_VERSION = 1
MSGPACK = "application/msgpack"
MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})
JSON = "application/json"
MAX_STEPS = 1024  # steps beyond the canvas length do nothing (at least one position commits per step)
MAX_CANVAS_ASKED = 2**20  # a canvas is an upper bound, clamped to the server's limit; this only bounds the number
MAX_SEED = 2**63 - 1
MAX_LINES = 10_000  # a line limit (SampleOptions.max_lines); 0 = none
# Characters per token no tokenizer reaches on average (BPE tokens of code average 3-4 characters; even runs of
# indentation merge into tokens of a few dozen at most): a text longer than `max_context` x this many characters
# is over the token limit for sure, so it is refused before any tokenizing.
MAX_CHARS_PER_TOKEN = 32
# A native request body holds prefix + suffix (at most 4 UTF-8 bytes a character) and a few short fields (ids,
# language, options: well under a kilobyte; this leaves room to spare).
NATIVE_FIELDS_BYTES = 64 * 1024


class ProtocolError(DiffillError):
    """A request the server refuses; `status` is the HTTP status it is answered with, `retry_after` (seconds)
    goes out as a ``Retry-After`` header when the refusal is temporary (429, 503)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; `max_context` counts tokens before the model's own trimming. A canvas or a
    step budget over the limit is clamped (both are upper bounds); a text over `max_chars` is refused."""

    max_context: int
    max_canvas: int
    max_candidates: int = 16
    max_steps: int = MAX_STEPS
    max_chars: int = 0  # prefix + suffix characters; 0: max_context x MAX_CHARS_PER_TOKEN

    @property
    def char_limit(self) -> int:
        return self.max_chars or self.max_context * MAX_CHARS_PER_TOKEN

    @property
    def native_body_bytes(self) -> int:
        """Most bytes a native (msgpack) request body within the character limit can take: a longer one is refused
        from its Content-Length, before a byte of it is read or parsed. (JSON bodies get no such bound: plugins
        send other files along, e.g. llama.cpp's ``input_extra``, which the server ignores.)"""
        return 4 * self.char_limit + NATIVE_FIELDS_BYTES

    def admit(self, request: CompletionRequest) -> CompletionRequest:
        """The server's checks on a parsed request before any tokenizing (cheap: lengths only), on every route:
        refuse a text no token limit could accept, clamp the step budget."""
        chars = len(request.prefix) + len(request.suffix)
        if chars > self.char_limit:
            raise ProtocolError(
                422,
                f"prefix + suffix of {chars} characters exceeds the server's limit of {self.char_limit} characters "
                f"(--max-context {self.max_context} tokens); send a smaller window around the cursor",
            )
        chunk_chars = sum(len(c.path) + len(c.text) for c in request.chunks)
        if chunk_chars > self.char_limit:
            raise ProtocolError(
                422,
                f"context chunks of {chunk_chars} characters exceed the server's limit of {self.char_limit} "
                "characters; send fewer or shorter chunks (they are cut to the model's context anyway)",
            )
        if request.options.steps > self.max_steps:
            request = replace(request, options=replace(request.options, steps=self.max_steps))
        return request


# ---------------------------------------------------------------- decoding helpers


def decode_msgpack(body: bytes) -> dict[str, Any]:
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, ValueError, UnicodeDecodeError)
        raise ProtocolError(400, f"malformed msgpack body: {e}") from None
    return _as_map(data, "msgpack")


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(400, f"malformed JSON body: {e}") from None
    return _as_map(data, "JSON")


def _as_map(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(400, f"the {what} body must be a map/object, got {type(data).__name__}")
    return data


def get_str(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key)
    if value is None:
        if default is None:
            raise ProtocolError(400, f"missing field {key!r}")
        value = default
    if not isinstance(value, str):
        raise ProtocolError(400, f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def get_opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else get_str(data, key)


def get_int(data: Mapping[str, Any], key: str, default: int, lo: int, hi: int, status: int = 400) -> int:
    value = data.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(400, f"field {key!r} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(status, f"field {key!r} must be in [{lo}, {hi}], got {value}")
    return value


def get_float(data: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = data.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(400, f"field {key!r} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ProtocolError(400, f"field {key!r} must be in [{lo}, {hi}], got {value}")
    return float(value)


def get_opt_float(data: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = data.get(key)
    return None if value is None else get_float(data, key, lo, lo, hi)


def sample_options(data: Mapping[str, Any], temperature: float | None, seed: int = 0) -> SampleOptions:
    """A request's sampling; `temperature` where it names none (None: the model's own, ``with_temperature``)."""
    asked = get_opt_float(data, "temperature", 0.0, 100.0)
    return SampleOptions(
        steps=get_int(data, "steps", SampleOptions.steps, 1, MAX_STEPS),
        threshold=get_float(data, "threshold", SampleOptions.threshold, 0.0, 1.0),
        temperature=temperature if asked is None else asked,
        seed=get_int(data, "seed", seed, 0, MAX_SEED),
        max_lines=get_int(data, "max_lines", 0, 0, MAX_LINES),
    )


def get_request_id(data: Mapping[str, Any], key: str = "id") -> str:
    rid = get_opt_str(data, key)
    if rid is not None and not 1 <= len(rid) <= 128:
        raise ProtocolError(400, f"field {key!r} must be 1 to 128 characters")
    return rid or secrets.token_hex(8)


def get_session(data: Mapping[str, Any], key: str) -> str | None:
    sid = get_opt_str(data, key)
    if sid is not None and len(sid) > 256:
        raise ProtocolError(400, f"field {key!r} must be at most 256 characters")
    return sid or None


MAX_CHUNK_PATH = 1024


def get_chunks(data: Mapping[str, Any], key: str, path_key: str) -> tuple[ContextChunk, ...]:
    """Cross-file chunks: a list of maps with a string `text` and an optional string path under `path_key`
    ("path" natively, llama.cpp's "filename" in ``input_extra``); absent or null = none."""
    items = data.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ProtocolError(400, f"field {key!r} must be a list of {{{path_key!r}, 'text'}} maps")
    if len(items) > MAX_CHUNKS:
        raise ProtocolError(422, f"field {key!r} holds {len(items)} chunks; at most {MAX_CHUNKS}")
    chunks = []
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError(400, f"each item of {key!r} must be a map with {path_key!r} and 'text'")
        try:
            path, text = get_str(item, path_key, ""), get_str(item, "text")
        except ProtocolError as e:
            raise ProtocolError(e.status, f"an item of {key!r}: {e.message}") from None
        if len(path) > MAX_CHUNK_PATH:
            raise ProtocolError(400, f"a {path_key!r} in {key!r} is longer than {MAX_CHUNK_PATH} characters")
        chunks.append(ContextChunk(path=path, text=text))
    return tuple(chunks)


# ---------------------------------------------------------------- native msgpack protocol


def parse_native(data: Mapping[str, Any], limits: Limits) -> CompletionRequest:
    """A native request map -> CompletionRequest; sizes over the server's limits are 422, bad types 400."""
    version = get_int(data, "v", PROTOCOL_VERSION, 1, PROTOCOL_VERSION)
    del version  # only version 1 exists; the check rejects clients speaking a newer one
    return CompletionRequest(
        prefix=get_str(data, "prefix"),
        suffix=get_str(data, "suffix", ""),
        language=get_str(data, "language", "other"),
        canvas_length=fit_canvas(get_int(data, "canvas_length", 32, 1, MAX_CANVAS_ASKED), limits.max_canvas),
        num_candidates=get_int(data, "num_candidates", 1, 1, limits.max_candidates, status=422),
        options=sample_options(data, SampleOptions.temperature),
        session_id=get_session(data, "session"),
        request_id=get_request_id(data),
        chunks=get_chunks(data, "chunks", "path"),
    )


def native_request(
    prefix: str,
    suffix: str,
    *,
    language: str,
    canvas_length: int,
    num_candidates: int,
    options: SampleOptions,
    session_id: str | None = None,
    request_id: str | None = None,
    chunks: tuple[ContextChunk, ...] = (),
) -> dict[str, Any]:
    """The request map a client sends (``engine.remote`` uses this, so both ends agree on field names)."""
    out: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "prefix": prefix,
        "suffix": suffix,
        "language": language,
        "canvas_length": canvas_length,
        "num_candidates": num_candidates,
        "steps": options.steps,
        "threshold": options.threshold,
        "temperature": options.temperature,
        "seed": options.seed,
    }
    if options.max_lines:
        out["max_lines"] = options.max_lines
    if session_id is not None:
        out["session"] = session_id
    if request_id is not None:
        out["id"] = request_id
    if chunks:
        out["chunks"] = [{"path": c.path, "text": c.text} for c in chunks]
    return out


def native_reply(request_id: str, model: str, result: CompletionResult) -> dict[str, Any]:
    stats = result.stats
    return {
        "v": PROTOCOL_VERSION,
        "id": request_id,
        "model": model,
        "completions": [{"text": c.text, "score": c.score, "tokens": c.tokens} for c in result.completions],
        "stats": {
            "context_tokens": stats.context_tokens,
            "computed_tokens": stats.computed_tokens,
            "queue_ms": round(stats.queue_ms, 3),
            "prefill_ms": round(stats.prefill_ms, 3),
            "sample_ms": round(stats.sample_ms, 3),
            "steps": stats.steps,
            "batch_max": stats.batch_max,
        },
    }


def parse_native_reply(data: object) -> CompletionResult:
    """A native reply map -> completions and stats; anything else is a ValueError (the client reports it as
    malformed). Stats a server leaves out read as zero."""
    if not isinstance(data, dict) or not isinstance(data.get("completions"), list):
        raise ValueError("expected a map with a 'completions' list")
    out = []
    for item in data["completions"]:
        if not isinstance(item, dict):
            raise ValueError("each completion must be a map")
        text, score, tokens = item.get("text"), item.get("score"), item.get("tokens")
        if not isinstance(text, str) or isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError("a completion needs a string 'text' and a numeric 'score'")
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise ValueError("a completion needs an integer 'tokens'")
        out.append(Completion(text=text, score=float(score), tokens=tokens))
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
    numbers = {k: v for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return CompletionResult(
        out,
        CompletionStats(
            context_tokens=int(numbers.get("context_tokens", 0)),
            computed_tokens=int(numbers.get("computed_tokens", 0)),
            prefill_ms=float(numbers.get("prefill_ms", 0.0)),
            sample_ms=float(numbers.get("sample_ms", 0.0)),
            steps=int(numbers.get("steps", 0)),
            queue_ms=float(numbers.get("queue_ms", 0.0)),
            batch_max=int(numbers.get("batch_max", 1)),
        ),
    )


def error_body(status: int, message: str) -> dict[str, Any]:
    """Error replies of every endpoint share this shape (OpenAI's, which JSON plugins already parse)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"code": status, "message": message, "type": kind}}


def pack(data: Any) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def dump_json(data: Any) -> bytes:
    # ASCII escapes: a lone surrogate from a JSON client's input can never make the reply unencodable.
    return json.dumps(data, separators=(",", ":")).encode()
