"""Does inserting a text at the cursor add syntax errors? Incremental tree-sitter checks on one base tree.

The base document is `prefix + suffix`; it is parsed once per request. Each check copies the base tree,
records the insertion with `Tree.edit`, and re-parses with the edited tree as `old_tree`, so tree-sitter
reuses every subtree the insertion did not touch: a check costs about the size of the edited region.

"Adds errors" is judged in the edited region only: `changed_ranges` between the edited base tree and the
new tree (plus the inserted bytes) gives that region; ERROR and MISSING nodes overlapping it are counted in
the new tree and, mapped back to base coordinates, in the base tree. A file that is already broken
elsewhere, or broken right at the cursor, therefore does not veto every candidate: a candidate is rejected
only when the region around it holds more errors than before. One exception makes the count strict: base
errors that start on the cursor's line and end at the cursor are the unfinished statement being completed
(`y = |`), so a candidate must remove them too (`a +` leaves `y = a +` as broken as `y =` and is rejected;
`a + 1` is kept).

Measured with tree-sitter-python, an edit that adds a line still re-parses most of the file after it (the
indentation scanner's state blocks reuse), so incremental parsing alone costs about a full parse in a long
file; checks therefore run on a local region (the children nearest the cursor of the smallest enclosing
node larger than about 4 KB), which keeps them near 0.1 ms whatever the file's length.
"""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter

__all__ = ["SyntaxChecker", "Verdict", "local_region"]


def _point_after(start: tuple[int, int], data: bytes) -> tuple[int, int]:
    """tree-sitter point (row, byte column) reached by writing `data` from `start`; rows end at b"\\n"."""
    newlines = data.count(b"\n")
    if newlines == 0:
        return start[0], start[1] + len(data)
    return start[0] + newlines, len(data) - data.rfind(b"\n") - 1


