"""Cross-file context: what the model is shown from other files of the project, ranked and cut to a token budget.

Two sources, as the editors' assistants that do this best (docs/context.md):

* ``RecentChunks``, a ring buffer of regions of the editor's other open documents where the user recently opened,
  edited or completed (llama.vscode's ring buffer): a region is ``lines`` lines around the spot; a new region
  replaces the ones it mostly repeats (Jaccard similarity of their lines, as llama.vscode does); the oldest go
  first when the buffer is full, and any older than ``max_age_s``;
* the definitions of names the current file imports from workspace files (``fim.definitions``: Python, via
  tree-sitter), as stubs -- signature and docstring first (Continue and Tabby add the definitions of symbols near
  the cursor the same way).

``collect`` ranks the candidates -- definitions of imported names used near the cursor (nearest first), then the
recent regions (newest first), then the other imported names' definitions -- and keeps what fits the budget (tokens
of the text plus its path header). It returns them in a stable order, not by rank: recent regions oldest first, then
the definitions per file in import order. The engine places chunks before the current file, so chunks that stay the
same from one keystroke to the next keep their cached keys/values; a rank that only reorders would discard them.

Nothing here reads a file by itself: the caller's ``read`` decides what may be read (the language server: open
documents, else files under the workspace root through ``DiskReader``), so the "only what the editor opened or the
workspace holds" rule lives in one place.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fim.definitions import Definition, Import, imports, module_file, outline
from fim.request import TokenCounter, approx_tokens

__all__ = [
    "DiskReader",
    "Imported",
    "RecentChunks",
    "Snippet",
    "collect",
    "read_source",
    "relative_path",
    "resolve_imports",
]

NEAR_LINES_BEFORE = 40  # lines above the cursor whose names count as "used near the cursor"
NEAR_LINES_AFTER = 10
MAX_READ_BYTES = 1_000_000  # a larger file is generated or data: never read for context
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_IMPORT_LINE = re.compile(r"[ \t]*(?:import|from)[ \t]")

Reader = Callable[[Path], "str | None"]


@dataclass(frozen=True)
class Snippet:
    """A chunk of another file for the model: its path (relative to the workspace root) and text."""

    path: str
    text: str
    kind: str  # "recent" or "definitions"


def relative_path(path: Path, root: Path | None) -> str | None:
    """`path` relative to `root`, "/" separated; None when it is not under the root. Without a root: the name."""
    if root is None:
        return path.name
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


# ---------------------------------------------------------------- recent regions of other documents


def _line_set(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of two texts' sets of non-blank stripped lines (1.0: the same lines)."""
    sa, sb = _line_set(a), _line_set(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def region(text: str, line: int, lines: int) -> str:
    """`lines` lines of `text` centred on `line` (0-based), clamped to the text."""
    all_lines = text.split("\n")
    start = max(0, min(line - lines // 2, len(all_lines) - lines))
    return "\n".join(all_lines[start : start + lines])


@dataclass(frozen=True)
class _Entry:
    key: str  # the document (a URI): regions of the current document are never its own context
    path: str
    text: str
    time: float


class RecentChunks:
    """A thread-safe ring buffer of recent regions of documents (the event loop adds, the model worker reads)."""

    def __init__(self, capacity: int = 16, lines: int = 64, similar: float = 0.5, max_age_s: float = 1800.0) -> None:
        if capacity < 0 or lines < 1:
            raise ValueError(f"capacity must be >= 0 and lines >= 1, got {capacity}, {lines}")
        self.capacity, self.lines, self.similar, self.max_age_s = capacity, lines, similar, max_age_s
        self._entries: deque[_Entry] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, path: str, text: str, line: int, now: float | None = None) -> None:
        """Remember the region of `text` around `line`; it replaces regions it mostly repeats (any document)."""
        chunk = region(text, line, self.lines)
        if not chunk.strip() or self.capacity == 0:
            return
        entry = _Entry(key, path, chunk, time.monotonic() if now is None else now)
        with self._lock:
            kept = [e for e in self._entries if similarity(e.text, chunk) < self.similar]
            kept.append(entry)
            self._entries = deque(kept[-self.capacity :])

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries = deque(e for e in self._entries if e.key != key)

    def snippets(self, exclude: str | None = None, now: float | None = None) -> list[Snippet]:
        """Regions of documents other than `exclude`, oldest first; entries past ``max_age_s`` are dropped."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._entries = deque(e for e in self._entries if now - e.time <= self.max_age_s)
            entries = list(self._entries)
        return [Snippet(e.path, e.text, "recent") for e in entries if e.key != exclude]


# ---------------------------------------------------------------- reading workspace files


class DiskReader:
    """Reads text files under a root, skipping binary (a NUL byte, not UTF-8) and large files; cached by size and
    modification time, so asking again at every keystroke costs one ``stat``. Thread-safe."""

    def __init__(self, root: Path, max_bytes: int = MAX_READ_BYTES, capacity: int = 128) -> None:
        self.root, self.max_bytes, self.capacity = root.resolve(), max_bytes, capacity
        self._cache: dict[Path, tuple[tuple[int, int], str | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> str | None:
        try:
            real = path.resolve()
            if not real.is_relative_to(self.root):
                return None
            stat = real.stat()
        except OSError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(real)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        text = self._read(real) if stat.st_size <= self.max_bytes else None
        with self._lock:
            if len(self._cache) >= self.capacity:
                self._cache.pop(next(iter(self._cache)))
            self._cache[real] = (stamp, text)
        return text

    def _read(self, path: Path) -> str | None:
        try:
            return read_source(path)
        except OSError:
            return None


def read_source(path: Path) -> str | None:
    """The file's text, or None for binary content (a NUL byte, or not UTF-8); OSError when it cannot be read."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------- imported definitions


def _near_names(text: str, offset: int) -> dict[str, int]:
    """Names (dotted chains too: ``mod.func``) around the cursor -> distance in characters to the nearest use."""
    start = offset
    for _ in range(NEAR_LINES_BEFORE):
        start = text.rfind("\n", 0, start)
        if start <= 0:
            start = 0
            break
    end = offset
    for _ in range(NEAR_LINES_AFTER):
        end = text.find("\n", end + 1)
        if end < 0:
            end = len(text)
            break
    found: dict[str, int] = {}
    for match in _NAME.finditer(text, start, end):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if _IMPORT_LINE.match(text, line_start):  # naming a name in its import is not using it
            continue
        distance = offset - match.end() if match.end() <= offset else match.start() - offset
        parts = match.group().split(".")
        for i in range(1, len(parts) + 1):  # `a.b.c` uses a, a.b and a.b.c
            name = ".".join(parts[:i])
            found[name] = min(found.get(name, distance), max(distance, 0))
    return found


@dataclass(frozen=True)
class _Candidate:
    rank: tuple[int, float]  # (tier, distance or order): lower is more relevant
    path: str
    definition: Definition
    group: int  # the import's position: definitions are shown per file in import order


@dataclass(frozen=True)
class Imported:
    """What one import binding names in a workspace file: a definition (`uses` is the binding, ``from m import
    f``) or a module (`uses` are ``binding.attr`` for each public definition, ``import m`` / ``from pkg import m``)."""

    binding: Import
    path: str  # the defining file, relative to the root
    definitions: dict[str, Definition]  # name -> definition, as the binding exposes them
    module: bool

    def uses(self) -> dict[str, Definition]:
        """How code of the importing file names each definition: ``f`` or ``m.f``."""
        if self.module:
            return {f"{self.binding.binding}.{name}": d for name, d in self.definitions.items()}
        (definition,) = self.definitions.values()  # `from m import name` names one definition
        return {self.binding.binding: definition}


def resolve_imports(
    text: str, current: Path, root: Path, read: Reader, exists: Callable[[Path], bool] = Path.is_file
) -> list[Imported]:
    """The import bindings of a Python file that resolve to definitions in workspace files, in import order."""
    out: list[Imported] = []
    for imp in imports(text):
        names: list[str] | None = None  # None: the module's public definitions
        if imp.name is not None:  # from m import name: name's definition, or the submodule m.name
            target = module_file(f"{imp.module}.{imp.name}".strip("."), imp.level, current, root, exists)
            if target is None:
                target, names = module_file(imp.module, imp.level, current, root, exists), [imp.name]
        else:
            target = module_file(imp.module, imp.level, current, root, exists)
        if target is None or (source := read(target)) is None or (path := relative_path(target, root)) is None:
            continue
        defined = outline(source)
        if names is None:
            found = {name: d for name, d in defined.items() if not name.startswith("_")}  # its public names
        else:
            found = {name: defined[name] for name in names if name in defined}
        if found:
            out.append(Imported(imp, path, found, module=names is None))
    return out


def _definitions(imported: list[Imported], near: dict[str, int]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for group, item in enumerate(imported):
        for use, definition in item.uses().items():
            used = near.get(use)
            rank = (0, float(used)) if used is not None else (2, float(group * 1000 + definition.order))
            out.append(_Candidate(rank, item.path, definition, group))
    best: dict[tuple[str, str], _Candidate] = {}  # one candidate per definition, however often it is imported
    for c in out:
        key = (c.path, c.definition.name)
        if key not in best or c.rank < best[key].rank:
            best[key] = c
    return list(best.values())


def _header_tokens(path: str, count: TokenCounter) -> int:
    """The path comment the engine writes above a chunk (``engine.layout.chunk_text``; "//" is as long as "#")."""
    return count(f"# path: {path}\n")


def collect(
    text: str,
    offset: int,
    *,
    budget: int,
    count: TokenCounter = approx_tokens,
    path: Path | None = None,
    root: Path | None = None,
    read: Reader | None = None,
    language: str = "python",
    recent: Iterable[Snippet] = (),
    exists: Callable[[Path], bool] = Path.is_file,
) -> list[Snippet]:
    """The snippets to show the model for a cursor at `offset` of `text` (the file at `path` under `root`), at most
    `budget` tokens with their path headers, in a stable order (module docstring). `read` gives the text of a
    workspace file or None; without `path`, `root` or `read`, only the `recent` regions are considered."""
    if budget <= 0:
        return []
    definitions: list[_Candidate] = []
    if path is not None and root is not None and read is not None and language == "python":
        definitions = _definitions(resolve_imports(text, path, root, read, exists), _near_names(text, offset))
    regions = list(recent)
    # (rank, index): definitions by their rank, recent regions in tier 1, newest first
    ranked = sorted(
        [(c.rank, i) for i, c in enumerate(definitions)]
        + [((1, float(len(regions) - i)), len(definitions) + i) for i in range(len(regions))]
    )
    used, chosen, headed = 0, set(), set()
    for _, index in ranked:
        if index < len(definitions):
            item = definitions[index]
            cost = count(item.definition.stub) + (0 if item.path in headed else _header_tokens(item.path, count))
        else:
            region_ = regions[index - len(definitions)]
            cost = count(region_.text) + _header_tokens(region_.path, count)
        if used + cost > budget:
            continue
        used += cost
        chosen.add(index)
        if index < len(definitions):
            headed.add(definitions[index].path)
    out = [regions[i - len(definitions)] for i in sorted(chosen) if i >= len(definitions)]
    picked = [definitions[i] for i in chosen if i < len(definitions)]
    by_file: dict[str, dict[int, str]] = {}  # files in import order, each file's stubs in source order
    for c in sorted(picked, key=lambda c: (c.group, c.definition.order)):
        by_file.setdefault(c.path, {})[c.definition.order] = c.definition.stub
    for file_path, stubs in by_file.items():
        out.append(Snippet(file_path, "".join(stub for _, stub in sorted(stubs.items())), "definitions"))
    return out
