"""The command line: editor-supplied flags are accepted, `--tcp` serves a client over a socket, misuse is one line."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server.cli import build_parser
from tests.lsp_server.helpers import ENV, STATS, as_dict


def test_flags_editors_pass_are_accepted():
    args = build_parser().parse_args(["--stdio", "--clientProcessId=42", "--log-level", "debug"])
    assert (args.stdio, args.tcp, args.log_level) == (True, False, "DEBUG")


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(port, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--tcp", "--port", port])
    assert exit_.value.code == 2
    assert "argument --port" in capsys.readouterr().err


def test_an_address_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "lsp_server", "--tcp", "--port", str(port), "--log-level", "ERROR"]
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("diffill lsp: error: cannot listen on 127.0.0.1:") and "Traceback" not in done.stderr


async def test_tcp_transport_serves_a_client(tmp_path):
    command = [sys.executable, "-m", "lsp_server", "--tcp", "--port", "0", "--model", str(tmp_path / "none")]
    server = await asyncio.create_subprocess_exec(*command, env=ENV, stderr=asyncio.subprocess.PIPE)
    try:
        port = await asyncio.wait_for(_serving_port(server), timeout=30)
        drain = asyncio.ensure_future(server.stderr.read())  # keep reading, so the server never blocks on a log line
        client = LanguageClient("test", "0")
        for method in (types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE):
            client.feature(method)(lambda *_: None)
        await client.start_tcp("127.0.0.1", port)
        result = await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
        assert result.capabilities.inline_completion_provider is not None
        client.initialized(types.InitializedParams())
        status = as_dict(await client.protocol.send_request_async(STATS, {"waitForModel": 30}))
        assert status["state"] == "failed"  # no model there; the server answers all the same
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        await drain
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()


async def _serving_port(server: asyncio.subprocess.Process) -> int:
    """The port from the server's "Serving on ('127.0.0.1', PORT)" log line."""
    assert server.stderr is not None
    while line := (await server.stderr.readline()).decode():
        if match := re.search(r"Serving on .*?(\d+)\)", line):
            return int(match.group(1))
    raise AssertionError("the server exited without listening")
