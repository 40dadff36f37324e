"""Asking an engine for a request's candidates: the one call every caller (the language server, eval,
``diffill complete``) makes, and the follow-up requests that repair a line tree-sitter rejects.

A few-step diffusion canvas often writes a line that is right up to a point and broken after it (``if len( = 1:``,
``balance = == 0``): every candidate then adds a syntax error and the editor shows nothing. With ``repairs`` > 0, a
single-line request none of whose candidates parses is asked again, continuing from the part of a line before its
first syntax error (``fim.validate.repair_point``): that text joins the prefix (the session's context cache grows
by its tokens, nothing is recomputed), the engine fills the rest of the line, and the text is put back in front
of every new candidate, so the caller gets candidates for the request it made, and validates them as any others.
Each follow-up is made only while no candidate parses, and never twice from the same text at the same steps.

With ``first_steps`` (a diffusion engine's single-line requests), the first ask runs at that many denoising steps
instead of the options' ``steps``: most lines parse after a few steps, and the editor shows them at a few steps'
cost. Its repairs run at the same few steps (a follow-up costs a quick ask); a request that still has nothing to show
(no candidate parses, or every one that does is degenerate: ``fim.validate.any_shown``) is asked again at the full
``steps``, with repairs of its own (the session's context is cached: the second ask costs only its steps). The
typical request then costs a quick one, the hard ones a few quick ones more (docs/speed.md, rounds 14 and 15).

A multi-line request whose block has nothing to show (every candidate breaks the file or is degenerate: a few-step
canvas of 64 tokens often writes ``balance = == 0``) is asked for its first line instead: the same request as a
single-line one (``FimRequest.line_request``: the single-line canvas and candidates, at the cursor on a blank line,
one level in on a new line after the opener the cursor ends), with the quick first ask and the repairs of any
single-line request, and each candidate cut to its first line. The editor then shows a line where it showed nothing
(``line``; docs/speed.md round 16).

A caller that may stop wanting the answer (the language server, when the user types on) passes ``current``: it is
asked before each follow-up (an escalation or a repair), and when it says no, the answer so far is returned
(``abandoned``). Follow-ups are made only while nothing is worth showing, so stopping never drops a text.

This works for every engine (the embedded models, a ``diffill serve`` box, the released coders' adapters): it needs
nothing from them but ``complete``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fim.request import FimRequest, Mode
from fim.text import LINE_BREAK
from fim.validate import Candidate, any_shown, repair_point

if TYPE_CHECKING:  # types only: fim runs without the engine (and torch) imported
    from engine.contract import Completion, CompletionEngine, CompletionStats, ContextChunk, SampleOptions

__all__ = ["Answer", "ask_engine"]


@dataclass(frozen=True)
class Answer:
    """The engine's candidates for a request (after any repair, still relative to its ``model_prefix``)."""

    completions: list[Completion]
    repairs: int = 0  # follow-up requests made (at the quick and the full steps together)
    repaired_from: str = ""  # the text the candidates' follow-up continued from ("": they are a first ask's)
    escalated: bool = False  # the quick ask (``first_steps``), repaired, had nothing to show: asked at full steps
    abandoned: bool = False  # a follow-up was due when ``current`` said the answer was no longer wanted
    # A multi-line request whose block had nothing to show: the candidates are its first line's, asked as a single-line
    # request (``FimRequest.line_request``, quick first ask and repairs included), each cut to its first line.
    line: bool = False
    # The engine's stats of every call made, as one (``CompletionStats.then``); None when it keeps none.
    stats: CompletionStats | None = None


def _complete(
    engine: CompletionEngine,
    options: SampleOptions,
    request: FimRequest,
    *,
    num_candidates: int | None,
    canvas_length: int | None,
    session_id: str | None,
    chunks: Sequence[ContextChunk],
    calls: list[CompletionStats],
) -> list[Completion]:
    extra = {"chunks": chunks} if chunks else {}
    completions = engine.complete(
        request.model_prefix,
        request.suffix,
        language=request.language,
        canvas_length=canvas_length or request.canvas_length,
        num_candidates=num_candidates or request.num_candidates,
        options=replace(options, max_lines=request.max_lines),
        session_id=session_id,
        **extra,
    )
    if (stats := engine.last_stats) is not None:
        calls.append(stats)
    return completions


