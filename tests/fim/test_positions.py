"""LSP positions: UTF-16 columns, LSP line breaks, clamping, and the cursor offset of a request."""

from __future__ import annotations

import pytest

from fim.request import PositionError, build_request
from fim.text import OffsetMap, index_to_utf16, line_starts, offset_at, utf16_to_index

EMOJI_LINE = "s = '🙂🎉' + x"  # each emoji is one str character, two UTF-16 units
CJK_LINE = "名前 = '漢字' + x"  # CJK in the BMP: one character, one unit


@pytest.mark.parametrize(
    ("character", "index"),
    [(0, 0), (5, 5), (7, 6), (9, 7), (10, 8), (14, 12), (99, 12)],
)
def test_utf16_columns_map_to_indices_across_surrogate_pairs(character: int, index: int) -> None:
    assert utf16_to_index(EMOJI_LINE, character) == index


def test_a_column_inside_a_surrogate_pair_rounds_past_the_emoji() -> None:
    assert utf16_to_index(EMOJI_LINE, 6) == 6  # between the halves of 🙂 -> after it


def test_cjk_columns_are_one_unit_per_character() -> None:
    for index in range(len(CJK_LINE) + 1):
        assert utf16_to_index(CJK_LINE, index) == index
        assert index_to_utf16(CJK_LINE, index) == index


@pytest.mark.parametrize("line", [EMOJI_LINE, CJK_LINE, "", "plain ascii"])
def test_index_to_utf16_inverts_utf16_to_index(line: str) -> None:
    for index in range(len(line) + 1):
        assert utf16_to_index(line, index_to_utf16(line, index)) == index


def test_lines_end_at_lf_crlf_and_cr_as_in_lsp() -> None:
    assert line_starts("a\nb\r\nc\rd") == [0, 2, 5, 7]
    assert line_starts("") == [0]
    assert line_starts("x\n") == [0, 2]


def test_offset_map_converts_characters_and_utf8_bytes() -> None:
    text = "a🙂漢b"
    offsets = OffsetMap.of(text)
    assert [offsets.to_byte(i) for i in range(len(text) + 1)] == [0, 1, 5, 8, 9]
    assert [offsets.to_char(b) for b in (0, 1, 5, 8, 9)] == [0, 1, 2, 3, 4]
    assert OffsetMap.of("ascii").to_char(3) == 3


def test_emoji_column_gives_the_cursor_offset_and_split() -> None:
    text = f"x = 1\n{EMOJI_LINE}\n"
    request = build_request(text, 6 + utf16_to_index(EMOJI_LINE, 9), "python")  # after '🙂🎉
    assert request.cursor_offset == 6 + 7
    assert request.prefix.endswith("'🙂🎉")
    assert request.suffix.startswith("' + x")


def test_crlf_document_keeps_its_line_breaks_and_columns() -> None:
    text = "def f():\r\n    名 = '🙂'\r\n    return 名\r\n"
    request = build_request(text, text.index("🙂") + 1, "python")  # after the emoji, before the closing quote
    assert request.prefix == "def f():\r\n    名 = '🙂"
    assert request.suffix == "'\r\n    return 名\r\n"
    assert request.prefix + request.suffix == text
    assert text[request.cursor_offset :] == request.suffix


def test_an_offset_inside_a_crlf_break_is_the_end_of_its_line() -> None:
    text = "ab\r\ncd"
    request = build_request(text, 3, "python")
    assert request.cursor_offset == 2
    assert request.prefix == "ab" and request.suffix == "\r\ncd"


def test_an_offset_outside_the_text_raises_position_error() -> None:
    with pytest.raises(PositionError):
        build_request("a\nb", 4, "python")
    with pytest.raises(ValueError):
        build_request("a", -1, "python")


def test_offset_at_counts_characters_and_clamps_to_the_line_end() -> None:
    text = "ab\r\n🙂c\rlast"
    assert offset_at(text, 1, 1) == 5 and offset_at(text, 1, 9) == 6 and offset_at(text, 2, 0) == 7
    assert offset_at(text, 3, 0) is None and offset_at(text, -1, 0) is None


def test_empty_file_gives_an_empty_window() -> None:
    request = build_request("", 0, "python")
    assert (request.prefix, request.suffix, request.cursor_offset, request.indent) == ("", "", 0, "")


def test_cursor_at_start_and_end_of_file() -> None:
    text = "x = 1\ny = 2"
    start = build_request(text, 0, "python")
    assert (start.prefix, start.suffix, start.cursor_offset) == ("", text, 0)
    end = build_request(text, len(text), "python")
    assert (end.prefix, end.suffix, end.cursor_offset) == (text, "", len(text))
    after_last_break = build_request(text + "\n", len(text) + 1, "python")
    assert after_last_break.cursor_offset == len(text) + 1
