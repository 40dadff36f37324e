"""The language server runs a released diffusion coder's checkpoint (`--model DIR`, every family's release layout) on
the same request path as the embedded model: it loads, reports the family, and its requests reach the adapter's
runner with the prompt the engine builds in-process."""

from __future__ import annotations

import pytest

from engine.api import load_engine
from engine.contract import CompletionRequest
from fim.request import FimSettings, build_request
from tests.lsp_server.helpers import inline, lsp_session, open_document, wait_for_model

pytestmark = pytest.mark.asyncio

PREFIX, SUFFIX = "def add(a, b):\n    return ", "\n"


# One LSP session costs ~10 s on 2 cores: Dream, and one of each new layout (CoDA: Qwen3 + shift; Tiny-A2D-Qwen3: no
# shift). Every family runs through `diffill serve` (tests/serve/test_serve_families.py) and the engine tests.
@pytest.mark.parametrize("family_checkpoint", ["dream", "coda", "a2d-qwen3"], indirect=True)
async def test_a_released_checkpoint_serves_ghost_text_through_the_language_server(family_checkpoint) -> None:
    family, path = family_checkpoint
    # No follow-up requests (fim.ask: a random model's lines rarely parse), so the last engine call is the request's.
    async with lsp_session("--model", str(path), init_options={"completion": {"repairs": 0}}) as client:
        status = await wait_for_model(client)
        assert status["state"] == "ready" and status["engine"]["family"] == family.name, status
        uri = f"file:///tmp/diffill-tests/{family.name}.py"
        open_document(client, uri, PREFIX + SUFFIX)
        items = await inline(client, uri, 1, len("    return "))
        status = await wait_for_model(client)
    runner = load_engine(path, device="cpu").runner
    canvas = FimSettings().fitted({"max_canvas": runner.max_canvas}).single_line_canvas  # as the server fits it
    sent = build_request(PREFIX + SUFFIX, len(PREFIX), "python")  # the server sends model_prefix (space healed)
    prompt = runner.prepare(CompletionRequest(sent.model_prefix, sent.suffix, "python", canvas, 4))
    last = status["lastCompletion"]
    assert last is not None and last["context_tokens"] == len(prompt.tokens) and last["steps"] >= 1
    assert all(item.insert_text.strip() for item in items)  # empty candidates are never offered
