"""Cross-file context for training rows: chunks of related files of the same package, imports first.

So that the model learns to use the chunks the language server sends (docs/context.md), a training example may
carry chunks built the way inference builds them -- ``fim.crossfile.collect`` on the example's document, with the
corpus standing in for the workspace: the definitions the file imports from corpus files of its package tree (as
stubs), and regions of other files of its directory standing in for the editor's recently edited documents. Paths
are shown relative to the package's import root (``PackageIndex.import_root``), as a workspace-relative path would
read. Repository-level pre-training packs files with their dependencies the same way
(DeepSeek-Coder, Qwen2.5-Coder); here it is off by default (``--cross-file-rate 0``).

``PackageIndex`` reads only the corpus file's record offsets and paths once (one pass over the file); record texts
are read when a chunk needs them, through a small cache.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from fim.crossfile import Snippet, collect, region

RECENT_FILES = 2  # other files of the directory shown as "recently edited" regions, at most
RECENT_LINES = 16  # the language server's default region (crossFile.chunkLines)
_PATH = re.compile(rb'^\{"path": ("(?:[^"\\]|\\.)*")')  # build_corpus writes "path" first


def _record_path(line: bytes) -> str:
    match = _PATH.match(line)
    return json.loads(match.group(1)) if match else json.loads(line)["path"]


class PackageIndex:
    """Where each corpus record is (byte offset), by path and by directory; reads texts on demand."""

    def __init__(self, corpus: BinaryIO) -> None:
        self.corpus = corpus
        self.offsets: dict[str, int] = {}
        self.directories: dict[str, list[str]] = defaultdict(list)
        position = 0
        corpus.seek(0)
        for line in corpus:
            if line.strip():
                path = _record_path(line)
                self.offsets[path] = position
                self.directories[str(PurePosixPath(path).parent)].append(path)
            position += len(line)
        self.text = functools.lru_cache(maxsize=256)(self._text)

    def _text(self, path: str) -> str | None:
        offset = self.offsets.get(path)
        if offset is None:
            return None
        self.corpus.seek(offset)
        return json.loads(self.corpus.readline())["text"]

    @staticmethod
    def import_root(path: str) -> PurePosixPath:
        """The directory the file's package is imported from: the nearest ancestor whose name is not a Python
        identifier (``site-packages``, ``python3.11``) -- package directories always are one, and the corpus drops
        the short ``__init__.py`` files that would mark them."""
        directory = PurePosixPath(path).parent
        while directory.name.isidentifier() and directory.parent != directory:
            directory = directory.parent
        return directory


def related_chunks(
    index: PackageIndex, path: str, prefix: str, suffix: str, language: str, rng: random.Random, budget: int
) -> tuple[tuple[str, str], ...]:
    """(path, text) chunks for an example of the file at `path` whose document is `prefix + suffix`: what
    ``fim.crossfile.collect`` picks with the corpus as the workspace, within `budget` (estimated) tokens."""
    root = index.import_root(path)
    siblings = [p for p in index.directories.get(str(PurePosixPath(path).parent), []) if p != path]
    recent = []
    for other in rng.sample(siblings, min(RECENT_FILES, len(siblings))):
        text = index.text(other)
        if text:
            spot = rng.randrange(text.count("\n") + 1)
            recent.append(Snippet(_relative(other, root), region(text, spot, RECENT_LINES), "recent"))
    found = collect(
        prefix + suffix,
        len(prefix),
        budget=budget,
        path=Path(path),
        root=Path(root),
        read=lambda p: index.text(str(p)),  # the corpus is the workspace: nothing is read from the disk
        language=language,
        recent=recent,
        exists=lambda p: str(p) in index.offsets,
    )
    return tuple((s.path, s.text) for s in found)


def _relative(path: str, root: PurePosixPath) -> str:
    try:
        return PurePosixPath(path).relative_to(root).as_posix()
    except ValueError:
        return PurePosixPath(path).name
