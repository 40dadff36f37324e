"""Text-level post-processing of one candidate: line limits, re-indentation, block ends, suffix overlap.

All functions are pure and work on "\\n"-separated text (the validator normalises line endings first). They
propose; tree-sitter disposes: `cut_points` lists the truncations worth checking, longest first, and the
validator keeps the first that adds no syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fim.layout import CLOSERS, DEFAULT_UNIT, BlockSyntax, indent_unit, indent_width, make_indent

__all__ = [
    "Layout",
    "block_end_variants",
    "cut_points",
    "drop_overlap",
    "drop_repeated_lines",
    "limit_lines",
    "reindent",
]

# A line made only of closing brackets and punctuation ends the block it dedents out of: `}`, `});`, `],`.
_CLOSER_LINE = re.compile(r"[)\]}]+[;,)]*")


@dataclass(frozen=True)
class Layout:
    """What post-processing knows about the cursor: text before it on its line, indent unit, block syntax."""

    line_before: str
    unit: str
    syntax: BlockSyntax

    @classmethod
    def learn(cls, line_before: str, file_unit: str | None, candidate: str, syntax: BlockSyntax) -> Layout:
        """The file's indent unit when it shows one, else the one the candidate itself uses."""
        cursor_line = line_before + candidate.split("\n", 1)[0]
        unit = file_unit or indent_unit([cursor_line + "x", *candidate.split("\n")[1:]]) or DEFAULT_UNIT
        return cls(line_before, unit, syntax)

    @property
    def unit_width(self) -> int:
        return indent_width(self.unit + "x")

    def block_width(self, first_line: str) -> int:
        """Indentation of the block the candidate fills: one level in after an opener, else the cursor's."""
        if self.syntax.opens(self.line_before):
            return indent_width(self.line_before) + self.unit_width
        return indent_width(self.line_before + first_line)


def limit_lines(text: str, max_lines: int) -> str:
    """At most `max_lines` lines; an empty first line (the rest of an opener line) does not count."""
    lines = text.split("\n")
    keep = max_lines + (1 if lines and not lines[0].strip() else 0)
    return "\n".join(lines[:keep])


def reindent(text: str, layout: Layout) -> str:
    """After a block opener (the cursor's line joined to the candidate's first line), shift the following
    lines so the first of them sits one level in (a closing bracket: at the opener's level).

    Only an opener says for sure where the next line belongs; after any other line a different indentation
    may be a hanging continuation, a brace-less `if` body or the end of the block, so it is left alone (the
    block-end cut deals with the last)."""
    lines = text.split("\n")
    anchor = (layout.line_before + lines[0]).rstrip()
    follower = next((line for line in lines[1:] if line.strip()), None)
    if follower is None or not layout.syntax.opens(anchor):
        return text
    closes = follower.lstrip()[:1] in CLOSERS
    expected = indent_width(anchor) + (0 if closes else layout.unit_width)
    delta = expected - indent_width(follower)
    if delta == 0:
        return text
    shifted = [
        make_indent(indent_width(line) + delta, layout.unit) + line.lstrip(" \t") if line.strip() else line
        for line in lines[1:]
    ]
    return "\n".join([lines[0], *shifted])


def block_end_variants(text: str, layout: Layout) -> list[str]:
    """Cut before the first line that dedents out of the block being filled; when that line only closes
    brackets, first offer the text including it (needed when the suffix does not close the block)."""
    lines = text.split("\n")
    width = layout.block_width(lines[0])
    for index in range(1, len(lines)):
        line = lines[index]
        if line.strip() and indent_width(line) < width:
            kept = "\n".join(lines[:index])
            if _CLOSER_LINE.fullmatch(line.strip()):
                return ["\n".join(lines[: index + 1]), kept]
            return [kept]
    return [text]


def _first_code_line(suffix: str) -> str | None:
    return next((line for line in suffix.split("\n") if line.strip()), None)


def drop_repeated_lines(text: str, layout: Layout, suffix: str) -> str:
    """Cut the candidate where a whole line repeats the suffix's next code line (the model ran into it).

    Lines must match with their indentation, or without it when long enough to be unlikely by chance."""
    target = _first_code_line(suffix)
    if target is None:
        return text
    target = target.rstrip()
    lines = text.split("\n")
    first = 0 if not layout.line_before.strip() else 1
    for index in range(first, len(lines)):
        line = lines[index].rstrip()
        if line == target or (line.strip() == target.strip() and len(target.strip()) >= 10):
            return "\n".join(lines[:index]).rstrip()
    return text


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


def drop_overlap(text: str, suffix: str) -> str:
    """Remove the longest end of `text` that the rest of the cursor's line already starts with (`foo(a)` +
    `)` -> `foo(a`), never splitting a word in either text."""
    rest = suffix.split("\n", 1)[0].rstrip("\r").rstrip()
    if not rest.strip() or not text:
        return text
    last_line = text[text.rfind("\n") + 1 :]
    for size in range(min(len(rest), len(last_line)), 0, -1):
        overlap = rest[:size]
        if not text.endswith(overlap):
            continue
        splits_rest = size < len(rest) and _word(rest[size - 1]) and _word(rest[size])
        splits_text = size < len(text) and _word(text[-size - 1]) and _word(overlap[0])
        if not splits_rest and not splits_text:
            return text[:-size]
    return text


def cut_points(text: str, syntax: BlockSyntax) -> list[str]:
    """Prefixes of `text` ending at line ends, longest first, without trailing whitespace, skipping blank
    ones and ones whose last code line opens a block (an empty body is never a complete suggestion)."""
    lines = text.split("\n")
    points: list[str] = []
    for count in range(len(lines), 0, -1):
        point = "\n".join(lines[:count]).rstrip()
        code = [line for line in point.split("\n") if syntax.code(line).strip()]
        if point.strip() and not (code and syntax.opens(code[-1])) and point not in points:
            points.append(point)
    return points
