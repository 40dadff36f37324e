"""Cross-file context in fim: imports and stubs (tree-sitter), module resolution, the ring buffer, the ranked cut."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fim.crossfile import DiskReader, RecentChunks, Snippet, collect, relative_path, similarity
from fim.definitions import Import, imports, module_file, outline
from fim.request import FimSettings, approx_tokens

UTIL = '''"""Utilities."""
import os

SCALE = 3
TABLE = {
    "a": 1,
}


def frobnicate(a: int, b: int = 2) -> int:
    """Frobnicate a with b.

    Longer explanation.
    """
    return a * b + SCALE


@dataclass
class Widget(Base):
    """A widget."""

    size: int = 0

    def grow(self, by: int) -> None:
        """Grow it."""
        self.size += by

    @property
    def area(self): return self.size ** 2


def _private():
    pass
'''


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


# ---------------------------------------------------------------- definitions


def test_imports_are_the_bindings_tree_sitter_finds():
    text = (
        "import os, a.b as c\n"
        "from .util import frob as f, Thing\n"
        "from .. import sibling\n"
        "from pkg.mod import *\n"
        "s = 'import fake'  # from fake import nothing\n"
        "def g():\n    import json\n"
    )
    assert imports(text) == (
        Import("os", "os", 0, None),
        Import("c", "a.b", 0, None),
        Import("f", "util", 1, "frob"),
        Import("Thing", "util", 1, "Thing"),
        Import("sibling", "", 2, "sibling"),
        Import("json", "json", 0, None),
    )


def test_outline_gives_signatures_and_docstrings_without_bodies():
    defs = outline(UTIL)
    assert set(defs) == {"SCALE", "TABLE", "frobnicate", "Widget", "_private"}
    assert defs["SCALE"].stub == "SCALE = 3\n"
    assert defs["TABLE"].stub == "TABLE = ...\n"
    assert defs["frobnicate"].stub == (
        'def frobnicate(a: int, b: int = 2) -> int:\n    """Frobnicate a with b.\n\n    Longer explanation.\n    """\n'
    )
    assert defs["Widget"].stub == (
        "@dataclass\nclass Widget(Base):\n"
        '    """A widget."""\n'
        "    size: int = 0\n"
        "    def grow(self, by: int) -> None:\n"
        '        """Grow it."""\n'
        "    @property\n    def area(self): ...\n"
    )
    for definition in defs.values():
        compile(definition.stub, "<stub>", "exec")  # stubs are valid Python
    assert "return" not in "".join(d.stub for d in defs.values())


def test_modules_resolve_to_workspace_files_only(tmp_path: Path):
    root = write(
        tmp_path / "repo",
        {"pkg/__init__.py": "", "pkg/util.py": UTIL, "pkg/sub/mod.py": "X = 1\n", "src/lib/core.py": "Y = 2\n"},
    )
    write(tmp_path, {"outside.py": "SECRET = 1\n"})
    current = root / "pkg" / "sub" / "mod.py"
    assert module_file("pkg.util", 0, current, root) == root / "pkg" / "util.py"
    assert module_file("util", 2, current, root) == root / "pkg" / "util.py"  # from ..util import
    assert module_file("", 2, current, root) == root / "pkg" / "__init__.py"  # from .. import name
    assert module_file("lib.core", 0, current, root) == root / "src" / "lib" / "core.py"  # a src/ layout
    assert module_file("os", 0, current, root) is None
    assert module_file("outside", 3, current, root) is None  # ../../.. leaves the root
    (root / "pkg" / "link.py").symlink_to(tmp_path / "outside.py")
    assert module_file("pkg.link", 0, current, root) is None  # a symlink out of the root


# ---------------------------------------------------------------- reading


def test_disk_reader_skips_binary_huge_and_outside_files_and_sees_changes(tmp_path: Path):
    root = write(tmp_path / "repo", {"a.py": "A = 1\n", "big.py": "x" * 2000, "latin.py": "", "bin.py": ""})
    (root / "bin.py").write_bytes(b"def f():\x00\n")
    (root / "latin.py").write_bytes("café = 1\n".encode("latin-1"))
    write(tmp_path, {"outside.py": "SECRET = 1\n"})
    read = DiskReader(root, max_bytes=1000)
    assert read(root / "a.py") == "A = 1\n"
    assert read(root / "big.py") is None
    assert read(root / "bin.py") is None
    assert read(root / "latin.py") is None
    assert read(root / ".." / "outside.py") is None
    assert read(root / "missing.py") is None
    (root / "a.py").write_text("A = 22\n")
    os.utime(root / "a.py", ns=(1, 10**18))
    assert read(root / "a.py") == "A = 22\n"


def test_relative_paths_are_posix_and_none_outside_the_root(tmp_path: Path):
    assert relative_path(tmp_path / "pkg" / "m.py", tmp_path) == "pkg/m.py"
    assert relative_path(tmp_path.parent / "x.py", tmp_path) is None
    assert relative_path(tmp_path / "m.py", None) == "m.py"


# ---------------------------------------------------------------- ring buffer


NOTES = "\n".join(f"value_{i} = {i}" for i in range(100))


def test_ring_buffer_keeps_regions_around_the_spot_and_replaces_near_duplicates():
    ring = RecentChunks(capacity=4, lines=10)
    ring.add("file:///a.py", "a.py", NOTES, 50, now=0)
    (chunk,) = ring.snippets(now=1)
    assert chunk == Snippet("a.py", "\n".join(f"value_{i} = {i}" for i in range(45, 55)), "recent")
    ring.add("file:///a.py", "a.py", NOTES, 52, now=1)  # mostly the same lines: replaces the older one
    assert [s.text.split("\n")[0] for s in ring.snippets(now=2)] == ["value_47 = 47"]
    ring.add("file:///a.py", "a.py", NOTES, 90, now=2)
    assert len(ring) == 2
    assert similarity("a\nb\n", "b\na\n") == 1.0 and similarity("a", "b") == 0.0


def test_ring_buffer_evicts_by_age_and_capacity_and_excludes_the_current_document():
    ring = RecentChunks(capacity=2, lines=3, max_age_s=100)
    for i, key in enumerate("abc"):
        ring.add(key, f"{key}.py", f"{key}_unique_{i} = {i}\n", 0, now=i * 60)
    assert [s.path for s in ring.snippets(now=120)] == ["b.py", "c.py"]  # capacity: the oldest went first
    assert [s.path for s in ring.snippets(exclude="c", now=120)] == ["b.py"]
    assert [s.path for s in ring.snippets(now=200)] == ["c.py"]  # b is older than 100 s
    ring.forget("c")
    assert ring.snippets(now=200) == []


# ---------------------------------------------------------------- collection


MAIN = """from pkg.util import frobnicate, Widget
from pkg import util


