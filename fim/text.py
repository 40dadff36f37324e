"""Offsets between the three ways positions are counted: LSP UTF-16 columns, string indices, UTF-8 bytes.

LSP counts a line's characters in UTF-16 code units (an emoji outside the Basic Multilingual Plane is two
units, one Python character) and ends lines at "\\n", "\\r\\n" or "\\r"; tree-sitter counts UTF-8 bytes;
Python slices by code point. Every conversion lives here so the rest of `fim` slices strings safely.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from itertools import accumulate

__all__ = [
    "LINE_BREAK",
    "OffsetMap",
    "index_to_utf16",
    "line_starts",
    "utf16_to_index",
]

LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line breaks LSP knows


def line_starts(text: str) -> list[int]:
    """String index where each line begins; a text with n line breaks has n + 1 lines (LSP rules)."""
    return [0, *(match.end() for match in LINE_BREAK.finditer(text))]


def offset_at(text: str, line: int, column: int) -> int | None:
    """String index of (0-based line, column in characters); a column past the line's end clamps to the end.
    None when the line is not in the text or either value is negative."""
    starts = line_starts(text)
    if not 0 <= line < len(starts) or column < 0:
        return None
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    return starts[line] + min(column, len(text[starts[line] : end].rstrip("\r\n")))


def _utf8_width(char: str) -> int:
    code = ord(char)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _utf16_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def utf16_to_index(line_text: str, character: int) -> int:
    """String index of a UTF-16 column in one line; past the end clamps to the end (LSP spec).

    A column pointing between the two halves of a surrogate pair is rounded up past the character, which is
    what editors do with a cursor that cannot sit inside a glyph.
    """
    if character <= 0:
        return 0
    if line_text.isascii():
        return min(character, len(line_text))
    units = 0
    for index, char in enumerate(line_text):
        if units >= character:
            return index
        units += _utf16_units(char)
    return len(line_text)


def index_to_utf16(line_text: str, index: int) -> int:
    """UTF-16 column of a string index in one line (index clamped to the line)."""
    index = max(0, min(index, len(line_text)))
    prefix = line_text[:index]
    if prefix.isascii():
        return index
    return index + sum(1 for char in prefix if ord(char) > 0xFFFF)


@dataclass(frozen=True)
class OffsetMap:
    """Character <-> UTF-8 byte offsets of one text; O(n) to build, O(log n) per lookup for non-ASCII text."""

    text: str
    data: bytes
    # Byte offset where each character starts, plus len(data) at the end; None when text is ASCII (identity).
    char_bytes: tuple[int, ...] | None

    @classmethod
    def of(cls, text: str) -> OffsetMap:
        # surrogatepass: a lone surrogate (possible in editor buffers) becomes 3 bytes, not an exception.
        data = text.encode("utf-8", "surrogatepass")
        if len(data) == len(text):
            return cls(text, data, None)
        return cls(text, data, tuple(accumulate(map(_utf8_width, text), initial=0)))

    def to_byte(self, index: int) -> int:
        return index if self.char_bytes is None else self.char_bytes[index]

    def to_char(self, byte: int) -> int:
        """Character index of a byte offset; a byte inside a multi-byte character maps to that character."""
        if self.char_bytes is None:
            return byte
        return bisect.bisect_right(self.char_bytes, byte) - 1
