"""The latency-aware path of one completion request, shared by inline completion and classic completion.

In order, cheapest first: guards (open document, size, binary, language, position) -> the typed-prefix cache
(no model call) -> debounce (skipped for an explicit invoke) -> a turn at the model gate (`lsp_server.gate`),
then a staleness check -> the pipeline in a worker thread (which checks again before each follow-up request:
fim.ask) -> a last staleness check (an edit during the model call makes the answer stale). Never raises except
`CancelledError` (a `$/cancelRequest`, which pygls turns into a RequestCancelled reply); a call cancelled while it
runs keeps the gate until its thread returns, and its answer still fills the typed-prefix cache.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import string
from dataclasses import dataclass

from lsprotocol import types

from lsp_server import documents, pipeline
from lsp_server.documents import Cursor, Snapshot
from lsp_server.server import DiffillServer

__all__ = ["TRIGGER_CHARACTERS", "Answer", "completion_items", "inline_items", "suggest"]

log = logging.getLogger(__name__)

_LABEL_CHARS = 80

# Characters after which a client asks for classic completions on its own. Neovim 0.11's `autotrigger` asks only
# after these (it has no "complete while typing"), so identifier characters are in, or typing a name would never
# pop anything up; `.` and `(` start the commonest completions, and space covers `return `, `import `, `= `.
# Flooding is not a concern: the client coalesces a burst (Neovim waits 25 ms), the server debounces, cancels
# supersede, and the model gate runs at most one call at a time.
TRIGGER_CHARACTERS = [
    *string.ascii_letters,
    *string.digits,
    "_",
    ".",
    "(",
    " ",
]


@dataclass(frozen=True)
class Answer:
    cursor: Cursor
    texts: list[str]  # insert at the cursor, best first


def _admit(ls: DiffillServer, uri: str, position: types.Position) -> tuple[Snapshot, Cursor] | None:
    """The snapshot and cursor, or None for requests that get an empty answer without any work."""
    document = documents.snapshot(ls.workspace, uri)
    if document is None:
        return None
    reason = documents.rejection(document.text, ls.settings.limits.max_file_bytes)
    if reason is None and not ls.settings.languages.allows(document.language_id):
        reason = f"language {document.language_id!r} disabled in settings"
    if reason is not None:
        ls.stats.skipped += 1
        ls.note_once(f"{uri}:{reason}", f"no completions for {uri}: {reason}")  # once, not per keystroke
        return None
    cursor = documents.locate(document.text, position, ls.workspace.position_codec)
    if cursor is None:
        ls.stats.skipped += 1
        log.info("position %s:%s is outside %s", position.line, position.character, uri)
        return None
    return document, cursor


def _cached(ls: DiffillServer, document: Snapshot, cursor: Cursor) -> list[str] | None:
    """Texts already shown for this cursor (typed-prefix cache), counted as a cache hit; None when there are none."""
    cached = ls.cache.get(document.language_id, document.text, cursor.offset)
    if not cached:
        return None
    ls.stats.cache_hits += 1
    return cached


async def _compute(
    ls: DiffillServer, document: Snapshot, cursor: Cursor, kind: str, generation: int
) -> list[str] | None:
    if not ls.is_current(document.uri, kind, generation, document.version):  # superseded during the debounce
        ls.stats.stale += 1
        return None
    async with ls.gate.turn() as turn:
        engine = ls.engine
        if engine is None:
            ls.stats.not_ready += 1
            return None
        if not ls.is_current(document.uri, kind, generation, document.version):
            ls.stats.stale += 1
            return None
        # The request we waited for may have answered this very cursor (ghost text and popup asked together).
        cached = _cached(ls, document, cursor)
        if cached:
            return cached
        job = pipeline.Job(
            engine,
            document,
            cursor,
            ls.fim,
            ls.settings.completion,
            ls.cache,
            ls.cross_file,
            ls.workspace,
            ls.calibration,
            functools.partial(ls.is_current, document.uri, kind, generation, document.version),
        )
        ran = await turn.run(functools.partial(pipeline.run, job))
        ls.last_completion = ran.stats
    if not ls.is_current(document.uri, kind, generation, document.version):
        ls.stats.stale += 1
        return None
    return ran.texts


async def suggest(ls: DiffillServer, uri: str, position: types.Position, *, kind: str, debounce: bool) -> Answer | None:
    """Completions at `position` of the open document `uri`, or None (nothing to show; never an error).

    `kind` ("inline", "completion") names the request type: a newer request supersedes older ones of its kind.
    """
    try:
        admitted = _admit(ls, uri, position)
        if admitted is None:
            return None
        document, cursor = admitted
        ls.stats.requests += 1
        ls.cross_file.touched(uri, cursor.line)  # where the user works: a region for other documents' context
        generation = ls.begin_request(uri, kind)
        cached = _cached(ls, document, cursor)
        if cached:
            return Answer(cursor, cached)
        if ls.engine is None:  # loading, failed, or reloading: answer now rather than after a debounce
            ls.stats.not_ready += 1
            return None
        if debounce and ls.settings.completion.debounce_ms:
            await asyncio.sleep(ls.settings.completion.debounce_ms / 1000)
        texts = await _compute(ls, document, cursor, kind, generation)
        return Answer(cursor, texts) if texts else None
    except Exception:
        ls.stats.errors += 1
        log.exception("completion at %s:%s in %s failed", position.line, position.character, uri)
        ls.note_once(f"error:{uri}", f"completion failed in {uri}; see the server's stderr for the traceback")
        return None


def inline_items(answer: Answer | None) -> types.InlineCompletionList:
    if answer is None:
        return types.InlineCompletionList(items=[])
    at = types.Range(start=answer.cursor.position, end=answer.cursor.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=t, range=at) for t in answer.texts])


def _label(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), text.strip())
    return first if len(first) <= _LABEL_CHARS else first[: _LABEL_CHARS - 1] + "…"


def completion_items(answer: Answer | None) -> types.CompletionList:
    """Classic completion items: each replaces the word before the cursor by word + completion, so clients that
    filter by that word keep the item, and the multi-line text lands exactly at the cursor."""
    if answer is None:
        return types.CompletionList(is_incomplete=True, items=[])
    replace = types.Range(start=answer.cursor.word_start, end=answer.cursor.position)
    items = []
    for rank, text in enumerate(answer.texts):
        new_text = answer.cursor.word + text
        items.append(
            types.CompletionItem(
                label=_label(new_text),
                kind=types.CompletionItemKind.Text,
                detail="Diffill",
                documentation=types.MarkupContent(kind=types.MarkupKind.PlainText, value=new_text),
                insert_text_format=types.InsertTextFormat.PlainText,
                text_edit=types.TextEdit(range=replace, new_text=new_text),
                filter_text=new_text,
                sort_text=f"{rank:04d}",
                preselect=rank == 0,
            )
        )
    # Incomplete: ask again as the user types (answered from the cache while they follow a suggestion).
    return types.CompletionList(is_incomplete=True, items=items)
