"""The language server runs a released diffusion coder's checkpoint (`--model DIR`) on the same request path as the
embedded model: it loads, reports the family, and its requests reach the adapter's runner with the prompt the
engine builds in-process."""

from __future__ import annotations

import pytest

from engine.adapters.families import DREAM
from engine.api import load_engine
from engine.contract import CompletionRequest
from tests.engine.adapter_fixtures import tiny_checkpoint
from tests.lsp_server.helpers import inline, lsp_session, open_document, wait_for_model

pytestmark = pytest.mark.asyncio

PREFIX, SUFFIX = "def add(a, b):\n    return ", "\n"


async def test_a_dream_checkpoint_serves_ghost_text_through_the_language_server(tmp_path) -> None:
    path = tiny_checkpoint(tmp_path / "dream", DREAM, seed=5)
    async with lsp_session("--model", str(path)) as client:
        status = await wait_for_model(client)
        assert status["state"] == "ready" and status["engine"]["family"] == "dream", status
        uri = "file:///tmp/diffill-tests/dream.py"
        open_document(client, uri, PREFIX + SUFFIX)
        items = await inline(client, uri, 1, len("    return "))
        status = await wait_for_model(client)
    runner = load_engine(path, device="cpu").runner
    canvas = min(32, runner.max_canvas)  # fim's single-line canvas, fitted to the model
    prompt = runner.prepare(CompletionRequest(PREFIX, SUFFIX, "python", canvas, 4))
    last = status["lastCompletion"]
    assert last is not None and last["context_tokens"] == len(prompt.tokens) and last["steps"] >= 1
    assert all(item.insert_text.strip() for item in items)  # empty candidates are never offered
