"""A raw HTTP client for the serving tests: shows exactly what went over the wire (status, headers, body)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
