"""Typing through the real server with a client that cancels every superseded request, as editors do.

Each keystroke is an edit and an automatic inline request, and cancels the request before it (Neovim's and VS
Code's clients send `$/cancelRequest` for every superseded completion). The server runs without debounce, so
model calls start at once and cancels land while they run. Whatever the timing, the promise is about counts:
never more than one model call in flight, nothing left queued once the last keystroke is answered, and no more
model calls than keystrokes.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from tests.lsp_server.helpers import (
    inline_params,
    lsp_session,
    open_document,
    send_inline,
    stats,
    type_text,
    wait_for_model,
)

AUTOMATIC = types.InlineCompletionTriggerKind.Automatic
URI = "file:///tmp/diffill-tests/typing.py"
HEAD = "import os\n\n\ndef count_words(text):\n    "
TYPED = "words = text.split()"


def type_char(client, version: int, column: int, char: str) -> None:
    type_text(client, URI, version, 4, column, char)


async def test_a_cancelling_client_never_has_more_than_one_model_call_in_flight(checkpoint):
    init = {"completion": {"debounceMs": 0}}
    async with lsp_session("--model", str(checkpoint), init_options=init) as client:
        assert (await wait_for_model(client))["state"] == "ready"
        open_document(client, URI, HEAD + "\n")
        before = await stats(client)
        pending: list[tuple[str, asyncio.Future]] = []
        for index, char in enumerate(TYPED):
            type_char(client, index + 2, 4 + index, char)
            if pending:
                client.cancel_request(types.CancelParams(id=pending[-1][0]))
            msg_id = f"typing-{index}"
            pending.append((msg_id, send_inline(client, inline_params(URI, 4, 5 + index, AUTOMATIC), msg_id=msg_id)))
        answers = await asyncio.gather(*(answer for _, answer in pending), return_exceptions=True)
        after = await stats(client)

    last = answers[-1]
    assert isinstance(last, types.InlineCompletionList), last  # the keystroke the user stopped at is answered
    for answer in answers[:-1]:  # superseded: cancelled, or answered (empty when already stale)
        assert isinstance(answer, JsonRpcRequestCancelled | types.InlineCompletionList), answer
    assert after["model_in_flight_peak"] == 1
    assert after["model_in_flight"] == 0 and after["model_waiting"] == 0  # nothing piled up behind the last answer
    requests = after["requests"] - before["requests"]
    assert requests <= len(TYPED)
    assert after["model_calls"] - before["model_calls"] <= requests
    assert after["errors"] == 0
