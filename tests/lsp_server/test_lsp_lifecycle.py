"""Server lifecycle against real server processes: model loading, settings, failures the server must survive.

Each test starts its own server, since each looks at startup or changes settings. To observe "before the model
is ready" deterministically, the client holds its answer to `window/workDoneProgress/create`: the server asks for
a progress token before it starts loading, so until the client answers, the model cannot be ready.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp_server.helpers import as_dict, inline, lsp_session, open_document, stats, wait_for_model

STATUS = "diffill/status"

TEXT = "def add(a, b):\n    return a + b\n"


def held_progress_create(gate: asyncio.Event):
    async def create(client: LanguageClient, params: types.WorkDoneProgressCreateParams) -> None:
        await gate.wait()
        client.progress_reports.setdefault(params.token, [])

    return create


def shown(client: LanguageClient, kind: types.MessageType) -> list[str]:
    return [message.message for message in client.messages if message.type == kind]


async def test_requests_before_the_model_is_ready_get_empty_answers_and_loading_reports_progress(checkpoint):
    gate, notes = asyncio.Event(), []
    features = {
        types.WINDOW_WORK_DONE_PROGRESS_CREATE: held_progress_create(gate),
        STATUS: lambda params: notes.append(as_dict(params)),  # no `ls`/client parameter: pygls passes params only
    }
    async with lsp_session("--model", str(checkpoint), features=features) as client:
        open_document(client, "file:///tmp/early.py", TEXT)
        assert await inline(client, "file:///tmp/early.py", 1, 16) == []
        early = await stats(client)
        assert early["state"] in ("idle", "loading")
        assert early["not_ready"] == 1 and early["errors"] == 0
        gate.set()
        ready = await wait_for_model(client)
        assert ready["state"] == "ready", ready
        # diffill/status announced each change; the last one went out before the answer to waitForModel.
        assert [note["state"] for note in notes] == ["loading", "ready"]
        [reports] = client.progress_reports.values()
        assert [report.kind for report in reports] == ["begin", "report", "end"]
        await inline(client, "file:///tmp/early.py", 1, 16)  # answered by the model now, without error
        assert (await stats(client))["model_calls"] == 1


async def test_a_missing_model_or_unreachable_remote_engine_is_shown_and_the_server_stays_up(tmp_path):
    uri = "file:///tmp/nomodel.py"
    async with lsp_session("--model", str(tmp_path / "no-such-model")) as client:
        status = await wait_for_model(client)
        assert status["state"] == "failed"
        assert "no-such-model" in status["error"]
        [error] = shown(client, types.MessageType.Error)
        assert "could not load the model" in error
        open_document(client, uri, TEXT)
        assert await inline(client, uri, 1, 16) == []
        position = types.Position(line=1, character=8)
        params = types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position)
        assert list((await client.text_document_completion_async(params)).items) == []

        # Push-style configuration change to a remote engine nobody listens for (port 9: discard).
        remote = {"diffill": {"remote": {"url": "http://127.0.0.1:9", "token": "secret-token"}}}
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=remote))
        status = await wait_for_model(client)
        assert status["state"] == "failed"
        errors = shown(client, types.MessageType.Error)
        assert len(errors) == 2 and "remote engine" in errors[1] and "secret-token" not in errors[1]
        assert await inline(client, uri, 1, 16) == []
        assert (await stats(client))["errors"] == 0


async def test_invalid_settings_are_shown_and_configuration_changes_are_reread(checkpoint, tmp_path):
    init = {"completion": {"steps": 0, "threshold": "high", "debounceMs": 10}, "model": {"device": "tpu"}}
    configuration = {"completion": {"temperature": -1}, "model": {"path": str(tmp_path / "missing")}}
    async with lsp_session("--model", str(checkpoint), init_options=init, configuration=configuration) as client:
        assert (await wait_for_model(client))["state"] == "failed"  # the editor's model.path wins over --model
        warnings = "\n".join(shown(client, types.MessageType.Warning))
        for key in ("completion.steps", "completion.threshold", "model.device", "completion.temperature"):
            assert f"diffill.{key}" in warnings
        assert "debounceMs" not in warnings  # valid values are kept

        # Pull-style change: the client announces it, the server asks workspace/configuration again.
        client.set_configuration(
            {"model": {"path": str(checkpoint)}, "languages": {"enabled": "yes"}}, section="diffill"
        )
        warning = client.protocol.wait_for_notification_async(types.WINDOW_SHOW_MESSAGE)  # registered now
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        assert "diffill.languages.enabled" in (await warning).message
        status = await wait_for_model(client)
        assert status["state"] == "ready", status  # device "tpu" fell back to "auto"


async def test_the_model_threads_setting_sets_the_cpu_threads_and_a_change_reloads(checkpoint):
    init = {"model": {"threads": 1}}
    async with lsp_session("--model", str(checkpoint), init_options=init, configuration={}) as client:
        status = await wait_for_model(client)
        assert status["state"] == "ready", status
        assert status["engine"]["cpu_threads"] == 1
        client.set_configuration({"model": {"threads": 2}}, section="diffill")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        for _ in range(100):  # the reload runs in the background; poll the server's own report
            status = await stats(client)
            if status["state"] == "ready" and status["engine"]["cpu_threads"] == 2:
                break
            await asyncio.sleep(0.1)
        assert status["engine"]["cpu_threads"] == 2, status
