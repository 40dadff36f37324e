"""From an editor cursor to a fill-in-the-middle request: context window, mode, canvas length.

The caller hands over the whole document and the cursor as a string offset (the language server converts the
editor's line and UTF-16 character). The model sees
only a window around the cursor: the nearest lines of prefix and suffix that fit their token budgets, cut at
line boundaries and preferably just after/before a blank line, so the context starts and ends at a paragraph
rather than mid-statement. The mode follows what the editor is asking for: text after the cursor or an
unfinished expression asks for the rest of one line; the end of a block opener (`:` in Python, `{` elsewhere)
or a blank line inside an empty body asks for a block, hence a longer canvas and fewer candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from fim.languages import normalize_language
from fim.layout import CLOSERS, DEFAULT_UNIT, BlockSyntax, block_syntax, indent_width, leading_whitespace, prefix_unit
from fim.text import LINE_BREAK

__all__ = [
    "FimRequest",
    "FimSettings",
    "Mode",
    "PositionError",
    "approx_tokens",
    "build_request",
    "detect_mode",
]

TokenCounter = Callable[[str], int]


class Mode(StrEnum):
    SINGLE_LINE = "single-line"
    MULTI_LINE = "multi-line"


class PositionError(ValueError):
    """A cursor that is not in the document (an offset past the end, or negative)."""


@dataclass(frozen=True)
class FimSettings:
    """Context budgets and generation sizes; defaults suit the embedded model on a laptop CPU."""

    # Most of the signal is above the cursor; the suffix mainly tells where the middle must stop.
    prefix_tokens: int = 1536
    suffix_tokens: int = 512
    # A rest-of-line completion is short (HumanEval's single lines: median 8 tokens, 88% within 16); a block body
    # needs room for several statements. 64 is the longest canvas the embedded model was trained on (engines clamp
    # larger requests to their own maximum). 16 instead of 32 halves a single-line request's work at the same
    # quality (pass@1 4.55% vs 4.65%, edit similarity 0.199 vs 0.190 on all 1,033 problems; docs/speed.md round 4).
    single_line_canvas: int = 16
    multi_line_canvas: int = 64
    # Short canvases are cheap, so ask for more alternatives; long ones cost more per candidate.
    single_line_candidates: int = 4
    multi_line_candidates: int = 2
    # Longer multi-line suggestions are rarely accepted whole.
    max_lines: int = 12
    # Tokens of cross-file context (fim.crossfile) the window leaves room for; 0: none.
    cross_file_tokens: int = 0
    # Follow-up requests for a single-line request none of whose candidates parses, each continuing from the part
    # of a line before its first syntax error (fim.ask): at the quick first ask's steps, and again at the full steps
    # when the request is asked again; 0: none. Two raise the share of HumanEval-Infilling
    # single-line problems where the embedded model's line is shown from 79% to 88% (docs/speed.md, round 13).
    repairs: int = 2
    # Denoising steps of a single-line request's first ask (fim.ask), and of its repairs: when it still has nothing
    # to show, it is asked again at the sampler's full steps. Most lines parse after a few steps, so the typical
    # request costs a few-step one (docs/speed.md, rounds 14 and 15). 0, or at least the full steps: one ask.
    # Diffusion engines only (``fitted`` sets 0 for others: an autoregressive model's answer does not depend on steps).
    first_steps: int = 4

    def __post_init__(self) -> None:
        # Budgets may be 0 (no context on that side), follow-ups too; every size the model generates must be positive.
        zero = ("repairs", "first_steps")
        minimum = {name: 0 if name.endswith("_tokens") or name in zero else 1 for name in vars(self)}
        invalid = [name for name, value in vars(self).items() if value < minimum[name]]
        if invalid:
            raise ValueError(f"invalid FIM settings: {', '.join(invalid)}")

    def fitted(self, description: Mapping[str, object]) -> FimSettings:
        """These settings for an engine (its ``describe()``): inside its limits (``max_text_tokens`` and
        ``max_canvas``; anything not a positive int is ignored): canvases clamped to the longest the model supports,
        the cross-file budget to half the text, prefix and suffix budgets cut to what the model's context takes
        besides it, keeping a 3:1 prefix:suffix split; and no quick first ask (``first_steps``) unless its ``kind``
        is a diffusion model. The one place that decides the split, so the engine never has to cut the window
        again."""
        max_text_tokens, max_canvas = description.get("max_text_tokens"), description.get("max_canvas")
        changes: dict[str, int] = {} if description.get("kind") == "diffusion" else {"first_steps": 0}
        if isinstance(max_canvas, int) and max_canvas > 0:
            changes |= {
                "single_line_canvas": min(self.single_line_canvas, max_canvas),
                "multi_line_canvas": min(self.multi_line_canvas, max_canvas),
            }
        if isinstance(max_text_tokens, int) and max_text_tokens > 0:
            # Cross-file chunks take their room first, but never more than half: the text around the cursor
            # matters most, and the engine cuts chunks, never the window, when a context is over its limit.
            chunks = min(self.cross_file_tokens, max_text_tokens // 2)
            text = max_text_tokens - chunks
            prefix = min(self.prefix_tokens, text * 3 // 4)
            changes |= {
                "prefix_tokens": prefix,
                "suffix_tokens": min(self.suffix_tokens, text - prefix),
                "cross_file_tokens": chunks,
            }
        return replace(self, **changes)

    def sizes(self, mode: Mode) -> dict[str, Any]:
        """What a request in `mode` takes from these settings (``FimRequest``'s mode and size fields): a multi-line one
        also the sizes of its single-line fallback (``FimRequest.line_request``)."""
        if mode is Mode.SINGLE_LINE:
            return {
                "mode": mode,
                "canvas_length": self.single_line_canvas,
                "num_candidates": self.single_line_candidates,
                "max_lines": 1,
                "line_sizes": None,
            }
        return {
            "mode": mode,
            "canvas_length": self.multi_line_canvas,
            "num_candidates": self.multi_line_candidates,
            "max_lines": self.max_lines,
            "line_sizes": (self.single_line_canvas, self.single_line_candidates),
        }


@dataclass(frozen=True)
class FimRequest:
    """What the engine and the validator need; `prefix + suffix` is a window of the document."""

    prefix: str
    suffix: str
    language: str  # canonical name (fim.languages.normalize_language)
    mode: Mode
    canvas_length: int
    num_candidates: int
    max_lines: int
    indent: str  # leading whitespace of the cursor line
    cursor_offset: int  # string index of the cursor in the original document
    # A multi-line request's single-line fallback: the canvas and candidates of ``line_request``; None: none.
    line_sizes: tuple[int, int] | None = None

    @property
    def line_before(self) -> str:
        """The cursor line's text before the cursor (the prefix after its last line break)."""
        return self.prefix[max(self.prefix.rfind("\n"), self.prefix.rfind("\r")) + 1 :]

    @property
    def healed(self) -> str:
        """Spaces and tabs typed after code at the end of the cursor's line (``total += |``), else "".

        A BPE tokenizer attaches a space to the word after it (`` count``), so a prefix ending in a bare space ends
        on a token the model rarely saw there and its candidates start with another space. The model gets
        ``model_prefix`` (without it), and the validator drops that much leading whitespace from each candidate
        (``fim.validate``): the text shown follows what the user typed. Indentation alone is left as it is.
        """
        line = self.line_before
        code = line.rstrip(" \t")
        return line[len(code) :] if code.strip() else ""

    @property
    def model_prefix(self) -> str:
        """The prefix the engine is asked to continue: ``prefix`` without ``healed``."""
        return self.prefix[: len(self.prefix) - len(self.healed)]

    @property
    def newline(self) -> str:
        """The document's line break (the first one in the window), "\n" when the window has none."""
        match = LINE_BREAK.search(self.prefix) or LINE_BREAK.search(self.suffix)
        return match.group() if match else "\n"

    def line_request(self) -> FimRequest | None:
        """The single-line request for the first line of this multi-line request's block, asked when the block has
        nothing to show (``fim.ask``): at the cursor when its line is blank before it, else on a new line one level in
        after the opener it ends. None for a single-line request or one without ``line_sizes``."""
        if self.mode is not Mode.MULTI_LINE or self.line_sizes is None:
            return None
        canvas, candidates = self.line_sizes
        head = ""
        if self.line_before.strip():  # after an opener: the indentation a blank line in the body would have
            head = self.newline + leading_whitespace(self.line_before) + (prefix_unit(self.prefix) or DEFAULT_UNIT)
        return replace(
            self,
            prefix=self.prefix + head,
            mode=Mode.SINGLE_LINE,
            canvas_length=canvas,
            num_candidates=candidates,
            max_lines=1,
            line_sizes=None,
        )


def approx_tokens(text: str) -> int:
    """About 3.5 characters per token for code under a BPE tokenizer: ceil(len / 3.5)."""
    return (2 * len(text) + 6) // 7


def _nearest_code_line(lines: Sequence[str], indices: range) -> str | None:
    return next((lines[i] for i in indices if lines[i].strip()), None)


def _in_empty_body(lines: Sequence[str], row: int, syntax: BlockSyntax) -> bool:
    """A blank line between a block opener and the line closing or dedenting past it (or the file's end)."""
    above = _nearest_code_line(lines, range(row - 1, -1, -1))
    below = _nearest_code_line(lines, range(row + 1, len(lines)))
    if above is None:
        return below is None  # a blank document is an empty body too
    if not syntax.opens(above):
        return False
    return below is None or indent_width(below) <= indent_width(above) or below.lstrip()[:1] in CLOSERS


def detect_mode(lines: Sequence[str], row: int, column: int, language: str) -> Mode:
    """Multi-line after a block opener at the end of a line or on a blank line in an empty body."""
    line = lines[row]
    before, after = line[:column], line[column:]
    syntax = block_syntax(language)
    if after.strip():
        return Mode.SINGLE_LINE
    if before.strip():
        return Mode.MULTI_LINE if syntax.opens(before) else Mode.SINGLE_LINE
    return Mode.MULTI_LINE if _in_empty_body(lines, row, syntax) else Mode.SINGLE_LINE


def _longest_fitting(size: int, fits: Callable[[int], bool]) -> int:
    """Largest n in [0, size] with fits(n) for a monotone `fits` (binary search: O(log size) counts)."""
    low, high = 0, size
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _lines_within(lines: Iterable[str], budget: int, count_tokens: TokenCounter) -> list[str]:
    """The nearest `lines` (nearest first) that fit in `budget`; a cut moves back to just before a blank line.

    Lines are read lazily, so a long file costs only the lines near the cursor. The blank-line search looks
    at the outer quarter of the window only, so it never gives away much context.
    """
    seen: list[str] = []
    used = 0
    for line in lines:
        seen.append(line)
        used += count_tokens(line)
        if used > budget:
            break
    else:
        return seen
    kept = len(seen) - 1  # the last line seen broke the budget
    for count in range(kept, kept - kept // 4 - 1, -1):
        if not seen[count].strip():
            return seen[:count]
    return seen[:kept]


def _window_prefix(head: str, above: Iterable[str], budget: int, count_tokens: TokenCounter) -> str:
    """The cursor line's text before the cursor plus the nearest lines above it (`above`: nearest first)."""
    used = count_tokens(head)
    if used > budget:  # one huge line: keep the characters nearest the cursor
        keep = _longest_fitting(len(head), lambda n: count_tokens(head[len(head) - n :]) <= budget)
        return head[len(head) - keep :]
    return "".join(reversed(_lines_within(above, budget - used, count_tokens))) + head


def _window_suffix(tail: str, below: Iterable[str], budget: int, count_tokens: TokenCounter) -> str:
    """The cursor line's text after the cursor plus the nearest lines below it."""
    used = count_tokens(tail)
    if used > budget:
        return tail[: _longest_fitting(len(tail), lambda n: count_tokens(tail[:n]) <= budget)]
    return tail + "".join(_lines_within(below, budget - used, count_tokens))


_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


@dataclass(frozen=True)
class _Lines:
    """A document split per LSP (LF, CRLF, CR): line contents and the break ending each line."""

    contents: list[str]
    breaks: list[str]  # "" for the last line

    @classmethod
    def of(cls, text: str) -> _Lines:
        if "\r" not in text:  # the common case, several times faster than the regular expression
            contents = text.split("\n")
            return cls(contents, ["\n"] * (len(contents) - 1) + [""])
        parts = _LINE_BREAK.split(text)  # content, break, content, ..., content
        return cls(parts[0::2], [*parts[1::2], ""])

    def full(self, row: int) -> str:
        return self.contents[row] + self.breaks[row]

    def start(self, row: int) -> int:
        return sum(map(len, self.contents[:row])) + sum(map(len, self.breaks[:row]))

    def locate(self, offset: int) -> tuple[int, int]:
        """(row, column) of a string offset; an offset inside a CRLF break counts as the end of its line."""
        start = 0
        for row, (content, brk) in enumerate(zip(self.contents, self.breaks, strict=True)):
            end = start + len(content)
            if offset <= end + len(brk) - (1 if brk else 0):
                return row, min(offset - start, len(content))
            start = end + len(brk)
        raise AssertionError("offset checked against the text's length")


def build_request(
    text: str,
    offset: int,
    language_id: str,
    settings: FimSettings | None = None,
    count_tokens: TokenCounter | None = None,
) -> FimRequest:
    """Window, mode and sizes for a completion at string index `offset` of `text` (the cursor is before
    ``text[offset]``). Editors' coordinates (LSP line and UTF-16 character) are the caller's to convert."""
    settings = settings or FimSettings()
    count = count_tokens or approx_tokens
    if not 0 <= offset <= len(text):
        raise PositionError(f"offset {offset} is outside a document of {len(text)} characters")
    lines = _Lines.of(text)
    rows = len(lines.contents)
    line, column = lines.locate(offset)
    current = lines.contents[line]
    language = normalize_language(language_id)
    mode = detect_mode(lines.contents, line, column, language)
    above = map(lines.full, range(line - 1, -1, -1))
    below = map(lines.full, range(line + 1, rows))
    prefix = _window_prefix(current[:column], above, settings.prefix_tokens, count)
    suffix = _window_suffix(lines.full(line)[column:], below, settings.suffix_tokens, count)
    return FimRequest(
        prefix=prefix,
        suffix=suffix,
        language=language,
        **settings.sizes(mode),
        indent=leading_whitespace(current),
        cursor_offset=lines.start(line) + column,
    )
