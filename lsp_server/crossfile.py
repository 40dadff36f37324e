"""Cross-file context in the language server: chunks of the editor's other documents and of workspace files.

The event loop only records where the user works (``touched``: a dict write per open, edit or completion); the
model worker turns those marks into regions of the ring buffer (``fim.crossfile.RecentChunks``) and collects the
snippets for a request (``fim.crossfile.collect``: imported definitions resolved with tree-sitter, recent regions,
ranked and cut to ``crossFile.maxTokens``), so no file is read or parsed on the event loop. Reads are limited to
what the editor opened and to files under the document's workspace folder (``DiskReader``: no binary or huge files;
parses and reads cached). A document outside every workspace folder gets no cross-file context and gives none.

``last`` (what the last request sent: path and text of each chunk) is reported by ``diffill/stats`` so clients and
tests can see what the model was shown.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pygls import uris
from pygls.workspace import Workspace

from fim.crossfile import DiskReader, RecentChunks, Snippet, collect, relative_path
from fim.languages import normalize_language
from lsp_server.documents import Snapshot, rejection
from lsp_server.settings import CrossFileSettings

if TYPE_CHECKING:
    from fim.request import TokenCounter

__all__ = ["CrossFile"]


def _fs_path(uri: str) -> Path | None:
    path = uris.to_fs_path(uri) if uri.startswith("file:") else None
    return Path(path) if path else None


class CrossFile:
    """The server's cross-file state: the ring buffer, pending marks, disk readers per workspace folder."""

    def __init__(self, settings: CrossFileSettings | None = None, max_file_bytes: int = 2_000_000) -> None:
        self.settings = settings or CrossFileSettings()
        self.max_file_bytes = max_file_bytes
        self.ring = RecentChunks(self.settings.ring_chunks, self.settings.chunk_lines)
        self.last: list[Snippet] = []
        self._pending: dict[str, int] = {}
        self._readers: dict[Path, DiskReader] = {}
        self._lock = threading.Lock()

    def configure(self, settings: CrossFileSettings, max_file_bytes: int) -> None:
        if settings != self.settings:
            self.settings = settings
            self.ring = RecentChunks(settings.ring_chunks, settings.chunk_lines)
        self.max_file_bytes = max_file_bytes

    # -- event loop: O(1) ---------------------------------------------------------------------------------------

    def touched(self, uri: str, line: int) -> None:
        """The user opened, edited or asked for a completion at `line` of `uri` (materialised by the worker)."""
        if self.settings.max_tokens > 0:
            with self._lock:
                self._pending.pop(uri, None)
                self._pending[uri] = line  # most recent last

    def forget(self, uri: str) -> None:
        with self._lock:
            self._pending.pop(uri, None)
        self.ring.forget(uri)

    # -- model worker -------------------------------------------------------------------------------------------

    @staticmethod
    def root_of(workspace: Workspace, path: Path) -> Path | None:
        """The innermost workspace folder (or the root) holding `path`, else None."""
        roots = [_fs_path(folder.uri) for folder in workspace.folders.values()]
        roots.append(Path(workspace.root_path) if workspace.root_path else None)
        holding = [r for r in roots if r is not None and path.resolve().is_relative_to(r.resolve())]
        return max(holding, key=lambda r: len(r.parts)) if holding else None

    def _reader(self, root: Path) -> DiskReader:
        with self._lock:
            reader = self._readers.get(root)
            if reader is None:
                reader = self._readers[root] = DiskReader(root, max_bytes=min(self.max_file_bytes, 1_000_000))
            return reader

    def _materialise(self, workspace: Workspace) -> None:
        """Turn the pending marks into ring-buffer regions (documents outside the workspace, huge or binary: none)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for uri, line in pending.items():
            document = workspace.text_documents.get(unquote(uri))  # pygls keys documents by unquoted URI
            path = _fs_path(uri)
            if document is None or path is None or (root := self.root_of(workspace, path)) is None:
                continue
            text = document.source
            if rejection(text, self.max_file_bytes) is None and (rel := relative_path(path, root)) is not None:
                self.ring.add(uri, rel, text, line)

    def _open_text(self, workspace: Workspace, path: Path) -> str | None:
        """The editor's text of the open document at `path` (unsaved edits win over the disk)."""
        for uri, document in list(workspace.text_documents.items()):
            candidate = _fs_path(uri)
            if candidate is not None and candidate.resolve() == path.resolve():
                text = document.source
                return text if rejection(text, self.max_file_bytes) is None else None
        return None

    def snippets(
        self, workspace: Workspace, document: Snapshot, offset: int, budget: int, count: TokenCounter
    ) -> list[Snippet]:
        """What to show the model for this request (blocking: tree-sitter, file reads). Remembered as `last`."""
        self._materialise(workspace)
        path = _fs_path(document.uri)
        root = self.root_of(workspace, path) if path is not None else None
        if budget <= 0 or path is None or root is None:
            self.last = []
            return []
        disk = self._reader(root)

        open_paths = {p.resolve() for uri in list(workspace.text_documents) if (p := _fs_path(uri)) is not None}

        def read(target: Path) -> str | None:
            text = self._open_text(workspace, target) if target.resolve() in open_paths else None
            return text if text is not None else disk(target)

        def exists(target: Path) -> bool:  # an open document not saved yet counts
            return target.resolve() in open_paths or target.is_file()

        found = collect(
            document.text,
            offset,
            budget=budget,
            count=count,
            path=path,
            root=root,
            read=read,
            language=normalize_language(document.language_id),
            recent=self.ring.snippets(exclude=document.uri),
            exists=exists,
        )
        self.last = found
        return found

    def status(self) -> dict[str, Any]:
        return {
            "maxTokens": self.settings.max_tokens,
            "recentChunks": len(self.ring),
            "last": [{"path": s.path, "kind": s.kind, "text": s.text} for s in self.last],
        }
