"""Syntax-aware spans of a source file: statements and block bodies, as character offsets.

The training data sampler picks fill-in-the-middle targets "the way an editor asks" (design.md): the next
statement, or the body of a function/class/if/loop. tree-sitter finds those nodes; this module maps them from
UTF-8 bytes to Python string indices so callers can slice `source[span.start:span.end]` directly.

A statement is a named, non-comment child of a statement container (module, block, class body, ...). A block
body runs from the first to the last named child of a body node, without the braces or the indentation before
its first line, so the middle starts where an editor's cursor would sit on the first line of the body. Nodes
that contain syntax errors are skipped: a broken file yields fewer spans, never a span cut through an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import tree_sitter

from fim.languages import get_parser, normalize_language
from fim.text import OffsetMap

__all__ = ["Span", "SpanKind", "syntax_spans"]

SpanKind = Literal["statement", "block_body"]


@dataclass(frozen=True)
class Span:
    """Half-open character range [start, end) of `source`."""

    start: int
    end: int
    kind: SpanKind


@dataclass(frozen=True)
class _Grammar:
    containers: frozenset[str]  # node types whose named children are statements
    bodies: frozenset[str]  # node types whose contents are a block body


_BRACE_BODIES = frozenset({"statement_block", "class_body"})
_GRAMMARS: dict[str, _Grammar] = {
    "python": _Grammar(frozenset({"module", "block"}), frozenset({"block"})),
    "javascript": _Grammar(frozenset({"program", "statement_block", "class_body"}), _BRACE_BODIES),
    "typescript": _Grammar(
        frozenset({"program", "statement_block", "class_body", "interface_body"}),
        _BRACE_BODIES | {"interface_body"},
    ),
    "go": _Grammar(frozenset({"source_file", "statement_list"}), frozenset({"block"})),
    "rust": _Grammar(frozenset({"source_file", "block", "declaration_list"}), frozenset({"block", "declaration_list"})),
    "java": _Grammar(
        frozenset({"program", "block", "class_body", "interface_body", "constructor_body", "enum_body_declarations"}),
        frozenset({"block", "class_body", "interface_body", "constructor_body"}),
    ),
    "c": _Grammar(
        frozenset({"translation_unit", "compound_statement", "field_declaration_list"}),
        frozenset({"compound_statement", "field_declaration_list"}),
    ),
    "cpp": _Grammar(
        frozenset({"translation_unit", "compound_statement", "field_declaration_list", "declaration_list"}),
        frozenset({"compound_statement", "field_declaration_list", "declaration_list"}),
    ),
}
_GRAMMARS["tsx"] = _GRAMMARS["typescript"]


def _walk(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Every node of the tree, pre-order, through one TreeCursor (cheaper than recursing over `.children`)."""
    cursor = root.walk()
    while True:
        node = cursor.node
        if node is not None:
            yield node
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return


def _is_code(node: tree_sitter.Node) -> bool:
    return node.is_named and not node.is_extra and not node.has_error and not node.is_missing


def _body_bytes(node: tree_sitter.Node) -> tuple[int, int] | None:
    """Byte range from the first to the last named child of a body node (inside any braces)."""
    children = [child for child in node.children if child.is_named and not child.is_missing]
    if not children:
        return None
    return children[0].start_byte, children[-1].end_byte


def _byte_spans(root: tree_sitter.Node, grammar: _Grammar) -> Iterator[tuple[int, int, SpanKind]]:
    for node in _walk(root):
        if node.has_error:
            continue
        if node.type in grammar.bodies and node.parent is not None:
            body = _body_bytes(node)
            if body is not None:
                yield body[0], body[1], "block_body"
        if node.type in grammar.containers:
            for child in node.named_children:
                if _is_code(child):
                    yield child.start_byte, child.end_byte, "statement"


def syntax_spans(source: str, language: str) -> list[Span]:
    """Statements and block bodies of `source`, sorted by (start, end); [] for unknown languages."""
    name = normalize_language(language)
    grammar = _GRAMMARS.get(name)
    parser = get_parser(name)
    if grammar is None or parser is None or not source:
        return []
    offsets = OffsetMap.of(source)
    tree = parser.parse(offsets.data)
    spans = {
        _trimmed(source, offsets.to_char(start), offsets.to_char(end), kind)
        for start, end, kind in _byte_spans(tree.root_node, grammar)
    }
    return sorted((span for span in spans if span.end > span.start), key=lambda s: (s.start, s.end, s.kind))


def _trimmed(source: str, start: int, end: int, kind: SpanKind) -> Span:
    """Span without surrounding whitespace (Go's statement_list, for one, keeps a trailing newline)."""
    while start < end and source[start].isspace():
        start += 1
    while end > start and source[end - 1].isspace():
        end -= 1
    return Span(start, end, kind)
