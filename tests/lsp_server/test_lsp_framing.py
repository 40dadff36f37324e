"""Framing: every kind of bad header or body is skipped, and the message after it is read intact."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from lsp_server.framing import MAX_LINE_BYTES, FrameReader, StdinSource, StreamSource


def frame(message: object, length_delta: int = 0, header: bytes = b"Content-Length") -> bytes:
    body = json.dumps(message).encode()
    return header + b": %d\r\n\r\n" % (len(body) + length_delta) + body


NEXT = {"jsonrpc": "2.0", "id": 7, "method": "next"}


async def read_all(data: bytes) -> list:
    reader = FrameReader(StdinSource(io.BytesIO(data)))
    frames = []
    while (got := await reader.next()) is not None:
        frames.append(got)
    return frames


async def messages(data: bytes) -> list:
    return [got.message for got in await read_all(data)]


async def test_well_formed_messages_with_extra_headers_are_read_in_order():
    content_type = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
    body = json.dumps({"a": "é"}).encode()
    data = b"Content-Length: %d\r\n%s\r\n%s" % (len(body), content_type, body) + frame(NEXT)
    assert await messages(data) == [{"a": "é"}, NEXT]


async def test_header_names_are_case_insensitive():
    assert await messages(frame({"x": 1}, header=b"content-length") + frame(NEXT)) == [{"x": 1}, NEXT]


@pytest.mark.parametrize(
    "bad",
    [
        b'Content-Length: abc\r\n\r\n{"x": 1}',  # not a number
        b'Content-Length: -3\r\n\r\n{"x": 1}',  # negative
        b'Content-Length: 99999999999\r\n\r\n{"x": 1}',  # over the cap: never allocated
        frame({"x": 1}, length_delta=-3),  # too small: the body is cut, its tail looks like garbage
        b"Content-Length: 0\r\n\r\n",  # empty body
        b"Content-Length: 5\r\nX-Bad header line\r\n\r\n{}",  # a line that is no header
        b"garbage without any header\r\n\r\n",
        b"x" * (3 * MAX_LINE_BYTES + 17),  # a huge line, read in bounded pieces
        b"[1, 2",  # no header at all, no newline
    ],
)
async def test_a_bad_frame_is_skipped_and_the_next_message_is_read(bad):
    assert (await messages(bad + frame(NEXT)))[-1:] == [NEXT]


async def test_a_header_split_across_two_bounded_reads_is_still_found():
    filler = b"y" * (MAX_LINE_BYTES - 6)  # the first piece ends inside "Content-Length"
    assert await messages(filler + frame(NEXT)) == [NEXT]


async def test_a_too_large_length_within_the_cap_reads_the_message_and_hands_the_rest_on():
    first = {"jsonrpc": "2.0", "id": 1, "method": "first"}
    data = frame(first, length_delta=20) + frame(NEXT)
    assert await messages(data) == [first, NEXT]


async def test_invalid_utf8_is_decoded_with_a_problem_so_the_id_can_be_answered():
    body = b'{"jsonrpc": "2.0", "id": 3, "method": "m", "params": {"text": "\xff\xfe"}}'
    data = b"Content-Length: %d\r\n\r\n%s" % (len(body), body) + frame(NEXT)
    bad, good = await read_all(data)
    assert bad.message["id"] == 3 and "UTF-8" in bad.problem
    assert good.message == NEXT and good.problem is None


async def test_the_stream_ending_inside_a_message_ends_the_reader():
    assert await messages(frame(NEXT) + b"Content-Length: 100\r\n\r\n{") == [NEXT]


async def test_an_asyncio_stream_is_read_the_same_way():
    stream = asyncio.StreamReader(limit=1024)
    stream.feed_data(b"z" * 5000 + frame({"x": 1}, header=b"CONTENT-LENGTH") + frame(NEXT))
    stream.feed_eof()
    reader = FrameReader(StreamSource(stream))
    assert [(await reader.next()).message, (await reader.next()).message, await reader.next()] == [{"x": 1}, NEXT, None]
