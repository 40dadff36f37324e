"""Routes of ``diffill serve``: authentication, limits, and the glue between HTTP requests and the scheduler.

Every route is a small coroutine ``(request, connection, owner) -> Response``; ``route`` picks it and checks the
token from the request head alone, before the server reads a body; on the native routes the head's Content-Length is
checked too (``Limits.native_body_bytes``: a body too long to hold a prompt within the character limit is refused
before a byte of it is read). The event loop never runs the model and never tokenizes: a request's size is checked
on characters first (``Limits.admit``: a multi-megabyte JSON prompt is refused once parsed, before any tokenizing),
tokenization goes to a worker thread (``asyncio.to_thread``; the tokenizer releases the GIL on long texts) and
sampling to the scheduler's model thread; while a request waits for its result the connection is watched, and a
client that goes away has its request cancelled between two denoising steps. Errors become replies (msgpack on the
native routes, JSON elsewhere), never exceptions that end the server; temporary refusals (429, 503) carry
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.api import LocalEngine
from engine.contract import CompletionRequest, CompletionResult
from engine.runner import Prompt
from engine.serve import compat
from engine.serve.guard import TokenQuota
from engine.serve.http import Connection, Request, Response
from engine.serve.metrics import Metrics
from engine.serve.protocol import (
    JSON,
    MAX_STEPS,
    MSGPACK,
    MSGPACK_TYPES,
    PROTOCOL_VERSION,
    Limits,
    ProtocolError,
    decode_json,
    decode_msgpack,
    dump_json,
    error_body,
    get_str,
    native_reply,
    pack,
    parse_native,
)
from engine.serve.scheduler import Cancelled, Job, Scheduler

log = logging.getLogger(__name__)

NATIVE_ROUTES = frozenset({"/v1/fim", "/v1/cancel"})
COMPLETION_ROUTES = frozenset({"/v1/fim", "/v1/completions", "/infill"})  # timed in diffill_request_seconds
Handler = Callable[[Request, Connection, str], Awaitable[Response]]


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8711
    tokens: tuple[str, ...] = ()  # bearer tokens accepted; empty = no authentication (loopback only)
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body_bytes: int = 4 * 2**20  # a 2k-token window is ~10 kB; 4 MiB leaves room for JSON plugins' files
    max_context: int | None = None  # tokens a request may send (None: 4x the model's context, which trims)
    max_canvas: int | None = None  # None: the model's max_canvas
    max_candidates: int = 16
    max_steps: int | None = None  # step budget per request, clamped; None: the canvas limit (>= 1 commit per step)
    max_chars: int = 0  # prefix + suffix characters; 0: max_context x MAX_CHARS_PER_TOKEN (refused before tokenizing)
    max_concurrent_per_token: int = 16
    rate_per_token: float = 0.0  # completion requests per second per token (token bucket); 0: unlimited
    burst_per_token: int = 0  # the bucket's size; 0: max_concurrent_per_token
    cache_budget_mb: float = 512.0
    batching: bool = True
    max_batch: int = 16
    bulk_tokens: int = 256  # requests with more canvas tokens (candidates x length) yield to smaller ones
    max_queue: int = 256
    max_connections: int = 0  # 0: what the open-file limit allows (guard.default_max_connections)
    max_connections_per_ip: int = 256  # 0: no separate per-address cap
    header_timeout: float = 10.0  # seconds to deliver a request head (from connecting, for a new connection)
    drain_seconds: float = 10.0  # on SIGTERM/SIGINT: how long running requests may take to finish


class ClientGone(Exception):
    """The client closed its connection while its request was running."""


def _token_digest(token: str) -> bytes:
    # Comparing fixed-size digests keeps compare_digest's time independent of the presented token's length.
    return hashlib.sha256(token.encode()).digest()


class App:
    def __init__(self, engine: LocalEngine, config: ServeConfig) -> None:
        runner = engine.runner
        self.engine, self.config = engine, config
        max_canvas = min(config.max_canvas or runner.max_canvas, runner.max_canvas)
        self.limits = Limits(
            max_context=config.max_context or 4 * runner.max_context,
            max_canvas=max_canvas,
            max_candidates=config.max_candidates,
            max_steps=min(config.max_steps or max_canvas, MAX_STEPS),
            max_chars=config.max_chars,
        )
        self.metrics = Metrics()
        self.scheduler = Scheduler(
            engine,
            batching=config.batching,
            max_batch=config.max_batch,
            bulk_tokens=config.bulk_tokens,
            max_queue=config.max_queue,
            cache_budget_bytes=int(config.cache_budget_mb * 2**20),
            metrics=self.metrics,
        )
        self.quota = TokenQuota(config.max_concurrent_per_token, config.rate_per_token, config.burst_per_token)
        self._tokens = [_token_digest(t) for t in config.tokens]
        self.connections = 0
        self.draining = False  # set by the server on SIGTERM: /health answers 503 so balancers move on
        self.routes: dict[str, dict[str, Handler]] = {
            "/v1/fim": {"POST": self.fim},
            "/v1/cancel": {"POST": self.cancel},
            "/v1/completions": {"POST": self.openai_completions},
            "/infill": {"POST": self.infill},
            "/v1/info": {"GET": self.info},
            "/v1/models": {"GET": self.models},
            "/health": {"GET": self.health},
            "/metrics": {"GET": self.prometheus},
        }

    @property
    def inflight(self) -> int:
        """Completion requests being handled (from their size check to their reply)."""
        return sum(self.quota.inflight.values())

    # ---------------------------------------------------------------- dispatch

    def route(self, request: Request) -> tuple[Handler, str]:
        """The handler and the caller's identity, from the request head alone (ProtocolError: 404, 405, 401)."""
        methods = self.routes.get(request.path)
        if methods is None:
            raise ProtocolError(404, f"no route {request.path}")
        handler = methods.get(request.method)
        if handler is None:
            raise ProtocolError(405, f"{request.method} is not allowed on {request.path}; use {', '.join(methods)}")
        owner = "" if request.path == "/health" else self.authorize(request)
        if request.path in NATIVE_ROUTES and request.content_length > self.limits.native_body_bytes:
            raise ProtocolError(  # refused from the head: a prompt this long is never read, let alone parsed
                413,
                f"request body of {request.content_length} bytes exceeds the limit of "
                f"{self.limits.native_body_bytes} bytes on {request.path}: prefix + suffix may have at most "
                f"{self.limits.char_limit} characters; send a smaller window around the cursor",
            )
        return handler, owner

    def body_limit(self, request: Request) -> int:
        """Most body bytes `request`'s route reads (a chunked body is cut off there)."""
        if request.path in NATIVE_ROUTES:
            return min(self.config.max_body_bytes, self.limits.native_body_bytes)
        return self.config.max_body_bytes

    async def handle(self, request: Request, conn: Connection, route: tuple[Handler, str] | None = None) -> Response:
        t0 = time.perf_counter()
        endpoint = request.path if request.path in self.routes else "other"
        try:
            handler, owner = route or self.route(request)
            response = await handler(request, conn, owner)
        except ProtocolError as e:
            response = self.error(request.path, e.status, e.message, e.retry_after)
        except ClientGone:
            response = self.error(request.path, 499, "client closed the connection")
        except Cancelled as e:
            response = self.error(request.path, e.status, str(e), e.retry_after)
        except Exception as e:
            log.exception("request %s %s failed", request.method, request.path)
            response = self.error(request.path, 500, f"internal error: {type(e).__name__}: {e}")
        seconds = time.perf_counter() - t0 if endpoint in COMPLETION_ROUTES else None
        self.metrics.observe_request(endpoint, response.status, seconds)
        return response

    def error(self, path: str, status: int, message: str, retry_after: float | None = None) -> Response:
        body = error_body(status, message)
        headers = [("WWW-Authenticate", 'Bearer realm="diffill"')] if status == 401 else []
        if retry_after is not None:
            headers.append(("Retry-After", str(max(1, math.ceil(retry_after)))))  # whole seconds (RFC 9110 10.2.3)
        if path in NATIVE_ROUTES:
            return Response(status, pack(body), MSGPACK, headers)
        return Response(status, dump_json(body), JSON, headers)

    def authorize(self, request: Request) -> str:
        """The caller's identity for per-token accounting ("token-<i>"), never the token itself."""
        if not self._tokens:
            return "anonymous"
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        digest = _token_digest(presented.strip())
        match = -1
        for i, expected in enumerate(self._tokens):  # no early exit: every token is compared every time
            if hmac.compare_digest(digest, expected):
                match = i
        if scheme.lower() != "bearer" or match < 0:
            raise ProtocolError(401, "missing or invalid bearer token (Authorization: Bearer <token>)")
        return f"token-{match}"

    # ---------------------------------------------------------------- completion plumbing

    def prepare(self, request: CompletionRequest) -> Prompt:
        """Tokenize and lay out the prompt through the model's runner (exactly as LocalEngine does), then check the
        server's size limit on what the client sent."""
        prompt = self.engine.runner.prepare(request)
        if prompt.requested_tokens > self.limits.max_context:
            raise ProtocolError(
                422,
                f"context of {prompt.requested_tokens} tokens exceeds the server's limit of "
                f"{self.limits.max_context} tokens (--max-context); send a smaller window around the cursor",
            )
        return prompt

    async def complete(self, request: CompletionRequest, conn: Connection, owner: str) -> CompletionResult:
        request = self.limits.admit(request)  # lengths only: nothing big is ever tokenized
        with self.quota.slot(owner):
            prompt = await asyncio.to_thread(self.prepare, request)
            job = self.scheduler.submit(prompt, owner)
            return await self._wait(job, conn)

    async def _wait(self, job: Job, conn: Connection) -> CompletionResult:
        result = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(conn.wait_disconnect())
        try:
            done, _ = await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
            if result in done:
                return result.result()
            self.scheduler.cancel(job)
            raise ClientGone
        finally:
            if not result.done():
                result.cancel()  # cancels job.future too: the worker drops the job before its next step
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)  # the watcher must stop reading before we read

    # ---------------------------------------------------------------- routes

    async def fim(self, request: Request, conn: Connection, owner: str) -> Response:
        if request.content_type not in MSGPACK_TYPES:
            raise ProtocolError(415, f"/v1/fim takes {MSGPACK} bodies, got {request.content_type or 'none'!r}")
        creq = parse_native(decode_msgpack(request.body), self.limits)
        result = await self.complete(creq, conn, owner)
        return Response(200, pack(native_reply(creq.request_id, self.engine.name, result)), MSGPACK)

    async def cancel(self, request: Request, conn: Connection, owner: str) -> Response:
        data = decode_msgpack(request.body) if request.content_type in MSGPACK_TYPES else decode_json(request.body)
        job = self.scheduler.find(owner, get_str(data, "id"))
        if job is not None:
            self.scheduler.cancel(job)
        return Response(200, pack({"v": PROTOCOL_VERSION, "cancelled": job is not None}), MSGPACK)

    async def openai_completions(self, request: Request, conn: Connection, owner: str) -> Response:
        call = compat.parse_openai(self._json(request), self.limits)
        result = await self.complete(call.request, conn, owner)
        if call.stream:
            return _sse(compat.openai_stream_events(call, self.engine.name, result))
        return Response(200, dump_json(compat.openai_reply(call, self.engine.name, result)))

    async def infill(self, request: Request, conn: Connection, owner: str) -> Response:
        call = compat.parse_infill(self._json(request), self.limits)
        result = await self.complete(call.request, conn, owner)
        reply = compat.infill_reply(call, self.engine.name, result)
        return _sse([reply]) if call.stream else Response(200, dump_json(reply))

    def _json(self, request: Request) -> dict[str, Any]:
        if request.content_type not in ("", JSON):
            raise ProtocolError(415, f"{request.path} takes {JSON} bodies, got {request.content_type!r}")
        return decode_json(request.body)

    async def health(self, request: Request, conn: Connection, owner: str) -> Response:
        if self.draining:
            body = {"status": "draining", "ready": False, "model": self.engine.name}
            return Response(503, dump_json(body), headers=[("Retry-After", "1")])
        return Response(200, dump_json({"status": "ok", "ready": True, "model": self.engine.name}))

    def description(self) -> dict[str, Any]:
        """What clients size their requests by: the model, and the limits this server enforces."""
        info = self.engine.describe() | {"max_canvas": self.limits.max_canvas}
        return info | {
            "protocol": PROTOCOL_VERSION,
            "batching": self.scheduler.max_batch > 1,
            "max_candidates": self.limits.max_candidates,
            "max_steps": self.limits.max_steps,
            "max_request_context": self.limits.max_context,
            "max_request_chars": self.limits.char_limit,
            "max_body_bytes": self.config.max_body_bytes,
        }

    async def info(self, request: Request, conn: Connection, owner: str) -> Response:
        return Response(200, dump_json(self.description()))

    async def models(self, request: Request, conn: Connection, owner: str) -> Response:
        model = {"id": self.engine.name, "object": "model", "created": 0, "owned_by": "diffill"}
        return Response(200, dump_json({"object": "list", "data": [model]}))

    async def prometheus(self, request: Request, conn: Connection, owner: str) -> Response:
        sched = self.scheduler
        gauges = {
            "diffill_queue_depth": ("Requests waiting to join the batch.", sched.queue_depth),
            "diffill_active_requests": ("Requests in the running batch.", sched.active),
            "diffill_inflight_requests": ("Completion requests being handled.", self.inflight),
            "diffill_cache_bytes": ("Bytes held by context caches.", sched.sessions.nbytes),
            "diffill_cache_sessions": ("Sessions with a context cache.", sched.sessions.count),
            "diffill_open_connections": ("Open client connections.", self.connections),
        }
        return Response(200, self.metrics.render(gauges).encode(), "text/plain; version=0.0.4; charset=utf-8")


def _sse(events: list[Any]) -> Response:
    async def stream() -> AsyncIterator[bytes]:
        for event in events:
            yield b"data: " + (event.encode() if isinstance(event, str) else dump_json(event)) + b"\n\n"

    return Response(200, content_type="text/event-stream", stream=stream())
