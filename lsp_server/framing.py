"""LSP base protocol framing that survives bad input: `Content-Length` headers, a size cap, resynchronisation.

pygls's reader trusts the stream: one wrong `Content-Length` (too large, too small, not a number, a lower-case
header name) leaves it waiting for a body that never comes or reading bodies out of step, alive but never
answering again, and `Content-Length: 99999999999` makes it allocate until MemoryError. An editor cannot tell
such a server from a busy one, so it never restarts it. This reader instead:

- accepts header names in any case (they are HTTP-style, RFC 9110 §5.1) and ignores headers it does not know;
- caps a message at `MAX_MESSAGE_BYTES` (editors send whole files, and larger files get no completions anyway);
- after any bad header, oversized message or a body that is not JSON, logs one line and resynchronises on the
  next `Content-Length:` header line. That is safe because a JSON body can never contain that header: raw CR/LF
  cannot occur inside JSON strings and bare words cannot occur outside them;
- a body that holds a complete JSON value followed by more bytes (a `Content-Length` that was too large) is
  read as that value, and the extra bytes go back to the stream: they are the start of the next message.

Memory stays bounded by the cap: lines are read at most `MAX_LINE_BYTES` at a time, and nothing is buffered while
skipping. `Frame` carries the decoded value and, when something was wrong with it, the reason (invalid UTF-8 is
decoded with replacement characters so the message id can still be answered). Torch-free and pygls-free.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

__all__ = ["MAX_MESSAGE_BYTES", "Frame", "FrameReader", "Source", "StdinSource", "StreamSource"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 << 20  # 16 MiB: 8x the default limits.maxFileBytes, JSON escaping included
MAX_LINE_BYTES = 64 << 10  # header lines are short; longer "lines" are garbage read in bounded pieces
_CARRY = 64  # bytes kept from a piece without a newline, so a header split across two pieces is still found
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n\Z", re.IGNORECASE)
_HEADER = re.compile(rb"[A-Za-z0-9-]+[ \t]*:[^\r\n]*\r?\n\Z")
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\r\n]*")


class Source(Protocol):
    """Where bytes come from: `readline(limit)` returns at most `limit` bytes, ending at a newline unless the
    limit or the end of the stream came first; `read(n)` returns `n` bytes, fewer only at the end."""

    def readline(self, limit: int) -> Awaitable[bytes]: ...

    def read(self, n: int) -> Awaitable[bytes]: ...


class StdinSource:
    """A blocking binary stream (stdin), read in an executor thread so the event loop stays free."""

    def __init__(self, stream: BinaryIO, executor: Executor | None = None) -> None:
        self._stream, self._executor = stream, executor

    def _run(self, call: Callable[[int], bytes], size: int) -> Awaitable[bytes]:
        return asyncio.get_running_loop().run_in_executor(self._executor, call, size)

    def readline(self, limit: int) -> Awaitable[bytes]:
        return self._run(self._stream.readline, limit)

    def read(self, n: int) -> Awaitable[bytes]:
        return self._run(self._stream.read, n)


class StreamSource:
    """An `asyncio.StreamReader` (a TCP client)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def readline(self, limit: int) -> bytes:
        try:
            return await self._stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end of the stream
            return exc.partial
        except asyncio.LimitOverrunError as exc:  # no newline within the reader's own limit: take a piece
            return await self._stream.readexactly(max(1, min(exc.consumed, limit)))

    async def read(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            return exc.partial


@dataclass(frozen=True)
class Frame:
    message: Any  # the decoded JSON value; None when the body was not JSON
    problem: str | None = None  # what was wrong with the body, if anything


class FrameReader:
    """Messages from a byte source, one `Frame` per `next()`; None at the end of the stream."""

    def __init__(self, source: Source, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._pending = b""  # bytes read past a message's end, consumed before the source
        self._reported = False  # a bad body was logged: the rest of it, up to the next header, is skipped quietly

    async def next(self) -> Frame | None:
        while True:
            length = await self._content_length()
            if length is None:
                return None
            body = await self._read(length)
            if len(body) < length:
                log.error("the stream ended inside a message (%d of %d bytes)", len(body), length)
                return None
            frame = self._decode(body)
            if frame is not None:
                return frame

    # -- headers ----------------------------------------------------------------------------------------------

    async def _content_length(self) -> int | None:
        """The length from the next valid header block, skipping (and logging once) everything that is not one."""
        length: int | None = None  # set by a valid Content-Length: the block ends at the next blank line
        skipped, carry, reported = 0, b"", self._reported
        self._reported = False
        while True:
            piece = await self._readline()
            if not piece:
                if skipped and not reported:
                    log.error("skipped %d bytes that were not an LSP message before the end of the stream", skipped)
                return None
            if length is not None:
                if not piece.strip():
                    return length
                if _HEADER.fullmatch(piece):
                    continue  # Content-Type or another header: nothing to do
                log.error("malformed header line %r; skipping to the next message", piece[:80])
                length, skipped, reported = None, len(piece), True
                continue
            line = carry + piece
            match = _CONTENT_LENGTH.search(line)
            if match is None:
                skipped += len(piece) if piece.strip() else 0  # blank lines between messages are harmless
                carry = b"" if piece.endswith(b"\n") else line[-_CARRY:]
                continue
            garbage = skipped - len(carry) + match.start()  # bytes before this header
            if garbage > 0 and not reported:
                log.error("skipped %d bytes that were not an LSP message", garbage)
            skipped, carry, reported = 0, b"", False
            length = self._length(match.group(1))
            reported = length is None  # the bad header was logged; the body it announced is skipped quietly

    def _length(self, raw: bytes) -> int | None:
        value = raw.decode("ascii", "replace")
        if not raw.isdigit():
            log.error("invalid Content-Length %r; skipping to the next message", value[:40])
            return None
        length = int(raw)
        if length > self._max_bytes:
            log.error(
                "message of %d bytes is over the %d MiB limit; skipping to the next message",
                length,
                self._max_bytes >> 20,
            )
            return None
        return length

    # -- body -------------------------------------------------------------------------------------------------

    def _decode(self, body: bytes) -> Frame | None:
        problem = None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            text, problem = body.decode("utf-8", "replace"), f"the message is not valid UTF-8 ({exc.reason})"
        start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]  # always matches
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            log.error("a message body is not JSON (%s at position %d); skipping it", exc.msg, exc.pos)
            self._reported = True
            return None
        rest = text[end:]
        if rest.strip():
            if problem is None:  # the Content-Length was too large: the rest starts the next message
                self._pending = rest.lstrip(" \t\r\n").encode("utf-8") + self._pending
            log.error("Content-Length was %d bytes too large; reading on after the message", len(rest.encode()))
        return Frame(value, problem)

    # -- reading ----------------------------------------------------------------------------------------------

    async def _readline(self) -> bytes:
        if self._pending:
            end = self._pending.find(b"\n", 0, MAX_LINE_BYTES)
            if end >= 0 or len(self._pending) >= MAX_LINE_BYTES:
                cut = end + 1 if end >= 0 else MAX_LINE_BYTES
                line, self._pending = self._pending[:cut], self._pending[cut:]
                return line
            head, self._pending = self._pending, b""
            return head + await self._source.readline(MAX_LINE_BYTES - len(head))
        return await self._source.readline(MAX_LINE_BYTES)

    async def _read(self, n: int) -> bytes:
        head, self._pending = self._pending[:n], self._pending[n:]
        if len(head) == n:
            return head
        return head + await self._source.read(n - len(head))
