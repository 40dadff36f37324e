"""A small HTTP/1.1 layer on asyncio streams: just what ``diffill serve`` needs, nothing it does not.

Why not a framework: the server has five routes, one body format per route and one long-running operation; the
standard library keeps the dependency list at zero and every limit explicit. Supported: keep-alive (HTTP/1.1
default, ``Connection: close``), ``Content-Length`` and chunked request bodies, ``Expect: 100-continue``,
fixed-length responses and chunked streaming responses (server-sent events). Not supported: pipelined requests
are read one after another, never in parallel; no HTTP/2, no compression.

``Connection`` keeps its own read buffer so that, while a request is being computed, the server can watch the
socket for the client going away (EOF) without losing bytes of a next request the client may already have sent.
Every read has a deadline, so a slow or silent client only ever holds its own connection, and only briefly before
its first request: a new connection must deliver a request head within ``header_timeout`` of connecting. The head
and the body are read in two calls (``read_head``, ``read_body``) so that the server can refuse a request (route,
token) before accepting any of its body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100


class HttpError(Exception):
    """A request that cannot be parsed or accepted; answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str, path: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path  # the request's path when the head was read, for the error's format and metrics
        self.retry_after = retry_after


@dataclass
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    @property
    def content_length(self) -> int:
        """The declared body length (0 when absent; a chunked body's length is known only once it is read)."""
        try:
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "invalid Content-Length", self.path) from None
        if length < 0:
            raise HttpError(400, "invalid Content-Length", self.path)
        return length

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None  # sent with chunked transfer encoding instead of `body`
    close: bool = False  # close the connection after this response


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 4 * 2**20
    # To read a request's head: from connecting for the first request (a silent socket holds its slot no longer),
    # from its first byte on a kept-alive connection. A real client sends its head in one packet.
    header_timeout: float = 10.0
    idle_timeout: float = 120.0  # keep-alive: how long a connection that was served may idle
    body_timeout: float = 30.0  # to read a body once its head was accepted (route and token checked)
    write_timeout: float = 60.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: HttpLimits) -> None:
        self.reader, self.writer, self.limits = reader, writer, limits
        self.buf = bytearray()
        self.eof = False
        self.requests = 0  # heads read so far
        self.opened = asyncio.get_running_loop().time()

    @property
    def peer(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    @property
    def ip(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)

    def abort(self) -> None:
        """Close without waiting (to free the slot of a connection waiting for a request): at once when nothing is
        left to write, else once the last reply is flushed."""
        transport = self.writer.transport
        if transport.get_write_buffer_size():
            transport.close()
        else:
            transport.abort()

    async def _fill(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            self.eof = True
        self.buf += data

    async def _read_until(self, marker: bytes, limit: int, timeout: float | None) -> bytes | None:
        """Bytes up to and including `marker`; None on EOF before any byte; HttpError past `limit`."""
        async with asyncio.timeout(timeout):
            while (end := self.buf.find(marker)) < 0:
                if len(self.buf) > limit:
                    raise HttpError(431, "request head too large")  # and its end is not even in sight
                if self.eof:
                    if self.buf:
                        raise HttpError(400, "connection closed in the middle of a request")
                    return None
                await self._fill()
        if end > limit:
            raise HttpError(431, "request head too large")
        out = bytes(self.buf[: end + len(marker)])
        del self.buf[: end + len(marker)]
        return out

    async def _read_exactly(self, n: int, timeout: float) -> bytes:
        async with asyncio.timeout(timeout):
            while len(self.buf) < n:
                if self.eof:
                    raise HttpError(400, "connection closed in the middle of a request body")
                await self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_head(self) -> Request | None:
        """The next request's head (no body yet); None when the client closed, idled out between requests, or
        never sent a byte of its first request in time."""
        loop = asyncio.get_running_loop()
        if self.requests:
            try:
                async with asyncio.timeout(self.limits.idle_timeout):
                    while not self.buf and not self.eof:
                        await self._fill()
            except TimeoutError:
                return None
            deadline = loop.time() + self.limits.header_timeout
        else:
            deadline = self.opened + self.limits.header_timeout
        try:
            async with asyncio.timeout_at(deadline):
                head = await self._read_until(b"\r\n\r\n", MAX_HEADER_BYTES, None)
        except TimeoutError:
            if not self.buf:
                return None  # a silent socket: nobody to answer
            raise HttpError(408, "timed out reading the request head") from None
        if head is None:
            return None
        self.requests += 1
        return parse_head(head)

    async def read_body(self, request: Request, limit: int | None = None) -> None:
        """Read `request`'s body into ``request.body`` (within `limit` bytes, by default the body limit, and the
        body timeout)."""
        try:
            request.body = await self._read_body(request, self.limits.max_body_bytes if limit is None else limit)
        except HttpError as e:
            e.path = request.path
            raise

    async def _read_body(self, request: Request, limit: int) -> bytes:
        headers = request.headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunked(limit)
        length = request.content_length
        if length > limit:
            raise HttpError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
        if length and headers.get("expect", "").lower() == "100-continue":
            await self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            return await self._read_exactly(length, self.limits.body_timeout)
        except TimeoutError:
            raise HttpError(408, "timed out reading the request body") from None

    async def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        try:
            while True:
                line = await self._read_until(b"\r\n", 1024, self.limits.body_timeout)
                if line is None:
                    raise HttpError(400, "connection closed in the middle of a chunked body")
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HttpError(400, "invalid chunk size") from None
                if size == 0:
                    await self._skip_trailers()
                    return bytes(body)
                if len(body) + size > limit:
                    raise HttpError(413, f"request body exceeds the limit of {limit} bytes")
                body += (await self._read_exactly(size + 2, self.limits.body_timeout))[:-2]
        except TimeoutError:
            raise HttpError(408, "timed out reading the request body") from None

    async def _skip_trailers(self) -> None:
        while True:
            line = await self._read_until(b"\r\n", 4096, self.limits.body_timeout)
            if line in (b"\r\n", None):
                return

    async def wait_disconnect(self) -> None:
        """Return when the client closes its side; bytes it sends meanwhile stay buffered for the next request."""
        while not self.eof:
            if len(self.buf) > MAX_HEADER_BYTES + self.limits.max_body_bytes:
                await asyncio.Event().wait()  # a client flooding us: stop reading, wait to be cancelled
            await self._fill()

    async def discard_input(self, seconds: float) -> None:
        """Half-close, then drop what the client still sends until it closes or `seconds` pass (lingering
        close: closing with unread input would reset the connection and could destroy the reply in flight)."""
        with contextlib.suppress(OSError):  # ENOTCONN: the client already shut the connection down
            if self.writer.can_write_eof():
                self.writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self.eof:
                    self.buf.clear()
                    await self._fill()

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(self.limits.write_timeout):
            await self.writer.drain()

    async def send(self, response: Response, keep_alive: bool) -> None:
        reason = _reason(response.status)
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if not keep_alive or response.close:
            lines.append("Connection: close")
        if response.stream is None:
            lines.append(f"Content-Length: {len(response.body)}")
            await self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
            return
        lines += ["Transfer-Encoding: chunked", "Cache-Control: no-cache"]
        await self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        async for chunk in response.stream:
            if chunk:
                await self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await self._write(b"0\r\n\r\n")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Unknown"


def parse_head(head: bytes) -> Request:
    """Request line and headers (``head`` ends with a blank line) -> Request without a body."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise HttpError(400, "undecodable request head") from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if not method.isalpha() or not target.startswith("/"):
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:80]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if "content-length" in headers and "transfer-encoding" in headers:
        raise HttpError(400, "both Content-Length and Transfer-Encoding")  # request smuggling guard (RFC 9112 6.3)
    path, _, query = target.partition("?")
    return Request(method=method.upper(), path=path, query=query, version=version, headers=headers)
