"""LSP handlers: thin module-level functions taking the server first, registered on a `DiffillServer`.

Every handler catches its own exceptions (logged to stderr and `window/logMessage`) so a bad request never
kills the server or surfaces as an error in the editor; requests answer empty instead.

Custom methods:
- `diffill/stats` (request): counters, load state and engine description; `{"waitForModel": seconds}` first
  waits for a pending model load to settle (clients use it to show status, tests to synchronise on the load).
  The model gate's counters (`lsp_server.gate.GateCounts`: model calls started, in flight and its peak, waiting,
  dropped before they started, abandoned by a cancel) show that cancels never pile model calls up.
- `diffill/status` (notification, server to client): the same object, sent whenever the load state changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lsprotocol import types

from lsp_server.completion import TRIGGER_CHARACTERS, completion_items, inline_items, suggest
from lsp_server.server import DiffillServer

__all__ = ["STATS", "register"]

log = logging.getLogger(__name__)
STATS = "diffill/stats"
T = TypeVar("T")

Handler = Callable[..., Awaitable[T]]


def never_raises(fallback: Callable[[], T]) -> Callable[[Handler[T]], Handler[T]]:
    """Catch and log any exception of an async handler and answer `fallback()` instead."""

    def decorate(handler: Handler[T]) -> Handler[T]:
        @functools.wraps(handler)
        async def guarded(ls: DiffillServer, *args: Any) -> T:
            try:
                return await handler(ls, *args)
            except Exception as exc:
                ls.stats.errors += 1
                log.exception("%s failed", handler.__name__)
                ls.log_message(logging.ERROR, f"{handler.__name__} failed: {exc!r}")
                return fallback()

        return guarded

    return decorate


@never_raises(lambda: None)
async def initialize(ls: DiffillServer, params: types.InitializeParams) -> None:
    ls.initialization_options = params.initialization_options


@never_raises(lambda: None)
async def initialized(ls: DiffillServer, params: types.InitializedParams) -> None:
    await ls.refresh_settings()


@never_raises(lambda: None)
async def did_change_configuration(ls: DiffillServer, params: types.DidChangeConfigurationParams) -> None:
    # Push-style clients send the settings; pull-style ones send null and expect workspace/configuration.
    pushed = params.settings if isinstance(params.settings, dict) and params.settings else None
    await ls.refresh_settings(pushed)


@never_raises(lambda: None)
async def did_open(ls: DiffillServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.cross_file.touched(params.text_document.uri, 0)  # the top: imports and the first definitions


@never_raises(lambda: None)
async def did_change(ls: DiffillServer, params: types.DidChangeTextDocumentParams) -> None:
    change = params.content_changes[-1] if params.content_changes else None
    if isinstance(change, types.TextDocumentContentChangePartial):
        ls.cross_file.touched(params.text_document.uri, change.range.start.line)


@never_raises(lambda: None)
async def did_close(ls: DiffillServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.forget_document(params.text_document.uri)


@never_raises(lambda: types.InlineCompletionList(items=[]))
async def inline_completion(ls: DiffillServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    explicit = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    answer = await suggest(ls, params.text_document.uri, params.position, kind="inline", debounce=not explicit)
    return inline_items(answer)


@never_raises(lambda: types.CompletionList(is_incomplete=True, items=[]))
async def completion(ls: DiffillServer, params: types.CompletionParams) -> types.CompletionList:
    # Classic completion has no "explicit" trigger kind (Invoked also means typing), so it always debounces.
    answer = await suggest(ls, params.text_document.uri, params.position, kind="completion", debounce=True)
    return completion_items(answer)


@never_raises(lambda: {})
async def stats(ls: DiffillServer, params: Any) -> dict[str, Any]:
    wait = params.get("waitForModel") if isinstance(params, dict) else getattr(params, "waitForModel", None)
    if isinstance(wait, int | float) and wait > 0:
        try:
            await asyncio.wait_for(asyncio.shield(ls.loaded.wait()), timeout=wait)
        except TimeoutError:
            pass
    return ls.status()


def register(ls: DiffillServer) -> DiffillServer:
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    # Registering with InlineCompletionOptions is what makes pygls advertise inlineCompletionProvider.
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(inline_completion)
    options = types.CompletionOptions(resolve_provider=False, trigger_characters=TRIGGER_CHARACTERS)
    ls.feature(types.TEXT_DOCUMENT_COMPLETION, options)(completion)
    ls.feature(STATS)(stats)
    return ls