def run(x):
    w = Widget()
    y = frobnicate(x)
    return y
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(tmp_path, {"pkg/__init__.py": "", "pkg/util.py": UTIL, "pkg/main.py": MAIN})


def gather(project: Path, budget: int, text: str = MAIN, cursor: int | None = None, **kwargs) -> list[Snippet]:
    offset = text.index("y = frob") + 8 if cursor is None else cursor
    path, read = project / "pkg" / "main.py", DiskReader(project)
    return collect(text, offset, budget=budget, path=path, root=project, read=read, **kwargs)


def test_imported_definitions_are_shown_per_file_in_source_order(project: Path):
    (snippet,) = gather(project, 1000)
    assert snippet.path == "pkg/util.py" and snippet.kind == "definitions"
    text = snippet.text
    assert text.index("SCALE = 3") < text.index("def frobnicate") < text.index("class Widget")
    assert "_private" not in text  # a module's private names are not its API
    assert text.count("def frobnicate") == 1  # imported twice, shown once


def test_the_budget_keeps_the_names_used_nearest_the_cursor(project: Path):
    costs = {name: approx_tokens(d.stub) for name, d in outline(UTIL).items()}
    header = approx_tokens("# path: pkg/util.py\n")
    (snippet,) = gather(project, header + costs["frobnicate"])
    assert snippet.text == outline(UTIL)["frobnicate"].stub
    (snippet,) = gather(project, header + costs["frobnicate"] + costs["Widget"])
    assert "class Widget" in snippet.text and "SCALE" not in snippet.text
    assert gather(project, 0) == []
    assert gather(project, 3) == []  # nothing fits


def test_recent_regions_rank_after_used_definitions_and_come_first_in_the_output(project: Path):
    recent = [Snippet("notes.py", "n = 1\n", "recent"), Snippet("todo.py", "t = 2\n", "recent")]
    found = gather(project, 1000, recent=recent)
    assert [s.path for s in found] == ["notes.py", "todo.py", "pkg/util.py"]  # a stable order, not by rank
    header = approx_tokens("# path: pkg/util.py\n")
    need = header + approx_tokens(outline(UTIL)["frobnicate"].stub) + approx_tokens("# path: todo.py\n") + 2
    assert [s.path for s in gather(project, need + 1, recent=recent)] == ["todo.py", "pkg/util.py"]  # newest


def test_without_a_workspace_only_recent_regions_are_used(project: Path):
    recent = [Snippet("notes.py", "n = 1\n", "recent")]
    assert collect(MAIN, 10, budget=100, recent=recent) == recent
    assert collect(MAIN, 10, budget=100, path=project / "pkg" / "main.py", root=project) == []  # nothing to read


def test_fim_reserves_the_cross_file_budget_from_the_window():
    fitted = FimSettings(cross_file_tokens=512).fitted({"max_text_tokens": 2044, "max_canvas": 64})
    assert fitted.cross_file_tokens == 512
    assert fitted.prefix_tokens + fitted.suffix_tokens == 2044 - 512
    assert FimSettings(cross_file_tokens=5000).fitted({"max_text_tokens": 1000}).cross_file_tokens == 500  # half
    plain = FimSettings().fitted({"max_text_tokens": 2044})
    assert plain.prefix_tokens + plain.suffix_tokens == 2044
