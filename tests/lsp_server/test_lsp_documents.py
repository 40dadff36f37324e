"""Cursor location and document guards: encodings, line endings, clamping, word start, huge and binary text."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.workspace import PositionCodec

from lsp_server.documents import locate, rejection

TEXT = 'a = "\U0001f600x"\r\nfoo.bar\rlast\u2028line'


def at(line: int, character: int, encoding: str = "utf-16"):
    return locate(TEXT, types.Position(line=line, character=character), PositionCodec(encoding))


@pytest.mark.parametrize(
    ("encoding", "character", "offset", "client"),
    [("utf-16", 6, 6, 7), ("utf-16", 7, 6, 7), ("utf-8", 9, 6, 9), ("utf-32", 6, 6, 6), ("utf-16", 5, 5, 5)],
    ids=["inside-pair-rounds-up", "after-emoji", "utf8-bytes", "utf32-code-points", "before-emoji"],
)
def test_columns_are_read_in_the_negotiated_encoding(encoding, character, offset, client):
    cursor = at(0, character, encoding)
    assert (cursor.offset, cursor.position.character) == (offset, client)


def test_lines_end_only_at_lsp_line_breaks():
    assert TEXT[at(1, 7).offset] == "\r"  # "foo.bar" then a lone CR
    assert at(2, 0).offset == TEXT.index("last")  # U+2028 does not end a line in LSP
    assert at(3, 0) is None


def test_a_column_past_the_end_clamps_to_the_line_end():
    cursor = at(1, 99)
    assert cursor.position == types.Position(line=1, character=7)
    assert TEXT[cursor.offset] == "\r"


def test_the_word_before_the_cursor_is_found():
    cursor = at(1, 7)
    assert cursor.word == "bar" and cursor.word_start == types.Position(line=1, character=4)
    assert at(1, 4).word == ""


def test_huge_and_binary_documents_are_rejected():
    assert rejection("x" * 10, max_bytes=10) is None
    assert "larger" in rejection("x" * 11, max_bytes=10)
    assert "larger" in rejection("é" * 6, max_bytes=10)  # 12 bytes in UTF-8
    assert "binary" in rejection("a\0b", max_bytes=10)


@pytest.mark.parametrize("text", ["", "a", "a\n", "ab\ncd\n\nef", "\n\n"])
def test_lf_only_and_crlf_documents_locate_the_same_lines(text):
    codec = PositionCodec("utf-16")
    for line in range(text.count("\n") + 2):
        lf = locate(text, types.Position(line=line, character=1), codec)
        crlf = locate(text.replace("\n", "\r\n"), types.Position(line=line, character=1), codec)
        assert (lf is None) == (crlf is None) == (line > text.count("\n"))
        if lf is not None:
            assert lf.word == crlf.word and lf.position == crlf.position and lf.offset == crlf.offset - line
