"""Completion requests against one shared server process: results, cancellation, staleness, cache, robustness.

Each test works on its own document URI, so tests sharing the server do not see each other's documents. The
server debounces automatic requests by 300 ms here, long enough that an edit or cancel sent right after a
request always lands inside the debounce window (messages are handled in order), so staleness is observed
deterministically rather than by racing the model.
"""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import LanguageClient

from tests.lsp_server.helpers import (
    inline,
    inline_params,
    insert,
    lsp_session,
    open_document,
    parses,
    send_inline,
    stats,
    syntax_errors,
    type_text,
    utf16_length,
    wait_for_model,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

AUTOMATIC = types.InlineCompletionTriggerKind.Automatic
# float32: the random test checkpoint's suggestions these tests look for (some pass the filters) are its float32
# ones; in bfloat16 ("auto" on a CPU with bf16 units) it writes other junk, all of it filtered.
SETTINGS = {
    "completion": {"debounceMs": 300},
    "languages": {"enabled": {"markdown": False}},
    "model": {"dtype": "float32"},
}

PYTHON = """import os


def read_lines(path):
    with open(path) as handle:
        return handle.read().splitlines()


def count_words(text):
    words = text.split()
    return len(words)


def main():
    total = 0
    for name in os.listdir("."):
        total += count_words(name)
    return total
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(checkpoint):
    async with lsp_session("--model", str(checkpoint), init_options=SETTINGS) as client:
        status = await wait_for_model(client)
        assert status["state"] == "ready", status
        yield client


def new_uri(suffix: str = ".py") -> str:
    return f"file:///tmp/diffill-tests/{uuid.uuid4().hex}{suffix}"


def cut_line(text: str, line: int, column: int) -> str:
    """The document with line `line` cut at `column`: the model is asked to complete the rest of the line."""
    lines = text.split("\n")
    lines[line] = lines[line][:column]
    return "\n".join(lines)


async def test_initialize_advertises_inline_and_classic_completion(client: LanguageClient):
    capabilities = client.initialize_result.capabilities
    assert capabilities.inline_completion_provider is not None
    assert capabilities.completion_provider is not None
    # Neovim 0.11 pops up on its own only after these: identifier characters, "." and "(" and space.
    triggers = set(capabilities.completion_provider.trigger_characters)
    assert set("azAZ09_.( ") <= triggers
    sync = capabilities.text_document_sync
    assert sync.change == types.TextDocumentSyncKind.Incremental


@pytest.mark.parametrize(
    ("line", "column"),
    [(10, 14), (9, 16), (17, 16), (13, 0)],
    ids=["return-len", "assignment", "call-args", "blank-line"],
)
async def test_inline_items_inserted_at_the_cursor_keep_the_file_parseable(client, line, column):
    text = cut_line(PYTHON, line, column)
    assert parses(text)
    uri = new_uri()
    open_document(client, uri, text)
    for item in await inline(client, uri, line, column):
        assert item.range.start == item.range.end == types.Position(line=line, character=column)
        assert parses(insert(text, line, column, item.insert_text)), repr(item.insert_text)


async def test_multi_line_items_for_an_empty_body_add_no_syntax_errors(client):
    text = PYTHON + "\n\ndef area(width, height):\n    "
    line, column = text.count("\n"), 4
    uri = new_uri()
    open_document(client, uri, text)
    for item in await inline(client, uri, line, column):
        after = insert(text, line, column, item.insert_text)
        assert syntax_errors(after) <= syntax_errors(text), repr(item.insert_text)


async def test_classic_completion_edit_replaces_the_word_and_inserts_the_text_at_the_cursor(client):
    text = cut_line(PYTHON, 10, 14)  # "    return len"
    uri = new_uri()
    open_document(client, uri, text)
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=10, character=14)
        )
    )
    assert result is not None and result.is_incomplete
    for item in result.items:
        edit = item.text_edit
        assert edit.range == types.Range(start=types.Position(line=10, character=11), end=types.Position(10, 14))
        assert edit.new_text.startswith("len")
        assert item.filter_text == edit.new_text  # clients filter by the word "len"; the item stays
        assert item.insert_text_format == types.InsertTextFormat.PlainText
        assert item.kind == types.CompletionItemKind.Text
        assert "\n" not in item.label
        applied = insert(text, 10, 14, edit.new_text[len("len") :])
        assert parses(applied), repr(edit.new_text)


async def test_cancel_request_answers_cancelled_and_runs_no_model(client):
    uri = new_uri()
    open_document(client, uri, PYTHON)
    before = await stats(client)
    request_id = f"cancel-{uuid.uuid4().hex}"
    pending = send_inline(client, inline_params(uri, 10, 14, kind=AUTOMATIC), msg_id=request_id)
    client.cancel_request(types.CancelParams(id=request_id))
    with pytest.raises(JsonRpcRequestCancelled):
        await pending
    after = await stats(client)
    assert after["model_calls"] == before["model_calls"]
    assert after["errors"] == before["errors"]


async def test_an_edit_makes_a_pending_request_stale_and_it_returns_nothing(client):
    uri = new_uri()
    open_document(client, uri, PYTHON)
    before = await stats(client)
    pending = send_inline(client, inline_params(uri, 10, 14, kind=AUTOMATIC))
    type_text(client, uri, 2, 10, 14, "(")
    result = await pending
    assert result is None or list(result.items) == []
    after = await stats(client)
    assert after["stale"] == before["stale"] + 1
    assert after["model_calls"] == before["model_calls"]


async def test_a_newer_request_for_the_same_document_supersedes_the_older_one(client):
    uri = new_uri()
    open_document(client, uri, PYTHON)
    before = await stats(client)
    older = send_inline(client, inline_params(uri, 10, 14, kind=AUTOMATIC))
    newer = send_inline(client, inline_params(uri, 9, 16, kind=AUTOMATIC))
    assert list((await older).items) == []
    await newer
    after = await stats(client)
    assert after["stale"] == before["stale"] + 1
    assert after["model_calls"] <= before["model_calls"] + 1


async def test_ghost_text_and_popup_requests_at_one_cursor_do_not_supersede_each_other(client):
    uri = new_uri(".txt")
    # Plain text: validation is line-based only, so even random weights show something here.
    open_document(client, uri, "The quick brown fox jumps over the lazy dog.\nIt was", language="plaintext")
    before = await stats(client)
    ghost = send_inline(client, inline_params(uri, 1, 6, kind=AUTOMATIC))
    popup = client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=6)
        )
    )
    ghost_items, popup_items = list((await ghost).items), list((await popup).items)
    after = await stats(client)
    assert after["stale"] == before["stale"]  # neither kind made the other stale
    assert ghost_items, "the model showed nothing"
    # One model call: the request that waited for the model found the other's answer in the cache.
    assert after["model_calls"] == before["model_calls"] + 1
    assert ["was" + item.insert_text for item in ghost_items] == [item.text_edit.new_text for item in popup_items]


async def _something_shown(client: LanguageClient) -> tuple[str, int, int, str]:
    """(uri, line, column, text) of a shown completion of at least two characters on one line.

    Plain text first: its validation is line-based only, so even random weights show something; then Python
    cursors, where a trained model is at home.
    """
    spots = [("plaintext", "The quick brown fox jumps over the lazy dog.\nIt was", 1, 6)]
    spots += [("python", cut_line(PYTHON, line, column), line, column) for line, column in [(10, 14), (9, 16)]]
    for language, text, line, column in spots:
        uri = new_uri()
        open_document(client, uri, text, language=language)
        for item in await inline(client, uri, line, column):
            if len(item.insert_text) > 1 and item.insert_text[0] not in "\r\n":
                return uri, line, column, item.insert_text
    pytest.fail("the model showed nothing to type along")


async def test_typing_the_start_of_a_shown_completion_reuses_it_without_a_model_call(client):
    uri, line, column, shown = await _something_shown(client)
    before = await stats(client)
    typed = shown[0]
    type_text(client, uri, 2, line, column, typed)
    follow = await inline(client, uri, line, column + utf16_length(typed), kind=AUTOMATIC)
    assert shown[1:] in [item.insert_text for item in follow]
    after = await stats(client)
    assert after["model_calls"] == before["model_calls"]
    assert after["cache_hits"] == before["cache_hits"] + 1


async def test_typing_at_the_cursor_extends_the_documents_context_cache_in_the_engine(client):
    uri = new_uri()
    lines = cut_line(PYTHON, 10, 14).split("\n")
    lines.insert(10, f"    # {uri}")  # right above the cursor: no other test's answer in the typed-prefix cache
    text = "\n".join(lines)
    open_document(client, uri, text)
    first = await stats(client)
    shown = {item.insert_text[:1] for item in await inline(client, uri, 11, 14)}
    assert (await stats(client))["model_calls"] == first["model_calls"] + 1
    typed = next(char for char in "~^`" if char not in shown)  # no cached remainder: the model runs again
    type_text(client, uri, 2, 11, 14, typed)
    before = await stats(client)
    await inline(client, uri, 11, 15)
    after = await stats(client)
    assert after["model_calls"] == before["model_calls"] + 1
    last = after["lastCompletion"]
    # The URI is the engine's session: only the tokens at the end of the prefix are computed again.
    assert last["computed_tokens"] < last["context_tokens"] // 4, last


async def test_crlf_and_surrogate_pairs_are_counted_in_utf16(client):
    text = 'label = "\U0001f600 ok"\r\nname = label\r\nsize = len\r\n'
    uri = new_uri()
    open_document(client, uri, text)
    # Column 10 is between the two UTF-16 units of the emoji: the cursor moves past the emoji (column 11).
    for character in (10, 11):
        for item in await inline(client, uri, 0, character):
            assert item.range.start == types.Position(line=0, character=11)
            assert parses(insert(text, 0, 11, item.insert_text)), repr(item.insert_text)
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(2, 10))
    )
    for item in result.items:
        assert item.text_edit.range == types.Range(start=types.Position(2, 7), end=types.Position(2, 10))
        assert parses(insert(text, 2, 10, item.text_edit.new_text[len("len") :]))


async def test_unknown_language_passes_through_with_line_truncation(client):
    uri = new_uri(".zig")
    open_document(client, uri, 'const std = @import("std");\nconst x = ', language="zig")
    for item in await inline(client, uri, 1, 10):
        assert "\n" not in item.insert_text.rstrip("\n")  # single-line request: one line at most


async def test_huge_binary_disabled_and_unopened_documents_get_empty_answers(client):
    huge, binary, markdown = new_uri(), new_uri(".bin"), new_uri(".md")
    open_document(client, huge, "x = 1\n" * 400_000)  # 2.4 MB
    open_document(client, binary, "ab\0cd\n", language="plaintext")
    open_document(client, markdown, "# Title\n\nSome text", language="markdown")
    before = await stats(client)
    assert await inline(client, huge, 1000, 5) == []
    assert await inline(client, binary, 0, 2) == []
    assert await inline(client, markdown, 2, 9) == []
    assert await inline(client, new_uri(), 0, 0) == []
    after = await stats(client)
    assert after["skipped"] == before["skipped"] + 3
    assert after["errors"] == before["errors"]
    assert any("larger than" in message.message for message in client.log_messages)


async def test_positions_outside_the_document_get_clean_answers(client):
    uri = new_uri()
    open_document(client, uri, "x = 1\ny = 2")
    assert await inline(client, uri, 7, 0) == []  # no such line
    for item in await inline(client, uri, 1, 99):  # past the end of a line: clamped to its end
        assert item.range.start == types.Position(line=1, character=5)
    before = await stats(client)
    assert before["errors"] == 0


async def test_min_confidence_one_keeps_every_suggestion_back(client, checkpoint, tmp_path):
    """completion.minConfidence reaches fim.validate: at 1.0 nothing is confident enough to show."""
    lines = PYTHON.split("\n")
    spots = [(i, len(line) // 2 + 1) for i, line in enumerate(lines) if line.strip()]  # every code line, mid-line
    texts = {spot: cut_line(PYTHON, *spot) for spot in spots}
    uris = {spot: new_uri() for spot in spots}
    shown = []
    for spot in spots:  # until one spot shows something with the default threshold
        open_document(client, uris[spot], texts[spot])
        if await inline(client, uris[spot], *spot):
            shown.append(spot)
            break
    assert shown, "the test checkpoint shows something at one of these spots with the default threshold"
    settings = SETTINGS | {"completion": {"debounceMs": 0, "minConfidence": 1.0}}
    async with lsp_session("--model", str(checkpoint), init_options=settings) as quiet:
        assert (await wait_for_model(quiet))["state"] == "ready"
        for spot in shown:
            open_document(quiet, uris[spot], texts[spot])
            assert await inline(quiet, uris[spot], *spot) == []

    # The model's own default threshold (its confidence.json) does the same with no setting at all, and the user's
    # setting overrides it.
    model = tmp_path / "calibrated"
    shutil.copytree(checkpoint, model)
    (model / "confidence.json").write_text(json.dumps({"coefficients": {"score": 1.0}, "min_confidence": 1.0}))
    for settings, expect_shown in ((SETTINGS, False), (SETTINGS | {"completion": {"minConfidence": 0.0}}, True)):
        async with lsp_session("--model", str(model), init_options=settings) as session:
            status = await wait_for_model(session)
            assert status["state"] == "ready"
            for spot in shown:
                open_document(session, uris[spot], texts[spot])
                assert bool(await inline(session, uris[spot], *spot)) is expect_shown
