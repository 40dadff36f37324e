"""Post-processing of the model's candidates: truncate, drop suffix overlap, re-indent, validate, rank.

A diffusion canvas decides itself where the middle ends, but a candidate can still run past the block it
should fill, repeat the code that follows the cursor, or stop inside a statement. For every candidate this
module proposes truncations (`fim.edits`), longest first, and keeps the first one that tree-sitter accepts
(`fim.syntax`: no new ERROR/MISSING nodes near the edit, judged against the document without the candidate).
Single-line requests keep only the first line; multi-line ones keep whole lines up to the end of the block,
at most `max_lines`. Languages without a grammar get the line-based truncation only.

Validation re-parses incrementally from one base tree per request, and verdicts are cached by text, so N
candidates that share prefixes cost little more than one.

What survives is then judged for showing (`fim.confidence`): degenerate text (blank, punctuation-only, repetition
loops, echoes of the line or of what follows) is dropped, every distinct text gets a calibrated confidence from
its score, its margin to the next text, how many candidates agree on it, the mode and whether the cursor is in a
comment or string (under the model's ``Calibration``), and texts below the threshold (the model's default, or
the user's `min_confidence`) are dropped. `assess` exposes every step for the eval.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from fim.confidence import UNCALIBRATED, Calibration, Context, Signals, degenerate
from fim.edits import Layout, block_end_variants, cut_points, drop_overlap, drop_repeated_lines, limit_lines
from fim.edits import reindent as reindent_lines
from fim.languages import get_parser
from fim.layout import BlockSyntax, block_syntax, prefix_unit
from fim.request import FimRequest, Mode
from fim.syntax import SyntaxChecker, Verdict

__all__ = ["Assessed", "Candidate", "any_shown", "assess", "postprocess", "repair_point", "select"]

MAX_CHECKS = 8  # parses per candidate before giving up on it; texts the same call judged already are free
_LINE_BREAK = re.compile(r"\r\n|\r")


@dataclass(frozen=True)
class Candidate:
    text: str
    score: float = 0.0  # mean token log-probability from the engine
    confidence: float = 1.0  # probability it is right (fim.confidence), set by postprocess


@dataclass(frozen=True)
class Assessed:
    """One distinct post-processed text (``\n`` line breaks) and what decides whether it is shown."""

    text: str
    signals: Signals
    confidence: float
    rejected: str | None  # why it is never shown (fim.confidence.degenerate), None when it may be


def _normalize(text: str) -> str:
    return _LINE_BREAK.sub("\n", text)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@dataclass
class _Validator:
    """Per-request state: layout facts, the syntax checker (built on first use) and cached verdicts. One per request
    (``of``), shared by everything that judges its candidates."""

    request: FimRequest
    suffix: str
    line_before: str  # the cursor line's text before the cursor
    file_unit: str | None  # indentation unit the prefix shows, if any
    checker: SyntaxChecker | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    parsable: bool = True

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def of(request: FimRequest) -> _Validator:
        """The request's validator: ``repair_point`` and ``any_shown`` (``fim.ask``) and then the caller's ``assess``
        judge the same request's candidates, so its base parse and each text's verdict are computed once."""
        parsable = get_parser(request.language) is not None
        unit = prefix_unit(request.prefix)
        return _Validator(request, _normalize(request.suffix), request.line_before, unit, parsable=parsable)

    def verdict(self, text: str) -> Verdict:
        if not self.parsable:
            return Verdict(ok=True)
        if text not in self.verdicts:
            self.verdicts[text] = self._checker().check(_encode(text))
        return self.verdicts[text]

    def _checker(self) -> SyntaxChecker:
        """Built on first use (its base parse, ~2 ms on a 4 KB region): a request whose candidates are all empty never
        parses the document."""
        if self.checker is None:
            parser = get_parser(self.request.language)
            if parser is None:
                raise LookupError(f"no grammar for {self.request.language}")
            self.checker = SyntaxChecker(parser, _encode(self.request.prefix), _encode(self.request.suffix))
        return self.checker

    def first_accepted(self, proposals: Iterator[str], nested: bool, checked: set[str]) -> str | None:
        """The first proposal that adds no syntax error. When each proposal is a prefix of the one before
        (`nested`), those still containing the position of an error seen earlier are skipped unchecked. A proposal
        counts against ``MAX_CHECKS`` unless it is in `checked`, the texts the calling ``assess`` or
        ``repair_point`` judged already (and to which it is added): the verdicts are shared by every call on the
        request, but what a call accepts does not depend on the calls before it."""
        checks = 0
        error_at: int | None = None
        for text in proposals:
            if nested and error_at is not None and len(_encode(text)) > error_at:
                continue
            if checks >= MAX_CHECKS:
                return None
            checks += text not in checked
            checked.add(text)
            verdict = self.verdict(text)
            if verdict.ok:
                return text
            error_at = verdict.error_at if error_at is None else min(error_at, verdict.error_at or error_at)
        return None

    def line(self, text: str) -> str:
        """A single-line candidate's line (trailing blanks dropped when the cursor's line ends at the cursor)."""
        line = text.split("\n", 1)[0]
        return line if self.suffix.split("\n", 1)[0].strip() else line.rstrip()

    def single_line(self, text: str) -> Iterator[str]:
        line = self.line(text)
        stripped = drop_overlap(line, self.suffix)
        if not stripped.strip():
            return  # nothing left, or only what the suffix already says
        yield stripped
        yield line

    def multi_line(self, text: str) -> Iterator[str]:
        text = limit_lines(text, self.request.max_lines)
        layout = Layout.learn(self.line_before, self.file_unit, text, block_syntax(self.request.language))
        text = reindent_lines(text, layout)
        for block in block_end_variants(text, layout):
            yield from cut_points(drop_repeated_lines(block, layout, self.suffix), layout.syntax)

    def in_prose(self) -> bool:
        """Cursor in a comment or string: the grammar says where it can; else the line's comment marker."""
        if self.parsable:
            return self._checker().in_prose()
        syntax: BlockSyntax = block_syntax(self.request.language)
        return syntax.comment is not None and syntax.code(self.line_before) != self.line_before.rstrip()

    def inserted(self, text: str) -> str:
        """A raw candidate as the text inserted after the request's prefix (the healed blanks dropped, "\n")."""
        healed = len(self.request.healed)  # the model continued the prefix without it (FimRequest.healed)
        return _normalize(text[min(healed, len(text) - len(text.lstrip(" \t"))) :])

    def finish(self, text: str, checked: set[str]) -> str | None:
        text = self.inserted(text)
        if self.request.mode is Mode.SINGLE_LINE:
            return self.first_accepted(self.single_line(text), nested=False, checked=checked)
        return self.first_accepted(self.multi_line(text), nested=True, checked=checked)


