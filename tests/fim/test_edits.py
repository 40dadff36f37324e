"""Text-level post-processing: re-indentation, block ends, repeated lines, overlap, cut points."""

from __future__ import annotations

from fim.edits import Layout, block_end_variants, cut_points, drop_overlap, drop_repeated_lines, limit_lines, reindent
from fim.layout import block_syntax, indent_unit, make_indent

PYTHON = block_syntax("python")
BRACES_SYNTAX = block_syntax("c")
PY = Layout("    def f(self):", "    ", PYTHON)
BRACES = Layout("  ", "  ", BRACES_SYNTAX)


def test_reindent_puts_the_body_one_level_inside_the_opener() -> None:
    assert reindent("\nreturn 1", PY) == "\n        return 1"
    assert reindent("\n            return 1", PY) == "\n        return 1"
    assert reindent("\n        return 1", PY) == "\n        return 1"


def test_reindent_keeps_relative_structure_and_blank_lines() -> None:
    text = "\n  if x:\n\n      y()\n  z()"
    assert reindent(text, PY) == "\n        if x:\n\n            y()\n        z()"


def test_reindent_leaves_hanging_continuations_alone() -> None:
    layout = Layout("    total = f(", "    ", PYTHON)
    assert reindent("a,\n b)", layout) == "a,\n b)"


def test_reindent_puts_a_closer_one_level_out() -> None:
    assert reindent("if (a) {\n  b();\n}", BRACES) == "if (a) {\n    b();\n  }"
    assert reindent("if (a) {\n}", BRACES) == "if (a) {\n  }"


def test_reindent_leaves_lines_after_a_complete_statement_alone() -> None:
    layout = Layout("    ", "    ", PYTHON)
    assert reindent("return x\n\ndef g():\n    pass", layout) == "return x\n\ndef g():\n    pass"
    braces = Layout("  ", "  ", BRACES_SYNTAX)
    assert reindent("if (a)\n      b();", braces) == "if (a)\n      b();"


def test_block_end_cuts_before_the_first_dedent_and_offers_the_closer() -> None:
    assert block_end_variants("\n        x = 1\n    def g(self):", PY) == ["\n        x = 1"]
    layout = Layout("function f() {", "  ", BRACES_SYNTAX)
    assert block_end_variants("\n  a();\n}\nfunction g() {}", layout) == ["\n  a();\n}", "\n  a();"]
    assert block_end_variants("x();\n  y();", BRACES) == ["x();\n  y();"]


def test_repeated_suffix_line_ends_the_candidate() -> None:
    suffix = "\n\n    return total\n"
    assert drop_repeated_lines("\n        t = 1\n    return total", PY, suffix) == "\n        t = 1"
    short = "\n    pass\n"  # short lines must match with their indentation
    assert drop_repeated_lines("\n        pass\n    pass", PY, short) == "\n        pass"
    layout = Layout("    ", "    ", PYTHON)
    assert drop_repeated_lines("t = 1\n    return total\n    x", layout, suffix) == "t = 1"
    assert drop_repeated_lines("return total", layout, suffix) == ""


def test_overlap_with_the_rest_of_the_line_is_removed_without_splitting_words() -> None:
    assert drop_overlap("a, b)", ")\n") == "a, b"
    assert drop_overlap("a, b):", "):\n    pass") == "a, b"
    assert drop_overlap("max", "x)\n") == "max"
    assert drop_overlap("x = 1", "\nnext") == "x = 1"
    assert drop_overlap("item]", "] + rest") == "item"


def test_cut_points_are_line_prefixes_longest_first_without_openers() -> None:
    assert cut_points("\n  a\n  if b:\n    c", PYTHON) == ["\n  a\n  if b:\n    c", "\n  a"]
    assert cut_points("x\n\n", PYTHON) == ["x"]
    assert cut_points("if a:\n    # why\n    b()", PYTHON) == ["if a:\n    # why\n    b()"]
    assert cut_points("a()\n# done", PYTHON) == ["a()\n# done", "a()"]
    assert cut_points("# only a comment", PYTHON) == ["# only a comment"]


def test_line_limit_does_not_count_the_rest_of_the_opener_line() -> None:
    assert limit_lines("\na\nb\nc", 2) == "\na\nb"
    assert limit_lines("a\nb\nc", 2) == "a\nb"


def test_indent_unit_is_learned_from_the_file() -> None:
    assert indent_unit(["def f():", "  x = 1", "  if x:", "    y = 2"]) == "  "
    assert indent_unit(["func f() {", "\tx := 1", "}"]) == "\t"
    assert indent_unit(["x = 1", "y = 2"]) is None
    assert make_indent(6, "\t") == "\t  "