def _repaired(
    ask: Callable[[SampleOptions, FimRequest], list[Completion]],
    options: SampleOptions,
    request: FimRequest,
    repairs: int,
    wanted: Callable[[], bool],
) -> Answer:
    """One ask at `options`, then up to `repairs` follow-ups at the same options while no candidate parses."""
    completions = ask(options, request)
    tried: set[str] = set()
    kept = ""
    while len(tried) < repairs:
        head = repair_point(request, [Candidate(c.text, c.score) for c in completions])
        if head is None or head in tried:
            break
        if not wanted():
            return Answer(completions, len(tried), kept, abandoned=True)
        tried.add(head)
        kept = head
        follow = replace(request, prefix=request.prefix + head)
        lead = follow.model_prefix[len(request.model_prefix) :]  # the head as the engine's text continues it
        completions = [replace(c, text=lead + c.text) for c in ask(options, follow)]
    return Answer(completions, len(tried), kept)


def ask_engine(
    engine: CompletionEngine,
    request: FimRequest,
    options: SampleOptions,
    *,
    num_candidates: int | None = None,
    canvas_length: int | None = None,
    session_id: str | None = None,
    chunks: Sequence[ContextChunk] = (),
    repairs: int = 0,
    first_steps: int = 0,
    current: Callable[[], bool] | None = None,
) -> Answer:
    """The engine's raw candidates for a request, asked the way every caller must: the healed prefix
    (``model_prefix``; ``fim.validate`` strips the same whitespace) and the mode's line limit in the options (the
    editor shows no more lines). Chunks are passed only when there are some, so backends without cross-file support
    keep working. A single-line request starts at `first_steps` when that is fewer than the options' steps; up to
    `repairs` follow-ups are made at each step count while no candidate parses; a multi-line request with nothing to
    show is asked for its first line (``FimRequest.line_request``); none of these once `current()` is false (module
    docstring)."""
    calls: list[CompletionStats] = []
    ask = functools.partial(
        _complete,
        engine,
        num_candidates=num_candidates,
        canvas_length=canvas_length,
        session_id=session_id,
        chunks=chunks,
        calls=calls,
    )
    wanted = current or (lambda: True)
    stepped = functools.partial(_stepped, ask, options=options, repairs=repairs, first_steps=first_steps, wanted=wanted)
    answer = _asked(stepped, request, wanted)
    return replace(answer, stats=functools.reduce(lambda first, later: first.then(later), calls) if calls else None)


def _shown(request: FimRequest, answer: Answer) -> bool:
    return any_shown(request, [Candidate(c.text, c.score) for c in answer.completions])


def _asked(stepped: Callable[[FimRequest], Answer], request: FimRequest, wanted: Callable[[], bool]) -> Answer:
    """The request's answer (`stepped`: ``_stepped`` at the caller's options) and, when a multi-line one's block has
    nothing to show, its first line's instead."""
    answer = stepped(request)
    line = request.line_request()
    if line is None or answer.abandoned or _shown(request, answer):
        return answer
    if not wanted():
        return replace(answer, abandoned=True)
    fallback = stepped(line)
    lead = line.model_prefix[len(request.model_prefix) :]  # a line break when the cursor ends an opener
    return replace(
        fallback,
        completions=[replace(c, text=lead + LINE_BREAK.split(c.text, maxsplit=1)[0]) for c in fallback.completions],
        repairs=answer.repairs + fallback.repairs,
        repaired_from=lead + fallback.repaired_from if fallback.repaired_from else "",
        line=True,
    )


def _stepped(
    ask: Callable[[SampleOptions, FimRequest], list[Completion]],
    request: FimRequest,
    *,
    options: SampleOptions,
    repairs: int,
    first_steps: int,
    wanted: Callable[[], bool],
) -> Answer:
    """The quick ask, its repairs and, when they have nothing to show, the full ask and its repairs."""
    quick = request.mode is Mode.SINGLE_LINE and 0 < first_steps < options.steps
    answer = _repaired(ask, replace(options, steps=first_steps) if quick else options, request, repairs, wanted)
    if not quick or answer.abandoned or _shown(request, answer):
        return answer
    if not wanted():
        return replace(answer, abandoned=True)
    full = _repaired(ask, options, request, repairs, wanted)
    return replace(full, repairs=answer.repairs + full.repairs, escalated=True)
