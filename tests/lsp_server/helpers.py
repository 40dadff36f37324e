"""Helpers that start the real server process (`python -m lsp_server`) over stdio and drive it with pytest-lsp.

pytest-lsp's `@pytest_lsp.fixture` takes its server command at import time, but the checkpoint directory is a
session fixture, so sessions are opened here with the same pieces it uses (`ClientServerConfig.start`,
`initialize_session`, `shutdown_session`). Servers are shared per module where tests do not disturb each other
(distinct document URIs), because each start imports torch and loads a model (seconds on 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from fim.languages import get_parser

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "lsp_server", "--log-level", "INFO"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
STATS = "diffill/stats"
LOAD_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 10


def _client_factory(features: dict[str, Callable[..., Any]]) -> Callable[[], LanguageClient]:
    def make() -> LanguageClient:
        client = LanguageClient(converter_factory=default_converter)
        register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, **features})
        return client

    return make


@asynccontextmanager
async def lsp_session(
    *args: str,
    init_options: Any = None,
    configuration: Any = None,
    features: dict[str, Callable[..., Any]] | None = None,
    client: str = "visual-studio-code",
    root_uri: str | None = None,
) -> AsyncIterator[LanguageClient]:
    """A started, initialized server; `client.initialize_result` holds its InitializeResult."""
    config = ClientServerConfig(
        server_command=[*SERVER, *args], client_factory=_client_factory(features or {}), server_env=ENV
    )
    lsp = await config.start()
    if configuration is not None:
        lsp.set_configuration(configuration, section="diffill")
    try:
        params = types.InitializeParams(
            capabilities=client_capabilities(client), initialization_options=init_options, root_uri=root_uri
        )
        lsp.initialize_result = await lsp.initialize_session(params)
        yield lsp
    finally:
        await _close(lsp)


async def _close(lsp: LanguageClient) -> None:
    """shutdown + exit; a server that does not exit in time is killed (pygls's stop() waits for the exit)."""
    try:
        await asyncio.wait_for(lsp.shutdown_session(), SHUTDOWN_TIMEOUT_S)
    except Exception:
        pass
    process = lsp._server
    if process is not None and process.returncode is None:
        process.kill()
    await lsp.stop()


async def stats(client: LanguageClient, wait: float = 0) -> dict[str, Any]:
    """The server's counters; with `wait`, after the pending model load settles (ready or failed)."""
    result = await client.protocol.send_request_async(STATS, {"waitForModel": wait} if wait else {})
    return as_dict(result)


def as_dict(value: Any) -> Any:
    """pygls hands untyped results over as namedtuples; plain dicts and lists read better in assertions."""
    if hasattr(value, "_asdict"):
        return {key: as_dict(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [as_dict(item) for item in value]
    return value


async def wait_for_model(client: LanguageClient) -> dict[str, Any]:
    return await stats(client, wait=LOAD_TIMEOUT_S)


def open_document(client: LanguageClient, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    item = types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))


def type_text(client: LanguageClient, uri: str, version: int, line: int, character: int, text: str) -> None:
    """didChange inserting `text` at (line, UTF-16 character), as an editor sends a keystroke or a paste."""
    at = types.Position(line=line, character=character)
    change = types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)
    identifier = types.VersionedTextDocumentIdentifier(uri=uri, version=version)
    params = types.DidChangeTextDocumentParams(text_document=identifier, content_changes=[change])
    client.text_document_did_change(params)


def inline_params(
    uri: str,
    line: int,
    character: int,
    kind: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Invoked,
) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=kind),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
    )


def send_inline(client: LanguageClient, params: types.InlineCompletionParams, msg_id: str | None = None) -> Any:
    """Send an inline completion request now (the `*_async` methods send only once awaited); await the result."""
    sent = client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
    return asyncio.wrap_future(sent)


async def inline(client: LanguageClient, uri: str, line: int, character: int, **kwargs: Any) -> list[Any]:
    result = await client.text_document_inline_completion_async(inline_params(uri, line, character, **kwargs))
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)


def offset_of(text: str, line: int, utf16: int) -> int:
    """String index of an LSP (line, UTF-16 column) position, computed independently of the server's code."""
    starts = [0, *(match.end() for match in re.finditer(r"\r\n|\r|\n", text))]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    content = text[starts[line] : end].rstrip("\r\n")
    units = 0
    for index, char in enumerate(content):
        if units >= utf16:
            return starts[line] + index
        units += 2 if ord(char) > 0xFFFF else 1
    return starts[line] + len(content)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def insert(text: str, line: int, utf16: int, new_text: str) -> str:
    at = offset_of(text, line, utf16)
    return text[:at] + new_text + text[at:]


def syntax_errors(text: str, language: str = "python") -> int:
    """ERROR and MISSING nodes in the tree-sitter parse of `text` (fim's parsers)."""
    parser = get_parser(language)
    assert parser is not None
    stack, count = [parser.parse(text.encode("utf-8", "surrogatepass")).root_node], 0
    while stack:
        node = stack.pop()
        count += node.is_error or node.is_missing
        if node.has_error:
            stack.extend(node.children)
    return count


def parses(text: str, language: str = "python") -> bool:
    return syntax_errors(text, language) == 0