def assess(
    request: FimRequest, candidates: Sequence[Candidate], calibration: Calibration = UNCALIBRATED
) -> list[Assessed]:
    """Every distinct text the candidates post-process to, with its signals, confidence under the model's
    `calibration` and any rejection; best confidence first (ties: best score, then the model's order).
    Syntax-rejected candidates are absent."""
    if not candidates:
        return []
    validator = _Validator.of(request)
    best: dict[str, float] = {}
    votes: dict[str, int] = {}
    checked: set[str] = set()
    for candidate in candidates:
        text = validator.finish(candidate.text, checked)
        if text is not None:
            best[text] = max(candidate.score, best.get(text, candidate.score))
            votes[text] = votes.get(text, 0) + 1
    if not best:
        return []
    prose = any(text.strip() for text in best) and validator.in_prose()
    context = Context(validator.line_before, validator.suffix, prose)
    assessed = []
    for text, score in best.items():
        others = [s for t, s in best.items() if t != text]
        signals = Signals(
            score=score,
            margin=score - max(others) if others else 0.0,
            agreement=votes[text] / len(candidates),
            multi_line=request.mode is Mode.MULTI_LINE,
            prose=prose,
            chars=len(text.strip()),
        )
        assessed.append(Assessed(text, signals, calibration.confidence(signals), degenerate(text, context)))
    return sorted(assessed, key=lambda a: (-a.confidence, -a.signals.score))  # stable: ties keep the model's order


def any_shown(request: FimRequest, candidates: Sequence[Candidate]) -> bool:
    """Whether an editor showing everything (threshold 0) would show one of the candidates' texts: one survives
    truncation and validation and is not degenerate (blank, an echo of the line or of what follows, ...)."""
    return any(a.rejected is None for a in assess(request, candidates))


def _before_byte(text: str, at: int) -> str:
    """The longest start of `text` whose encoding (``_encode``) is at most `at` bytes."""
    size = 0
    for i, char in enumerate(text):
        size += len(_encode(char))
        if size > at:
            return text[:i]
    return text


def repair_point(request: FimRequest, candidates: Sequence[Candidate]) -> str | None:
    """Where a single-line request whose candidates all break the file can be continued (``fim.ask``): the longest
    part of a candidate's line before the first syntax error it adds (ties: the best score), as text inserted after
    ``request.prefix``. None when a candidate is accepted, the request is multi-line, the language has no grammar,
    or no line holds text before its error (an error from the line's first character on, or one tree-sitter wraps
    around the whole statement, as a stray closing bracket: ``if f(x)):``)."""
    if request.mode is not Mode.SINGLE_LINE or not candidates:
        return None
    validator = _Validator.of(request)
    if not validator.parsable:
        return None
    heads: list[str] = []
    checked: set[str] = set()
    for candidate in sorted(candidates, key=lambda c: -c.score):
        text = validator.inserted(candidate.text)
        if validator.first_accepted(validator.single_line(text), nested=False, checked=checked) is not None:
            return None
        line = validator.line(text)
        verdict = validator.verdict(line)
        head = _before_byte(line, verdict.error_at) if verdict.error_at is not None else ""
        if head.strip():
            heads.append(head)
    return max(heads, key=len, default=None)


def select(request: FimRequest, assessed: Sequence[Assessed], min_confidence: float = 0.0) -> list[Candidate]:
    """The assessed texts worth showing (not degenerate, at least `min_confidence`), in the document's line ending."""
    newline = request.newline
    return [
        Candidate(a.text.replace("\n", newline), a.signals.score, a.confidence)
        for a in assessed
        if a.rejected is None and a.confidence >= min_confidence
    ]


def postprocess(
    request: FimRequest,
    candidates: Sequence[Candidate],
    calibration: Calibration = UNCALIBRATED,
    min_confidence: float | None = None,
) -> list[Candidate]:
    """Truncated, de-duplicated, syntax-checked candidates worth showing, most confident first (under the model's
    `calibration`); rejected, degenerate and less confident than `min_confidence` (None: the calibration's
    default) ones dropped.

    Returned texts use the document's line ending and are meant to be inserted at the cursor as they are.
    """
    return select(request, assess(request, candidates, calibration), calibration.threshold(min_confidence))
