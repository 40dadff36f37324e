"""JSON endpoints in the shapes existing editor plugins already speak: OpenAI completions and llama.cpp infill.

* ``POST /v1/completions`` (OpenAI legacy completions with ``suffix``, as used by Continue, Tabby-style clients
  and the ``openai`` Python client): ``prompt`` -> prefix, ``suffix`` -> suffix, ``max_tokens`` -> canvas length,
  ``n`` -> candidates, ``temperature``, ``seed``; ``stop`` cuts each text at the first stop string; ``stream``
  answers with server-sent events (one event per choice, then ``[DONE]``).
* ``POST /infill`` (llama.cpp server): ``input_prefix`` + ``prompt`` -> prefix, ``input_suffix`` -> suffix,
  ``n_predict`` -> canvas length, ``input_extra`` (``[{"filename", "text"}]``, what llama.vscode sends from its
  ring buffer) -> cross-file chunks; answers ``{"content": ...}``.

``max_tokens``/``n_predict`` are upper bounds in both APIs, so values above the server's canvas limit are clamped
rather than refused; fields these APIs define that a diffusion sampler has no use for (``top_p``,
``presence_penalty``, ``cache_prompt`` ...) are ignored. Extension fields understood by both:
``language``, ``session_id``, ``steps``, ``threshold``. With one candidate the answer is the greedy one (the
engine's first candidate is always greedy), so ``temperature`` matters only for ``n`` > 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.contract import CompletionRequest, CompletionResult, fit_canvas
from engine.serve.protocol import (
    MAX_SEED,
    Limits,
    ProtocolError,
    get_chunks,
    get_int,
    get_request_id,
    get_session,
    get_str,
    sample_options,
)

OPENAI_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default


@dataclass(frozen=True)
class JsonCall:
    request: CompletionRequest
    stop: tuple[str, ...] = ()
    stream: bool = False


def _prompt(data: Mapping[str, Any]) -> str:
    prompt = data.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise ProtocolError(400, "'prompt' must be a string or a list of exactly one string")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ProtocolError(400, "'prompt' must be a string")
    return prompt


def _stop(data: Mapping[str, Any]) -> tuple[str, ...]:
    stop = data.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 16 or not all(isinstance(s, str) for s in stop):
        raise ProtocolError(400, "'stop' must be a string or a list of at most 16 strings")
    return tuple(s for s in stop if s)


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError(400, f"field {key!r} must be a boolean")
    return value


def _canvas(requested: int, limits: Limits) -> int:
    """An upper bound on new tokens -> the canvas: clamped to the server's limit; <= 0 means 'as many as allowed'."""
    return limits.max_canvas if requested <= 0 else fit_canvas(requested, limits.max_canvas)


def _seed(data: Mapping[str, Any]) -> int:
    seed = get_int(data, "seed", 0, -(2**63), 2**64 - 1)
    return max(seed, 0) & MAX_SEED  # llama.cpp's -1 ("random") becomes 0: answers stay reproducible


def parse_openai(data: Mapping[str, Any], limits: Limits) -> JsonCall:
    if _bool(data, "echo"):
        raise ProtocolError(400, "'echo' is not supported by a fill-in-the-middle server")
    max_tokens = get_int(data, "max_tokens", OPENAI_DEFAULT_MAX_TOKENS, 1, 2**31)
    request = CompletionRequest(
        prefix=_prompt(data),
        suffix=get_str(data, "suffix", ""),
        language=get_str(data, "language", "other"),
        canvas_length=_canvas(max_tokens, limits),
        num_candidates=get_int(data, "n", 1, 1, limits.max_candidates, status=422),
        options=sample_options({**data, "seed": _seed(data)}, temperature=1.0),
        session_id=get_session(data, "session_id"),
        request_id=get_request_id(data, "request_id"),
    )
    return JsonCall(request=request, stop=_stop(data), stream=_bool(data, "stream"))


def parse_infill(data: Mapping[str, Any], limits: Limits) -> JsonCall:
    prefix = get_str(data, "input_prefix", "") + get_str(data, "prompt", "")
    request = CompletionRequest(
        prefix=prefix,
        suffix=get_str(data, "input_suffix", ""),
        language=get_str(data, "language", "other"),
        canvas_length=_canvas(get_int(data, "n_predict", -1, -(2**31), 2**31), limits),
        num_candidates=1,
        options=sample_options({**data, "seed": _seed(data)}, temperature=0.8),
        session_id=get_session(data, "session_id"),
        request_id=get_request_id(data, "request_id"),
        chunks=get_chunks(data, "input_extra", "filename"),
    )
    return JsonCall(request=request, stop=_stop(data), stream=_bool(data, "stream"))


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _choices(call: JsonCall, result: CompletionResult) -> list[dict[str, Any]]:
    out = []
    for i, completion in enumerate(result.completions):
        text, stopped = cut_at_stop(completion.text, call.stop)
        ended = stopped or completion.tokens < call.request.canvas_length  # the model wrote <eos>
        out.append({"text": text, "index": i, "logprobs": None, "finish_reason": "stop" if ended else "length"})
    return out


def openai_reply(call: JsonCall, model: str, result: CompletionResult) -> dict[str, Any]:
    generated = sum(c.tokens for c in result.completions)
    return {
        "id": f"cmpl-{call.request.request_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": _choices(call, result),
        "usage": {
            "prompt_tokens": result.stats.context_tokens,
            "completion_tokens": generated,
            "total_tokens": result.stats.context_tokens + generated,
        },
    }


def openai_stream_events(call: JsonCall, model: str, result: CompletionResult) -> list[dict[str, Any] | str]:
    """Server-sent events for ``stream: true``: one chunk per choice (the text arrives whole), then ``[DONE]``."""
    reply = openai_reply(call, model, result)
    base = {k: reply[k] for k in ("id", "object", "created", "model")}
    return [{**base, "choices": [choice]} for choice in reply["choices"]] + ["[DONE]"]


def infill_reply(call: JsonCall, model: str, result: CompletionResult) -> dict[str, Any]:
    completion = result.completions[0]
    text, stopped = cut_at_stop(completion.text, call.stop)
    limited = not stopped and completion.tokens >= call.request.canvas_length
    return {
        "content": text,
        "model": model,
        "stop": True,
        "stop_type": "limit" if limited else ("word" if stopped else "eos"),
        "tokens_predicted": completion.tokens,
        "tokens_evaluated": result.stats.context_tokens,
        "tokens_cached": result.stats.context_tokens - result.stats.computed_tokens,
        "timings": {
            "prompt_n": result.stats.computed_tokens,
            "prompt_ms": round(result.stats.prefill_ms, 3),
            "predicted_n": completion.tokens,
            "predicted_ms": round(result.stats.sample_ms, 3),
        },
    }
