"""Cross-file context through the real server: what the model is shown from other files, and what it costs.

One server process with a workspace root (a temporary project); `diffill/stats` reports the chunks the last request
sent the engine (``crossFile.last``) and the engine's own stats (``lastCompletion``: context tokens, tokens computed
rather than reused from the session cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from engine.layout import N_CONTEXT_TAGS, chunk_text
from engine.tokenizer import CodeTokenizer
from tests.lsp_server.helpers import inline, lsp_session, open_document, stats, type_text, wait_for_model

pytestmark = pytest.mark.asyncio(loop_scope="module")

BUDGET = 240
SETTINGS = {"crossFile": {"maxTokens": BUDGET, "chunkLines": 8}}

UTIL = '''"""Helpers of the package."""


def frobnicate(left: int, right: int = 2) -> int:
    """Combine two numbers the frobnicating way."""
    return left * right + 1
'''

MAIN = """from pkg.util import frobnicate
from pkg.shapes import Square


def run(x):
    s = Square()
    y = frobnicate(x)
    return y
"""

SHAPES = '''class Square:
    """A square."""

    def area(self) -> int:
        return 4
'''

NOTES = "\n".join(f"step_{i} = {i}" for i in range(40)) + "\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "shapes.py").write_text(SHAPES)  # on disk only: read from the workspace
    (root / "pkg" / "main.py").write_text(MAIN)
    (root / "pkg" / "blob.py").write_bytes(b"def hidden():\x00\n")  # binary: never read
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(checkpoint, project):
    async with lsp_session("--model", str(checkpoint), init_options=SETTINGS, root_uri=project.as_uri()) as client:
        status = await wait_for_model(client)
        assert status["state"] == "ready", status
        yield client


def last_chunks(status: dict) -> list[dict]:
    return status["crossFile"]["last"]


async def complete_at(client: LanguageClient, uri: str, line: int, character: int) -> dict:
    await inline(client, uri, line, character)
    return await stats(client)


async def test_a_completion_sees_a_definition_from_another_open_file(
    client: LanguageClient, project: Path, checkpoint: Path
):
    # pkg/util.py exists only in the editor (never saved): the import resolves to the open document.
    open_document(client, (project / "pkg" / "util.py").as_uri(), UTIL)
    main = (project / "pkg" / "main.py").as_uri()
    open_document(client, main, MAIN)
    status = await complete_at(client, main, 6, len("    y = frob"))
    chunks = {c["path"]: c for c in last_chunks(status)}
    assert "def frobnicate(left: int, right: int = 2) -> int:" in chunks["pkg/util.py"]["text"]
    assert "Combine two numbers" in chunks["pkg/util.py"]["text"]
    assert "return left * right" not in chunks["pkg/util.py"]["text"]  # stubs: no bodies
    assert "class Square:" in chunks["pkg/shapes.py"]["text"]  # read from disk under the root
    assert chunks["pkg/util.py"]["kind"] == "definitions"
    # The engine's prompt is exactly the window (the whole small file) plus these chunks and the four FIM tags.
    tok = CodeTokenizer.load(checkpoint)
    cursor = MAIN.index("y = frob") + len("y = frob")
    window = len(tok.encode(MAIN[:cursor])) + len(tok.encode(MAIN[cursor:]))
    sent = sum(len(tok.encode(chunk_text(c["path"], c["text"], "python"))) for c in last_chunks(status))
    assert status["lastCompletion"]["context_tokens"] == N_CONTEXT_TAGS + window + sent


async def test_chunks_stay_within_the_token_budget(client: LanguageClient, project: Path, checkpoint: Path):
    tok = CodeTokenizer.load(checkpoint)
    status = await complete_at(client, (project / "pkg" / "main.py").as_uri(), 7, len("    return y"))
    chunks = last_chunks(status)
    assert chunks
    used = sum(len(tok.encode(chunk_text(c["path"], c["text"], "python"))) for c in chunks)
    assert used <= BUDGET


async def test_regions_of_other_documents_recently_edited_are_shown(client: LanguageClient, project: Path):
    notes = (project / "notes.py").as_uri()
    open_document(client, notes, NOTES)
    type_text(client, notes, 2, 30, 0, "marker_value = 99\n")
    status = await complete_at(client, (project / "pkg" / "main.py").as_uri(), 4, len("def run(x):"))
    recent = [c for c in last_chunks(status) if c["kind"] == "recent"]
    assert [c["path"] for c in recent] == ["notes.py"]
    assert "marker_value = 99" in recent[0]["text"]
    assert "step_0 =" not in recent[0]["text"]  # the region around the edit, not the whole file


async def test_files_outside_the_workspace_and_binary_files_are_never_shown(client: LanguageClient, project: Path):
    outside = project.parent / f"{project.name}-outside.py"
    uri = outside.as_uri()
    open_document(client, uri, "secret_token = 'do not send'\n")
    main = (project / "pkg" / "main.py").as_uri()
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=main, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=MAIN + "from pkg.blob import hidden\n")],
        )
    )
    await inline(client, uri, 0, 5)  # a completion in the outside file marks it as worked on
    status = await complete_at(client, main, 6, len("    y = frob"))
    texts = " ".join(c["text"] for c in last_chunks(status))
    assert "secret_token" not in texts
    assert "hidden" not in texts
    assert all(not c["path"].startswith("..") for c in last_chunks(status))
    # The outside document itself gets no cross-file context. Asked at a cursor the first request's shown texts cannot
    # answer (the typed-prefix cache serves only cursors after it), so this request reaches the model and sets `last`.
    before = status
    status = await complete_at(client, uri, 0, 3)
    assert status["model_calls"] == before["model_calls"] + 1 and status["cache_hits"] == before["cache_hits"]
    assert last_chunks(status) == []


async def test_unchanged_chunks_reuse_the_cached_prefill(client: LanguageClient, project: Path, checkpoint: Path):
    uri = (project / "pkg" / "cached.py").as_uri()
    text = "from pkg.util import frobnicate\n\n\ndef go(a):\n    b = frobnicate(a)\n    c = b + 1\n    return c\n"
    open_document(client, uri, text)
    first = await complete_at(client, uri, 4, len("    b = frob"))
    second = await complete_at(client, uri, 5, len("    c = b"))  # elsewhere: the suffix changes, not the chunks
    assert last_chunks(first) == last_chunks(second) != []
    tok = CodeTokenizer.load(checkpoint)
    chunk_tokens = sum(len(tok.encode(chunk_text(c["path"], c["text"], "python"))) for c in last_chunks(second))
    engine = second["lastCompletion"]
    assert engine["computed_tokens"] <= engine["context_tokens"] - chunk_tokens  # the chunks came from the cache
