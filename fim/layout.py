"""Indentation and block-opener facts shared by request building (mode) and candidate post-processing.

Both sides reason about lines of text rather than syntax trees: "does this line open a block", "how wide is
this indentation", "what is one indentation level in this file". Keeping them in one place keeps the mode
detection and the re-indentation of candidates consistent with each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = [
    "CLOSERS",
    "TAB_WIDTH",
    "block_openers",
    "indent_unit",
    "indent_width",
    "leading_whitespace",
    "make_indent",
]

TAB_WIDTH = 4  # columns a tab counts for when comparing indentation
CLOSERS = ")]}"

_BRACE_LANGUAGES = frozenset({"javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp"})


def block_openers(language: str) -> tuple[str, ...]:
    """Line endings that open a block: `:` in Python, `{` in brace languages, either for unknown languages."""
    if language == "python":
        return (":",)
    if language in _BRACE_LANGUAGES:
        return ("{",)
    return ("{", ":")


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


def make_indent(width: int, unit: str) -> str:
    """Whitespace of `width` columns in the file's style (tabs then spaces for tab-indented files)."""
    width = max(0, width)
    if unit == "\t":
        return "\t" * (width // TAB_WIDTH) + " " * (width % TAB_WIDTH)
    return " " * width
