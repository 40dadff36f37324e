"""SyntaxChecker: incremental re-parses equal fresh parses, the base stays intact, regions stay local."""

from __future__ import annotations

import pytest

from fim.languages import get_parser
from fim.syntax import SyntaxChecker, local_region

SNIPPETS = {
    "python": (
        "def f(a):\n    x = [名 for 名 in a]\n    ",
        "\n    return x\n",
        ["y = 1", "y = (", "if a:\n        b()"],
    ),
    "javascript": ("function f(a) {\n  const s = '🙂';\n  ", "\n}\n", ["let y = 1;", "let y = (;", "if (a) {}"]),
    "go": ("package main\n\nfunc f() {\n\t", "\n}\n", ["x := 1", "x := (", "for {}"]),
    "cpp": ("int f() {\n  ", "\n}\n", ["int x = 1;", "int x = (;", "return 0;"]),
}


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_incremental_reparse_equals_a_fresh_parse(language: str) -> None:
    prefix, suffix, insertions = SNIPPETS[language]
    parser = get_parser(language)
    assert parser is not None
    checker = SyntaxChecker(parser, prefix.encode(), suffix.encode())
    for text in insertions:
        _, incremental = checker.parse_with(text.encode())
        fresh = parser.parse((prefix + text + suffix).encode())
        assert str(incremental.root_node) == str(fresh.root_node)


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_checks_do_not_depend_on_earlier_checks(language: str) -> None:
    prefix, suffix, insertions = SNIPPETS[language]
    parser = get_parser(language)
    assert parser is not None
    alone = [SyntaxChecker(parser, prefix.encode(), suffix.encode()).check(t.encode()).ok for t in insertions]
    shared = SyntaxChecker(parser, prefix.encode(), suffix.encode())
    assert [shared.check(t.encode()).ok for t in insertions * 2] == alone * 2
    assert alone == [True, False, True]


def test_local_region_stays_small_in_a_long_file_and_holds_the_cursor() -> None:
    functions = [f"def f{i}(a):\n    x = a + {i}\n    return x\n\n" for i in range(2000)]
    source = "".join(functions).encode()
    parser = get_parser("python")
    assert parser is not None
    cursor = source.index(b"def f1000(")
    start, end = local_region(parser.parse(source).root_node, cursor, 4096)
    assert start <= cursor <= end
    assert 0 < end - start <= 4096


def test_error_position_hint_points_into_the_candidate() -> None:
    parser = get_parser("python")
    assert parser is not None
    checker = SyntaxChecker(parser, b"def f(a):\n", b"\n\ndef g():\n    pass\n")
    verdict = checker.check(b"    x = 1\n    y = (1,\n    return x")
    assert not verdict.ok
    assert verdict.error_at is not None and verdict.error_at > len(b"    x = 1\n")
