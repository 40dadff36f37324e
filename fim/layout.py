"""Indentation and block-opener facts shared by request building (mode) and candidate post-processing.

Both sides reason about lines of text rather than syntax trees: "does this line open a block", "how wide is
this indentation", "what is one indentation level in this file". Keeping them in one place keeps the mode
detection and the re-indentation of candidates consistent with each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from fim.text import LINE_BREAK

__all__ = [
    "CLOSERS",
    "TAB_WIDTH",
    "BlockSyntax",
    "block_syntax",
    "indent_unit",
    "indent_width",
    "leading_whitespace",
    "make_indent",
]

TAB_WIDTH = 4  # columns a tab counts for when comparing indentation
CLOSERS = ")]}"
DEFAULT_UNIT = " " * 4  # the indentation unit when neither the file nor the candidate shows one
UNIT_SAMPLE_LINES = 200  # lines of prefix read to learn the indentation unit

_BRACE_LANGUAGES = frozenset({"javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp"})


@dataclass(frozen=True)
class BlockSyntax:
    """How a language opens blocks at the end of a line, and how its line comments start."""

    openers: tuple[str, ...]
    comment: str | None

    def code(self, line: str) -> str:
        """The line without a trailing comment or whitespace; a marker inside a string is not a comment
        (counted by quote parity, which is enough for the end of a line)."""
        if self.comment is not None:
            at = line.find(self.comment)
            while at >= 0:
                before = line[:at]
                if all(before.count(quote) % 2 == 0 for quote in _QUOTES):
                    return before.rstrip()
                at = line.find(self.comment, at + 1)
        return line.rstrip()

    def opens(self, line: str) -> bool:
        """Whether the line ends (before any comment) with a block opener."""
        return self.code(line).endswith(self.openers)


_QUOTES = ("'", '"', "`")
_PYTHON = BlockSyntax((":",), "#")
_BRACES = BlockSyntax(("{",), "//")
_UNKNOWN = BlockSyntax(("{", ":"), None)


def block_syntax(language: str) -> BlockSyntax:
    """`:` and `#` in Python, `{` and `//` in brace languages, either opener and no comments otherwise."""
    if language == "python":
        return _PYTHON
    return _BRACES if language in _BRACE_LANGUAGES else _UNKNOWN


def leading_whitespace(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(line: str) -> int:
    """Columns of a line's indentation, tabs counted as TAB_WIDTH."""
    return len(leading_whitespace(line).expandtabs(TAB_WIDTH))


def indent_unit(lines: Iterable[str]) -> str | None:
    """One indentation level: a tab if the indented lines start with tabs, else the commonest positive step
    between consecutive code lines; None when the lines show no indentation at all."""
    steps: Counter[int] = Counter()
    tabs = spaces = 0
    previous = 0
    for line in lines:
        if not line.strip():
            continue
        tabs += line.startswith("\t")
        spaces += line.startswith(" ")
        width = indent_width(line)
        if width > previous:
            steps[width - previous] += 1
        previous = width
    if tabs > spaces:
        return "\t"
    if not steps:
        return None
    return " " * min(steps.most_common(1)[0][0], 8)  # hanging indents are rarer than block levels


def prefix_unit(prefix: str) -> str | None:
    """The indentation unit the text before the cursor shows (its last ``UNIT_SAMPLE_LINES`` lines), None when it
    shows none. The cursor's own indentation counts as a line, so a body's first line teaches the unit too."""
    lines = LINE_BREAK.split(prefix)[-UNIT_SAMPLE_LINES:]
    return indent_unit([*lines[:-1], lines[-1] + "x"])


def make_indent(width: int, unit: str) -> str:
    """Whitespace of `width` columns in the file's style (tabs then spaces for tab-indented files)."""
    width = max(0, width)
    if unit == "\t":
        return "\t" * (width // TAB_WIDTH) + " " * (width % TAB_WIDTH)
    return " " * width
