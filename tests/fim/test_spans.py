"""syntax_spans: statements and block bodies per language, as character offsets."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from fim.languages import SUPPORTED_LANGUAGES, get_parser, language_from_path, normalize_language
from fim.spans import Span, syntax_spans

SOURCES: dict[str, tuple[str, str, str]] = {
    # language: (source, a statement it must contain, a function body it must contain)
    "python": (
        "import os\n\ndef area(r):\n    s = '円🙂'\n    return 3.14 * r * r\n",
        "return 3.14 * r * r",
        "s = '円🙂'\n    return 3.14 * r * r",
    ),
    "javascript": (
        "function area(r) {\n  const s = '円🙂';\n  return 3.14 * r * r;\n}\n",
        "return 3.14 * r * r;",
        "const s = '円🙂';\n  return 3.14 * r * r;",
    ),
    "typescript": (
        "function area(r: number): number {\n  const s = '円🙂';\n  return 3.14 * r * r;\n}\n",
        "return 3.14 * r * r;",
        "const s = '円🙂';\n  return 3.14 * r * r;",
    ),
    "tsx": (
        "function App(): JSX.Element {\n  const s = '円🙂';\n  return <div>{s}</div>;\n}\n",
        "return <div>{s}</div>;",
        "const s = '円🙂';\n  return <div>{s}</div>;",
    ),
    "go": (
        'package main\n\nfunc area(r float64) float64 {\n\ts := "円🙂"\n\treturn 3.14 * r * r\n}\n',
        "return 3.14 * r * r",
        's := "円🙂"\n\treturn 3.14 * r * r',
    ),
    "rust": (
        'fn area(r: f64) -> f64 {\n    let s = "円🙂";\n    3.14 * r * r\n}\n',
        'let s = "円🙂";',
        'let s = "円🙂";\n    3.14 * r * r',
    ),
    "java": (
        'class A {\n  double area(double r) {\n    String s = "円🙂";\n    return 3.14 * r * r;\n  }\n}\n',
        "return 3.14 * r * r;",
        'String s = "円🙂";\n    return 3.14 * r * r;',
    ),
    "c": (
        'double area(double r) {\n  const char *s = "円🙂";\n  return 3.14 * r * r;\n}\n',
        "return 3.14 * r * r;",
        'const char *s = "円🙂";\n  return 3.14 * r * r;',
    ),
    "cpp": (
        'namespace g {\ndouble area(double r) {\n  auto s = "円🙂";\n  return 3.14 * r * r;\n}\n}\n',
        "return 3.14 * r * r;",
        'auto s = "円🙂";\n  return 3.14 * r * r;',
    ),
}


def _texts(source: str, spans: list[Span], kind: str) -> list[str]:
    return [source[span.start : span.end] for span in spans if span.kind == kind]


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_syntax_spans_find_statements_and_function_bodies_in_characters(language: str) -> None:
    source, statement, body = SOURCES[language]
    spans = syntax_spans(source, language)
    assert statement in _texts(source, spans, "statement")
    assert body in _texts(source, spans, "block_body")


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_spans_are_sorted_trimmed_and_inside_the_source(language: str) -> None:
    source = SOURCES[language][0]
    spans = syntax_spans(source, language)
    assert spans == sorted(spans, key=lambda s: (s.start, s.end, s.kind))
    for span in spans:
        assert 0 <= span.start < span.end <= len(source)
        text = source[span.start : span.end]
        assert text == text.strip()


def test_python_block_bodies_of_class_if_and_loops_are_found() -> None:
    source = (
        "class A:\n    x = 1\n\n"
        "for i in range(3):\n    print(i)\n"
        "while True:\n    break\n"
        "if a:\n    b = 1\nelse:\n    b = 2\n"
    )
    bodies = _texts(source, syntax_spans(source, "python"), "block_body")
    assert bodies == ["x = 1", "print(i)", "break", "b = 1", "b = 2"]


def test_unknown_language_and_empty_source_give_no_spans() -> None:
    assert syntax_spans("x = 1\n", "cobol") == []
    assert syntax_spans("", "python") == []


def test_nodes_holding_syntax_errors_are_skipped() -> None:
    source = "def good():\n    return 1\n\ndef bad(:\n    return (\n"
    statements = _texts(source, syntax_spans(source, "python"), "statement")
    assert "return 1" in statements
    assert all("bad" not in text for text in statements)


def test_language_ids_and_paths_map_to_canonical_names() -> None:
    assert normalize_language("typescriptreact") == "tsx"
    assert normalize_language("JavaScriptReact") == "javascript"
    assert normalize_language("c++") == "cpp"
    assert normalize_language("Haskell") == "haskell"
    assert language_from_path("src/main.rs") == "rust"
    assert language_from_path("a/b/Widget.TSX") == "tsx"
    assert language_from_path("README.md") is None
    assert all(get_parser(name) is not None for name in SUPPORTED_LANGUAGES)
    assert get_parser("haskell") is None


def test_parsers_are_cached_per_thread() -> None:
    here = get_parser("python")
    assert get_parser("py") is here
    with ThreadPoolExecutor(max_workers=1) as pool:
        there = pool.submit(get_parser, "python").result()
    assert there is not None and there is not here
