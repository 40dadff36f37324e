"""A raw HTTP client for the serving tests: shows exactly what went over the wire (status, headers, body); and
`diffill serve` run as a real process."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\n\nprint(add(1, 2))\n"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def data(self) -> Any:
        ctype = self.headers.get("content-type", "")
        return msgpack.unpackb(self.body, raw=False) if "msgpack" in ctype else json.loads(self.body)


def call(
    url: str,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    token: str | None = None,
    content_type: str | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection; dict bodies go as msgpack to /v1/fim and /v1/cancel, JSON elsewhere."""
    if isinstance(body, dict):
        native = path in ("/v1/fim", "/v1/cancel")
        content_type = content_type or ("application/msgpack" if native else "application/json")
        body = msgpack.packb(body) if native else json.dumps(body).encode()
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


@contextmanager
def raw_socket(url: str, timeout: float = 30.0) -> Iterator[socket.socket]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def read_reply(sock: socket.socket) -> Reply:
    """Read one HTTP response with a Content-Length body from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(int(lines[0].split(" ")[1]), headers, body[:length])


def fim_body(**fields: Any) -> dict[str, Any]:
    return {"prefix": PREFIX, "suffix": SUFFIX, "language": "python", "canvas_length": 16, **fields}


@dataclass
class ServeProcess:
    """`diffill serve` as a subprocess on an ephemeral loopback port; `stderr` collects its log as it runs."""

    proc: subprocess.Popen[str]
    url: str
    lines: list[str]

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status (killed if it does not come)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    @property
    def stdout(self) -> str:
        """What the process wrote on stdout (read once it exited)."""
        assert self.proc.poll() is not None and self.proc.stdout is not None
        return self.proc.stdout.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def serve_process(model: Path, *args: str, preexec_fn: Callable[[], None] | None = None) -> Iterator[ServeProcess]:
    """Start ``python -m engine.cli serve --model MODEL --port 0 ARGS`` and wait until it listens."""
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--model", str(model), "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    assert proc.stderr is not None
    lines: list[str] = []
    url = None
    for line in proc.stderr:  # the process announces its address on stderr once it listens
        lines.append(line)
        if match := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line):
            url = match.group(1)
            break
    if url is None:
        proc.wait(timeout=30)
        raise AssertionError(f"the server never said where it listens:\n{''.join(lines)}")
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    running = ServeProcess(proc, url, lines)
    try:
        yield running
    finally:
        running.kill()
        reader.join(timeout=10)
