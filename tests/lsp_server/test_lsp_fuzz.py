"""A real server process over stdio, fed malformed frames, wrong params and out-of-order lifecycle messages.

The client here writes raw bytes (a well-behaved LSP client cannot send most of these). After every bad input
the next normal request must be answered: the server resynchronises instead of going deaf, answers each invalid
request with the error code the spec names, never crashes and never logs a traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from tests.lsp_server.helpers import ENV, LOAD_TIMEOUT_S, SERVER

ANSWER_TIMEOUT_S = 30
URI = "file:///tmp/diffill-tests/fuzz.py"
TEXT = "def add(a, b):\n    return a + b\n"
INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, NOT_INITIALIZED = -32602, -32600, -32601, -32002


def frame(body: bytes, header: bytes = b"Content-Length", delta: int = 0) -> bytes:
    return header + b": %d\r\n\r\n" % (len(body) + delta) + body


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode()


class RawClient:
    """Writes raw bytes to the server's stdin; reads its framed answers, keeping responses by id."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.answers: dict[Any, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            try:
                header = await stdout.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the server exited
                return
            length = int(header.split(b":")[1].split(b"\r\n")[0])
            message = json.loads(await stdout.readexactly(length))
            if "id" in message and "method" not in message:
                self.answers[message["id"]] = message

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    def notify(self, method: str, params: Any = None) -> None:
        self.write(frame(encode({"method": method, "params": params})))

    def send(self, method: str, params: Any = None) -> int:
        msg_id = next(self.ids)
        self.write(frame(encode({"id": msg_id, "method": method, "params": params})))
        return msg_id

    async def answer(self, msg_id: Any) -> dict[str, Any]:
        async def arrived() -> dict[str, Any]:
            while msg_id not in self.answers:
                assert not self.reading.done(), f"the server stopped answering: {self.reading}"
                await asyncio.sleep(0.01)
            return self.answers.pop(msg_id)

        return await asyncio.wait_for(arrived(), ANSWER_TIMEOUT_S)

    async def error_code(self, msg_id: Any) -> int | None:
        return (await self.answer(msg_id)).get("error", {}).get("code")

    async def works(self) -> None:
        """A normal request right after a bad input is answered (the server did not go deaf)."""
        result = (await self.answer(self.send("diffill/stats", {})))["result"]
        assert result["errors"] == 0, result


def completion_params(**changes: Any) -> dict[str, Any]:
    params = {
        "textDocument": {"uri": URI},
        "position": {"line": 1, "character": 12},
        "context": {"triggerKind": 1},
    }
    return {**params, **changes}


async def start(*args: str) -> tuple[asyncio.subprocess.Process, RawClient]:
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(*SERVER, *args, stdin=pipe, stdout=pipe, stderr=pipe, env=ENV)
    return process, RawClient(process)


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    assert process.stderr is not None
    stderr = await asyncio.wait_for(process.stderr.read(), LOAD_TIMEOUT_S)
    return await asyncio.wait_for(process.wait(), LOAD_TIMEOUT_S), stderr.decode(errors="replace")


async def test_malformed_input_is_answered_per_spec_and_the_server_keeps_answering(checkpoint):
    process, client = await start("--model", str(checkpoint))
    try:
        # Before initialize: requests are refused, notifications dropped.
        assert await client.error_code(client.send("diffill/stats", {})) == NOT_INITIALIZED
        client.notify("textDocument/didOpen", {"textDocument": {"uri": URI}})
        assert await client.error_code(client.send("initialize", {"capabilities": 3})) == INVALID_PARAMS
        initialized = await client.answer(client.send("initialize", {"capabilities": {}}))  # a second try is fine
        assert "capabilities" in initialized["result"]
        assert await client.error_code(client.send("initialize", {"capabilities": {}})) == INVALID_REQUEST
        client.notify("initialized", {})
        item = {"uri": URI, "languageId": "python", "version": 1, "text": TEXT}
        client.notify("textDocument/didOpen", {"textDocument": item})
        await client.works()

        bad_frames = [
            b"Content-Length: abc\r\n\r\n{}",
            b"Content-Length: -1\r\n\r\n{}",
            b"Content-Length: 99999999999\r\n\r\n{}",  # once a MemoryError
            frame(encode({"id": "small", "method": "diffill/stats"}), delta=-5),
            b"Content-Length: 4\r\nthis is no header\r\n\r\n{}{}",
            b"\x00\xff garbage \r\n\r\n",
            frame(b"{not json"),
            frame(b"[1, 2, 3]"),
            frame(encode({"id": {"nested": True}, "method": "diffill/stats"})),
            frame(b'{"id": 5, "method": "diffill/stats"}'),  # no "jsonrpc": answered as an invalid request
        ]
        for bad in bad_frames:
            client.write(bad)
            await client.works()
        assert await client.error_code(5) == INVALID_REQUEST

        # Header names in lower case, and a Content-Length too large: the message is read, the rest is the next one.
        lower_id = next(client.ids)
        client.write(frame(encode({"id": lower_id, "method": "diffill/stats"}), header=b"content-length"))
        assert "result" in await client.answer(lower_id)
        large_id = next(client.ids)
        client.write(frame(encode({"id": large_id, "method": "diffill/stats"}), delta=10))
        await client.works()  # its first bytes completed the previous message
        assert "result" in await client.answer(large_id)

        invalid_params = [
            ("textDocument/inlineCompletion", completion_params(position={"line": "one", "character": 0})),
            ("textDocument/inlineCompletion", {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 1}}),
            ("textDocument/inlineCompletion", completion_params(position={"line": -1, "character": 0})),
            ("textDocument/completion", {"position": {"line": 0, "character": 0}}),
            ("textDocument/completion", [1, 2]),
        ]
        for method, params in invalid_params:
            assert await client.error_code(client.send(method, params)) == INVALID_PARAMS, (method, params)
        body = encode({"id": "utf8", "method": "textDocument/completion", "params": completion_params()})
        client.write(frame(body.replace(URI.encode(), URI.encode() + b"\xff\xfe")))
        assert await client.error_code("utf8") == INVALID_PARAMS
        client.notify("textDocument/didChange", {"textDocument": "wrong", "contentChanges": 3})  # dropped
        assert await client.error_code(client.send("no/such/method", {})) == METHOD_NOT_FOUND

        # After all that, a real completion is answered (empty or not) and nothing counted as an error.
        ready = (await client.answer(client.send("diffill/stats", {"waitForModel": LOAD_TIMEOUT_S})))["result"]
        assert ready["state"] == "ready", ready
        result = (await client.answer(client.send("textDocument/inlineCompletion", completion_params())))["result"]
        assert isinstance(result["items"], list)
        await client.works()

        assert (await client.answer(client.send("shutdown")))["result"] is None
        assert await client.error_code(client.send("diffill/stats", {})) == INVALID_REQUEST
        client.notify("textDocument/didClose", {"textDocument": {"uri": URI}})  # dropped
        client.notify("exit")
        code, stderr = await finish(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "over the 16 MiB limit" in stderr


async def test_exit_without_shutdown_exits_1_and_the_end_of_input_stops_the_server(tmp_path):
    process, client = await start("--model", str(tmp_path / "none"))
    await client.answer(client.send("initialize", {"capabilities": {}}))
    client.notify("exit")
    code, _ = await finish(process)
    assert code == 1

    process, client = await start("--model", str(tmp_path / "none"))
    assert process.stdin is not None
    process.stdin.close()  # the editor went away without a word
    code, stderr = await finish(process)
    assert code == 1 and "Traceback" not in stderr
