"""A Hugging Face Hub stand-in on 127.0.0.1 serving checkpoint directories the way huggingface_hub reads them.

The routes ``snapshot_download`` (huggingface_hub 0.3x-2.x) calls, with the headers it checks:

* ``GET /api/models/{org}/{name}[/revision/{rev}]``: model info -- ``sha`` (the commit) and ``siblings``;
* ``GET /api/models/{org}/{name}/tree/{commit}``: the file listing (``type``, ``path``, ``size``, ``oid``);
* ``HEAD /{org}/{name}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag``, ``Content-Length``;
* ``GET`` of the same: the bytes, honouring ``Range`` (resumed downloads).

A missing repository is a 404 with ``X-Error-Code: RepoNotFound``, a missing revision ``RevisionNotFound``, a
missing file ``EntryNotFound``, as the Hub answers. Every request (with its Range header) is recorded; ``cut_once``
drops the connection part-way through a file's first download.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubHandler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows failures, not traffic
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: str) -> None:
        body = json.dumps({"error": code}).encode()
        self._reply(404, body, {"X-Error-Code": code, "Content-Type": "application/json"})

    def _route(self) -> None:
        path = unquote(urlsplit(self.path).path)
        byte_range = self.headers.get("Range")
        self.server.requests.append(f"{self.command} {path}" + (f" {byte_range}" if byte_range else ""))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) in (4, 6):
            repo = "/".join(parts[2:4])
            kind, rev = (parts[4], parts[5]) if len(parts) == 6 else ("revision", "main")
            if repo not in self.server.repos:
                return self._error("RepoNotFound")
            if rev not in ("main", COMMIT):
                return self._error("RevisionNotFound")
            files = self.server.files(repo)
            if kind == "revision":
                info = {"id": repo, "modelId": repo, "sha": COMMIT, "private": False}
                info["siblings"] = [{"rfilename": name} for name in files]
                return self._reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
            if kind == "tree":
                tree = [{"type": "file", "path": n, "size": len(b), "oid": _oid(b)} for n, b in files.items()]
                return self._reply(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if repo not in self.server.repos:
                return self._error("RepoNotFound")
            data = self.server.files(repo).get(name)
            if data is None:
                return self._error("EntryNotFound")
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_oid(data)}"', "Accept-Ranges": "bytes"}
            start = _range_start(self.headers.get("Range"))
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                return self._reply(206, data[start:], headers)
            if self.command == "GET" and name in self.server.cut_once:  # a connection lost mid-file, once
                self.send_response(200)
                for key, value in (headers | {"Content-Length": str(len(data))}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data[: self.server.cut_once.pop(name)])
                self.close_connection = True
                return None
            return self._reply(200, data, headers)
        self._reply(404, b"not found")

    do_GET = do_HEAD = _route


def _oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header.removeprefix("bytes=").split("-")[0] or 0)


class HubServer(ThreadingHTTPServer):
    """Serves {repo_id: directory}; files are read at request time. Use as a context manager."""

    daemon_threads = True
    request_queue_size = 64  # snapshot_download opens 8 connections at once

    def __init__(self, repos: dict[str, Path], cut_once: dict[str, int] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.repos = repos
        self.cut_once = dict(cut_once or {})  # file name -> bytes sent before the connection drops
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def files(self, repo: str) -> dict[str, bytes]:
        root = self.repos[repo]
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
