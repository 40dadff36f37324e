"""``RemoteEngine``: the ``CompletionEngine`` protocol over the network, talking to ``diffill serve``.

Same protocol as ``LocalEngine`` (``engine.contract.CompletionEngine``), so the language server switches between an
in-process model and a shared GPU box by configuration only. The box keeps each session's context cache warm and
evicts it by its own LRU, so ``forget`` has nothing to send; token counts are ``fim``'s estimate because the
tokenizer lives on the box. It speaks the native protocol (msgpack over
HTTP/1.1, see docs/serving.md) with the standard library's ``http.client``: keep-alive connections are pooled and
reused across calls and threads; a pooled connection the server has meanwhile closed is retried once on a fresh
one (a completion is a pure function of its request, so repeating it is safe).

Every failure is a ``RemoteError`` (a ``DiffillError``) whose message says what to do: connection refused,
unknown host, TLS failure, timeout, 401 (token), 413/422 (request too large), 429 (too many concurrent requests),
5xx, or a reply that is not what the protocol promises. ``status`` holds the HTTP status when there was one.
A timed-out call closes its connection, which makes the server drop the request between two steps.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgpack

from engine.contract import Completion, CompletionStats, ContextChunk, SampleOptions, check_chunks
from engine.errors import DiffillError
from engine.serve.protocol import MSGPACK, native_request, parse_native_reply
from fim.request import approx_tokens  # torch-free

_HINTS = {
    400: "the server could not read the request",
    401: "the server refused the token (check the configured remote token)",
    403: "the server refused the token",
    404: "no such endpoint (is this a diffill server?)",
    413: "the request is larger than the server accepts",
    415: "the server did not accept the body's format",
    422: "the request exceeds the server's limits",
    429: "too many requests for this token; retry after the server's Retry-After",
    499: "the request was cancelled",
    503: "the server is overloaded or stopping; retry later",
}


class RemoteError(DiffillError):
    """A remote completion failed; `status` is the HTTP status when the server answered, `retry_after` the seconds
    its ``Retry-After`` header asked to wait (429, 503) -- a caller that retries should wait that long first."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RemoteEngine:
    """A ``diffill serve`` endpoint. Thread-safe; each call holds one pooled connection for its duration."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        ca_file: str | None = None,
        verify_tls: bool = True,
        max_idle_connections: int = 4,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"invalid remote URL {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._scheme, self._host = parts.scheme, parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self._ssl = self._ssl_context(ca_file, verify_tls) if parts.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle_connections
        self._health: tuple[float, bool] = (0.0, False)
        self._last_stats: CompletionStats | None = None

    @staticmethod
    def _ssl_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=ca_file)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def __repr__(self) -> str:
        return f"RemoteEngine({self.url!r}, token={'***' if self.token else None})"

    # ---------------------------------------------------------------- CompletionEngine protocol

    @property
    def ready(self) -> bool:
        """Whether the server answers its health check (cached for 2 s; never raises)."""
        checked, ok = self._health
        if time.monotonic() - checked < 2.0:
            return ok
        try:
            status, _, body, _ = self._request("GET", "/health", timeout=min(self.timeout, 2.0))
            ok = status == 200 and bool(json.loads(body).get("ready"))
        except (RemoteError, ValueError, AttributeError):
            ok = False
        self._health = (time.monotonic(), ok)
        return ok

    def describe(self) -> dict[str, Any]:
        """The server's model and limits (``max_context``, ``max_canvas`` ...), plus ``remote``: the URL."""
        status, ctype, body, retry_after = self._request("GET", "/v1/info")
        self._check(status, ctype, body, retry_after)
        try:
            info = json.loads(body)
        except ValueError as e:
            raise RemoteError(f"malformed reply from {self.url}/v1/info: {e}") from None
        if not isinstance(info, dict):
            raise RemoteError(f"malformed reply from {self.url}/v1/info: expected a JSON object")
        return info | {"remote": self.url}

    @property
    def last_stats(self) -> CompletionStats | None:
        """The stats the box reported for the last completed request."""
        return self._last_stats

    def count_tokens(self, text: str) -> int:
        """fim's estimate (the box holds the tokenizer; a network round trip per count would be too slow)."""
        return approx_tokens(text)

    def forget(self, session_id: str) -> None:
        """Nothing to send: the box evicts idle sessions by its own LRU byte budget."""

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
        request = native_request(
            prefix,
            suffix,
            language=language,
            canvas_length=canvas_length,
            num_candidates=num_candidates,
            options=options,
            session_id=session_id,
            request_id=secrets.token_hex(8),
            chunks=check_chunks(chunks),
        )
        body = msgpack.packb(request, use_bin_type=True)
        status, ctype, reply, retry_after = self._request("POST", "/v1/fim", body=body, content_type=MSGPACK)
        self._check(status, ctype, reply, retry_after)
        try:
            result = parse_native_reply(msgpack.unpackb(reply, raw=False))
        except Exception as e:  # msgpack's decode errors have no common base besides Exception
            raise RemoteError(f"malformed reply from {self.url}/v1/fim: {e}") from None
        self._last_stats = result.stats
        return result.completions

    def close(self) -> None:
        """Close the pooled connections (the engine stays usable; a later call opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- transport

    def _connect(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, str, bytes, float | None]:
        """(status, content type, body, Retry-After seconds) of one exchange; transport failures become RemoteError."""
        headers = {"Accept": f"{MSGPACK}, application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(2):
            conn, reused = self._acquire()
            if timeout is not None:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                conn.request(method, self._base + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: retry on a fresh one
                raise RemoteError(f"{self.url} closed the connection: {e}") from None
            except BaseException as e:
                conn.close()
                raise self._transport_error(e) from None
            if timeout is not None:
                conn.timeout = self.timeout
                if conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
            if response.will_close:
                conn.close()
            else:
                self._release(conn)
            ctype = response.getheader("Content-Type", "") or ""
            return response.status, ctype, data, _retry_after(response.getheader("Retry-After"))
        raise AssertionError("unreachable")

    def _transport_error(self, e: BaseException) -> BaseException:
        if isinstance(e, ConnectionRefusedError):
            return RemoteError(f"cannot connect to {self.url}: connection refused (is `diffill serve` running there?)")
        if isinstance(e, socket.gaierror):
            return RemoteError(f"cannot resolve the host of {self.url}: {e}")
        if isinstance(e, TimeoutError):
            return RemoteError(f"no reply from {self.url} within {self.timeout:g} s")
        if isinstance(e, ssl.SSLError):
            return RemoteError(f"TLS error talking to {self.url}: {e}")
        if isinstance(e, http.client.HTTPException):
            return RemoteError(f"malformed reply from {self.url}: {type(e).__name__}: {e}")
        if isinstance(e, OSError):
            return RemoteError(f"cannot reach {self.url}: {e}")
        return e  # KeyboardInterrupt and friends go up unchanged

    def _check(self, status: int, content_type: str, body: bytes, retry_after: float | None = None) -> None:
        if status == 200:
            return
        hint = _HINTS.get(status, "server error" if status >= 500 else "request refused")
        message = f"{self.url}: {hint} ({status}): {_server_message(content_type, body)}"
        raise RemoteError(message, status=status, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the server sends delta-seconds; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _server_message(content_type: str, body: bytes) -> str:
    """The ``error.message`` of an error reply (msgpack or JSON), else the start of the body."""
    try:
        data = msgpack.unpackb(body, raw=False) if MSGPACK in content_type else json.loads(body)
        message = data["error"]["message"]
        if isinstance(message, str):
            return message
    except Exception:
        pass
    return body[:200].decode("utf-8", "replace") or "(empty reply)"
