"""What a Python file imports from its project, and the imported definitions as stubs (tree-sitter).

Cross-file context (docs/context.md) shows the model the definitions a completion is likely to need: the functions
and classes the current file imports from other files of the workspace. This module does the language work, all
torch- and LSP-free:

* ``imports(text)``: the file's import bindings (``import a.b as c``, ``from .m import x as y``, ``from pkg import
  mod``), parsed with tree-sitter, so strings and comments that look like imports are not imports;
* ``module_file(module, level, current, root, exists)``: the workspace file a module name resolves to (relative
  imports from the current file's package; absolute ones from the root, ``root/src``, and the current file's
  ancestor directories), never a path outside the root;
* ``outline(text)``: the module-level definitions as stubs, signatures and docstrings first (what a reader skims
  in an API reference): ``def f(a, b) -> int:`` plus its docstring, a class's header, docstring, fields and method
  signatures, a constant's one-line assignment. Bodies are left out: they cost tokens and rarely help completing a
  call site.

Parses are cached by text (``functools.lru_cache``): the language server asks about the same few files at every
keystroke.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tree_sitter

from fim.languages import get_parser

__all__ = ["Definition", "Import", "imports", "module_file", "outline"]

MAX_DOC_LINES = 8  # a longer docstring is cut (its start says what the function does)
MAX_CONSTANT_CHARS = 160  # a longer assignment is shown as `NAME = ...`


@dataclass(frozen=True)
class Import:
    """One name an import statement binds in the file: `binding` refers to `module` (``name`` None: the module
    itself) or to `name` inside it (which may itself be a submodule)."""

    binding: str  # the name the file uses: "np", "path", "a.b" for `import a.b`
    module: str  # dotted module name without the leading dots: "pkg.mod", "" for `from . import x`
    level: int  # leading dots of a relative import (0: absolute)
    name: str | None  # the imported attribute for `from m import name`


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # "function", "class" or "variable"
    stub: str  # signature (+ docstring, class members) as source text, ending with a newline
    order: int  # position in the file (stubs are shown in source order)


def _text(data: bytes, node: tree_sitter.Node) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _parse(text: str) -> tuple[bytes, tree_sitter.Node] | None:
    parser = get_parser("python")
    if parser is None:
        return None
    data = text.encode("utf-8", "surrogatepass")
    return data, parser.parse(data).root_node


def _module_name(data: bytes, node: tree_sitter.Node) -> tuple[str, int]:
    """(dotted name, level) of a `module_name` field: a dotted_name or a relative_import."""
    if node.type != "relative_import":
        return _text(data, node), 0
    dots = next((c for c in node.children if c.type == "import_prefix"), None)
    name = next((c for c in node.children if c.type == "dotted_name"), None)
    return (_text(data, name) if name else ""), (_text(data, dots).count(".") if dots else 0)


def _aliased(data: bytes, node: tree_sitter.Node) -> tuple[str, str | None]:
    """(name, alias) of a dotted_name or aliased_import."""
    if node.type == "aliased_import":
        name, alias = node.child_by_field_name("name"), node.child_by_field_name("alias")
        return (_text(data, name) if name else ""), (_text(data, alias) if alias else None)
    return _text(data, node), None


@functools.lru_cache(maxsize=64)
def imports(text: str) -> tuple[Import, ...]:
    """Every import binding of a Python file, in source order (nested imports too: they bind names as well)."""
    parsed = _parse(text)
    if parsed is None:
        return ()
    data, root = parsed
    found: list[Import] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "import_statement":
            for child in node.children_by_field_name("name"):
                name, alias = _aliased(data, child)
                found.append(Import(alias or name, name, 0, None))
        elif node.type == "import_from_statement":
            module_node = node.child_by_field_name("module_name")
            if module_node is None:
                continue
            module, level = _module_name(data, module_node)
            for child in node.children_by_field_name("name"):
                name, alias = _aliased(data, child)
                found.append(Import(alias or name, module, level, name))
        else:
            stack.extend(reversed(node.named_children))
    return tuple(found)


def _candidates(module: str, level: int, current: Path, root: Path) -> list[Path]:
    parts = [p for p in module.split(".") if p]
    if level:
        base = current.parent
        for _ in range(level - 1):
            base = base.parent
        bases = [base]
    else:
        try:
            inside = current.parent.relative_to(root).parts
        except ValueError:
            inside = ()
        ancestors = [root.joinpath(*inside[:i]) for i in range(len(inside), 0, -1)]  # nearest first
        bases = list(dict.fromkeys([root, root / "src", *ancestors]))
    out = []
    for base in bases:
        stem = base.joinpath(*parts)
        out += [stem.with_name(stem.name + ".py"), stem / "__init__.py"] if parts else [base / "__init__.py"]
    return out


def module_file(
    module: str, level: int, current: Path, root: Path, exists: Callable[[Path], bool] = Path.is_file
) -> Path | None:
    """The file under `root` that `module` (imported from `current`) resolves to, or None (a package outside the
    workspace, the standard library, a path escaping the root through `..` or a symlink)."""
    root, current = root.resolve(), current.resolve()
    for path in _candidates(module, level, current, root):
        if not exists(path):
            continue
        real = path.resolve()
        if real.is_relative_to(root) and real != current:
            return path
    return None


def _docstring(data: bytes, body: tree_sitter.Node | None) -> tree_sitter.Node | None:
    first = body.named_children[0] if body is not None and body.named_children else None
    if first is not None and first.type == "expression_statement" and first.named_children:
        if first.named_children[0].type == "string":
            return first
    return None


def _indent(data: bytes, node: tree_sitter.Node) -> str:
    return " " * node.start_point[1]


def _header(data: bytes, start: tree_sitter.Node, body: tree_sitter.Node | None) -> str:
    end = body.start_byte if body is not None else start.end_byte
    return data[start.start_byte : end].decode("utf-8", "replace").rstrip()


def _doc_lines(data: bytes, doc: tree_sitter.Node, lines: int) -> str:
    text = _indent(data, doc) + _text(data, doc)
    kept = text.split("\n")
    if len(kept) > lines:  # keep the start and close the string so the stub still parses
        quote = '"""' if '"""' in kept[0] else "'''"
        kept = [*kept[:lines], _indent(data, doc) + quote]
    return "\n".join(kept)


def _function_stub(data: bytes, outer: tree_sitter.Node, node: tree_sitter.Node, doc_lines: int) -> str:
    body = node.child_by_field_name("body")
    header = _header(data, outer, body)
    doc = _docstring(data, body)
    if doc is None or doc_lines == 0:
        return _indent(data, outer) + header + " ...\n"
    return _indent(data, outer) + header + "\n" + _doc_lines(data, doc, doc_lines) + "\n"


def _short_assignment(data: bytes, node: tree_sitter.Node) -> str | None:
    """`NAME = value` / `NAME: T = value` when it fits on one short line, else `NAME = ...`."""
    text = _text(data, node)
    if "\n" not in text and len(text) <= MAX_CONSTANT_CHARS:
        return _indent(data, node) + text
    assignment = node.named_children[0]
    left = assignment.child_by_field_name("left")
    kind = assignment.child_by_field_name("type")
    if left is None:
        return None
    annotation = f": {_text(data, kind)}" if kind is not None else ""
    return f"{_indent(data, node)}{_text(data, left)}{annotation} = ..."


def _class_stub(data: bytes, outer: tree_sitter.Node, node: tree_sitter.Node) -> str:
    body = node.child_by_field_name("body")
    lines = [_indent(data, outer) + _header(data, outer, body)]
    doc = _docstring(data, body)
    if doc is not None:
        lines.append(_doc_lines(data, doc, MAX_DOC_LINES))
    for child in body.named_children if body is not None else []:
        inner = child.child_by_field_name("definition") if child.type == "decorated_definition" else child
        if inner is not None and inner.type == "function_definition":
            lines.append(_function_stub(data, child, inner, 1).rstrip("\n"))
        elif _assigned_name(data, child) is not None and (line := _short_assignment(data, child)) is not None:
            lines.append(line)
    if len(lines) == 1:
        lines[0] += " ..."
    return "\n".join(lines) + "\n"


def _assigned_name(data: bytes, node: tree_sitter.Node) -> str | None:
    """The name a statement `NAME = ...` / `NAME: T = ...` / `NAME: T` assigns, else None."""
    if node.type != "expression_statement" or not node.named_children:
        return None
    assignment = node.named_children[0]
    if assignment.type != "assignment":
        return None
    left = assignment.child_by_field_name("left")
    return _text(data, left) if left is not None and left.type == "identifier" else None


@functools.lru_cache(maxsize=64)
def outline(text: str) -> dict[str, Definition]:
    """Module-level functions, classes and assignments of a Python file as stubs, by name (the last definition of
    a name wins, as at run time)."""
    parsed = _parse(text)
    if parsed is None:
        return {}
    data, root = parsed
    found: dict[str, Definition] = {}
    for order, child in enumerate(root.named_children):
        inner = child.child_by_field_name("definition") if child.type == "decorated_definition" else child
        if inner is None:
            continue
        name_node = inner.child_by_field_name("name")
        if inner.type == "function_definition" and name_node is not None:
            stub = _function_stub(data, child, inner, MAX_DOC_LINES)
            found[_text(data, name_node)] = Definition(_text(data, name_node), "function", stub, order)
        elif inner.type == "class_definition" and name_node is not None:
            found[_text(data, name_node)] = Definition(
                _text(data, name_node), "class", _class_stub(data, child, inner), order
            )
        elif (name := _assigned_name(data, child)) is not None and (line := _short_assignment(data, child)):
            found[name] = Definition(name, "variable", line + "\n", order)
    return found