def _errors(node: tree_sitter.Node, start: int, end: int) -> list[tuple[int, int]]:
    """Byte ranges of the ERROR and MISSING nodes under `node` overlapping the closed range [start, end].

    Only subtrees flagged `has_error` are entered, so an error-free tree costs one attribute read.
    """
    if not node.has_error and not node.is_missing:
        return []
    if node.end_byte < start or node.start_byte > end:
        return []
    own = [(node.start_byte, node.end_byte)] if node.is_error or node.is_missing else []
    return own + [error for child in node.children for error in _errors(child, start, end)]


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check; `error_at` (bytes into the inserted text) hints where a new error starts."""

    ok: bool
    error_at: int | None = None


@dataclass(frozen=True)
class _Insertion:
    at: int  # byte offset of the cursor in the base document
    size: int  # bytes inserted

    def to_base(self, byte: int) -> int:
        """A byte offset of the new document mapped to the base document (inside the insertion -> cursor)."""
        if byte <= self.at:
            return byte
        return max(self.at, byte - self.size)


def _line_start(data: bytes, byte: int) -> int:
    return data.rfind(b"\n", 0, byte) + 1


def _line_end(data: bytes, byte: int) -> int:
    end = data.find(b"\n", byte)
    return len(data) if end < 0 else end + 1


def _neighbours(container: tree_sitter.Node, cursor: int, limit: int) -> tuple[int, int]:
    """Byte range of the children of `container` at and around the cursor, grown outwards within `limit`."""
    children = container.children
    after = next((i for i, child in enumerate(children) if child.start_byte >= cursor), len(children))
    before = after - 1
    start = end = cursor
    if before >= 0 and children[before].end_byte > cursor:  # the child holding the cursor
        start, end, before = children[before].start_byte, children[before].end_byte, before - 1
    grown = True
    while grown:
        grown = False
        if before >= 0 and end - children[before].start_byte <= limit:
            start, before, grown = children[before].start_byte, before - 1, True
        if after < len(children) and children[after].end_byte - start <= limit:
            end, after, grown = children[after].end_byte, after + 1, True
    return start, end


def local_region(root: tree_sitter.Node, cursor: int, limit: int) -> tuple[int, int]:
    """Byte range around the cursor worth re-parsing: the children nearest the cursor of the lowest enclosing
    node larger than `limit` bytes (the whole tree when it fits)."""
    node = root.descendant_for_byte_range(cursor, cursor) or root
    while node.parent is not None and node.end_byte - node.start_byte <= limit:
        node = node.parent
    if node.end_byte - node.start_byte <= limit or node.child_count == 0:
        return node.start_byte, node.end_byte
    return _neighbours(node, cursor, limit)


class SyntaxChecker:
    """Parses `prefix + suffix` once; `adds_errors(text)` tells whether inserting `text` at the cursor hurts.

    Checks run on a local region of at most about `limit` bytes around the cursor, cut at line boundaries.
    """

    def __init__(self, parser: tree_sitter.Parser, prefix: bytes, suffix: bytes, limit: int = 4096) -> None:
        self._parser = parser
        # Finding the region needs a parse, but only of the lines within a few regions' reach of the cursor:
        # a check never looks further, and a long window must not cost a full parse per request.
        head = _line_start(prefix, max(0, len(prefix) - 2 * limit))
        tail = _line_end(suffix, min(len(suffix), 2 * limit))
        document = prefix[head:] + suffix[:tail]
        cursor = len(prefix) - head
        scanned = parser.parse(document)
        start, end = local_region(scanned.root_node, cursor, limit)
        start = _line_start(document, min(start, cursor))
        end = _line_end(document, max(end, cursor))
        self._prefix = document[start:cursor]
        self._suffix = document[cursor:end]
        whole = start == 0 and end == len(document)
        self._base = scanned if whole else parser.parse(self._prefix + self._suffix)
        self._cursor_point = _point_after((0, 0), self._prefix)
        self._holes = self._count_holes()

    def _count_holes(self) -> int:
        """Base errors that end at the cursor and start on its line: the unfinished statement the candidate
        is asked to finish (`y = |`). A candidate must remove them, not merely add nothing."""
        cursor = len(self._prefix)
        line_start = _line_start(self._prefix, cursor)
        gap_start = max(line_start, len(self._prefix.rstrip(b" \t")))
        errors = _errors(self._base.root_node, gap_start, cursor)
        return sum(1 for start, end in errors if start >= line_start and gap_start <= end <= cursor)

    def in_prose(self) -> bool:
        """Whether the cursor sits inside a comment or a string of the base document, where the grammar cannot
        judge what is typed (a comment ending at the cursor counts; a string whose closing quote is before the
        cursor does not)."""
        cursor = len(self._prefix)
        node: tree_sitter.Node | None = self._base.root_node.descendant_for_byte_range(max(cursor - 1, 0), cursor)
        while node is not None:
            kind = node.type
            if "comment" in kind and node.start_byte < cursor <= node.end_byte:
                return True
            if "string" in kind and node.start_byte < cursor < node.end_byte:
                return True
            node = node.parent
        return False

    def parse_with(self, text: bytes) -> tuple[tree_sitter.Tree, tree_sitter.Tree]:
        """(edited copy of the base tree, tree of the document with `text` inserted), parsed incrementally."""
        old = self._base.copy()
        at = len(self._prefix)
        old.edit(
            start_byte=at,
            old_end_byte=at,
            new_end_byte=at + len(text),
            start_point=self._cursor_point,
            old_end_point=self._cursor_point,
            new_end_point=_point_after(self._cursor_point, text),
        )
        new = self._parser.parse(self._prefix + text + self._suffix, old)
        return old, new

    def check(self, text: bytes) -> Verdict:
        """Whether the edited region holds no more ERROR/MISSING nodes with `text` inserted than without
        (and none of the ones ending at the cursor)."""
        old, new = self.parse_with(text)
        if not new.root_node.has_error:
            return Verdict(ok=True)
        insertion = _Insertion(len(self._prefix), len(text))
        changed = old.changed_ranges(new)
        start = min([insertion.at, *(r.start_byte for r in changed)])
        end = max([insertion.at + insertion.size, *(r.end_byte for r in changed)])
        added = _errors(new.root_node, start, end)
        before = _errors(self._base.root_node, insertion.to_base(start), insertion.to_base(end))
        if len(added) <= len(before) - self._holes:
            return Verdict(ok=True)
        at, size = insertion.at, insertion.size
        inside = [begin - at for begin, _ in added if at < begin <= at + size]
        return Verdict(ok=False, error_at=min(inside, default=None))
