"""postprocess with real grammars: syntax rejection, truncation at boundaries, suffix overlap, ranking."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fim import validate
from fim.request import FimRequest, Mode, build_request
from fim.syntax import SyntaxChecker
from fim.validate import Candidate, any_shown, postprocess, repair_point


def request_at(marked: str, language: str) -> FimRequest:
    """A request for the document with its | marker as the cursor."""
    return build_request(marked.replace("|", "", 1), marked.index("|"), language)


def texts(request: FimRequest, *candidates: str) -> list[str]:
    return [c.text for c in postprocess(request, [Candidate(text, 1.0) for text in candidates])]


@dataclass(frozen=True)
class Case:
    """One language's snippets: a call to complete on one line, and a function body after its opener."""

    call: str  # document, | inside a call whose closing bracket is already in the suffix
    call_good: str  # candidate repeating the suffix's closing text
    call_kept: str  # what must remain of it
    call_bad: str  # candidate closing with the wrong bracket
    body: str  # document, | at the end of a function header's opener line
    body_candidate: str  # body, then the closer and another function
    body_kept: str
    broken: str  # a line that does not parse, prepended to the documents


CASES: dict[str, Case] = {
    "python": Case(
        "def f(a, b):\n    return max(|)\n",
        "a, b)",
        "a, b",
        "a, b]",
        "def f(a, b):|\n\n\ndef g():\n    return 1\n",
        "\n    total = a + b\n    return total\n\n\ndef h():\n    pass",
        "\n    total = a + b\n    return total",
        "x = = (\n\n",
    ),
    "javascript": Case(
        "function f(a, b) {\n  return Math.max(|);\n}\n",
        "a, b);",
        "a, b",
        "a, b]);",
        "function f(a, b) {|\n}\n\nfunction g() {\n  return 1;\n}\n",
        "\n  const total = a + b;\n  return total;\n}\n\nfunction h() {}",
        "\n  const total = a + b;\n  return total;",
        "let x = = ;\n\n",
    ),
    "typescript": Case(
        "function f(a: number, b: number): number {\n  return Math.max(|);\n}\n",
        "a, b);",
        "a, b",
        "a, b}",
        "function f(a: number, b: number): number {|\n}\n",
        "\n  const total: number = a + b;\n  return total;\n}\n\nfunction h(): void {}",
        "\n  const total: number = a + b;\n  return total;",
        "let x: = = ;\n\n",
    ),
    "go": Case(
        "package main\n\nfunc f(a, b int) int {\n\treturn max(|)\n}\n",
        "a, b)",
        "a, b",
        "a, b]",
        "package main\n\nfunc f(a, b int) int {|\n}\n",
        "\n\ttotal := a + b\n\treturn total\n}\n\nfunc h() {}",
        "\n\ttotal := a + b\n\treturn total",
        "var x = = \n\n",
    ),
    "rust": Case(
        "fn f(a: i32, b: i32) -> i32 {\n    std::cmp::max(|)\n}\n",
        "a, b)",
        "a, b",
        "a, b]",
        "fn f(a: i32, b: i32) -> i32 {|\n}\n",
        "\n    let total = a + b;\n    total\n}\n\nfn h() {}",
        "\n    let total = a + b;\n    total",
        "let x = = ;\n\n",
    ),
    "java": Case(
        "class A {\n  int f(int a, int b) {\n    return Math.max(|);\n  }\n}\n",
        "a, b);",
        "a, b",
        "a, b]);",
        "class A {\n  int f(int a, int b) {|\n  }\n}\n",
        "\n    int total = a + b;\n    return total;\n  }\n\n  void h() {}",
        "\n    int total = a + b;\n    return total;",
        "int x = = ;\n\n",
    ),
    "c": Case(
        "int f(int a, int b) {\n  return max(|);\n}\n",
        "a, b);",
        "a, b",
        "a, b]);",
        "int f(int a, int b) {|\n}\n",
        "\n  int total = a + b;\n  return total;\n}\n\nvoid h(void) {}",
        "\n  int total = a + b;\n  return total;",
        "int x = = ;\n\n",
    ),
    "cpp": Case(
        "int f(int a, int b) {\n  return std::max(|);\n}\n",
        "a, b);",
        "a, b",
        "a, b]);",
        "int f(int a, int b) {|\n}\n",
        "\n  auto total = a + b;\n  return total;\n}\n\nvoid h() {}",
        "\n  auto total = a + b;\n  return total;",
        "int x = = ;\n\n",
    ),
}
LANGUAGES = sorted(CASES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_candidate_closing_with_the_wrong_bracket_is_rejected(language: str) -> None:
    case = CASES[language]
    assert texts(request_at(case.call, language), case.call_bad) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_repeated_closing_text_of_the_suffix_is_removed(language: str) -> None:
    case = CASES[language]
    request = request_at(case.call, language)
    assert request.mode is Mode.SINGLE_LINE
    assert texts(request, case.call_good) == [case.call_kept]


@pytest.mark.parametrize("language", LANGUAGES)
def test_body_is_kept_and_cut_at_the_end_of_the_block(language: str) -> None:
    case = CASES[language]
    request = request_at(case.body, language)
    assert request.mode is Mode.MULTI_LINE
    assert texts(request, case.body_candidate) == [case.body_kept]


@pytest.mark.parametrize("language", LANGUAGES)
def test_already_broken_file_does_not_veto_good_candidates(language: str) -> None:
    case = CASES[language]
    call = request_at(case.broken + case.call, language)
    assert texts(call, case.call_good) == [case.call_kept]
    assert texts(call, case.call_bad) == []
    body = request_at(case.broken + case.body, language)
    assert texts(body, case.body_candidate) == [case.body_kept]


@pytest.mark.parametrize("language", LANGUAGES)
def test_statement_cut_short_by_the_canvas_is_truncated_to_complete_lines(language: str) -> None:
    case = CASES[language]
    unfinished = case.body_kept + "\n" + case.body_kept.split("\n")[-1].replace("total", "g(total,", 1)
    assert texts(request_at(case.body, language), unfinished) == [case.body_kept]


def test_error_right_at_the_cursor_does_not_veto_a_good_candidate() -> None:
    request = request_at("def f(a):\n    x = g(a,\n    y = |\n    return y\n", "python")
    assert texts(request, "a + 1") == ["a + 1"]


def test_single_line_mode_keeps_only_the_first_line() -> None:
    request = request_at("def f(a):\n    y = |\n", "python")
    assert texts(request, "a + 1\n    z = 2\n    return z") == ["a + 1"]
    assert texts(request, "\n    z = 2") == []


def test_whole_lines_repeating_the_suffix_are_dropped() -> None:
    request = request_at("def f(a):\n    |\n    return total\n", "python")
    assert request.mode is Mode.SINGLE_LINE
    body = request_at("def f(a):|\n    return total\n", "python")
    assert texts(body, "\n    total = a * 2\n    return total\n") == ["\n    total = a * 2"]


def test_overlap_never_splits_a_word() -> None:
    request = request_at("def f(a):\n    return |x\n", "python")
    assert texts(request, "max") == ["max"]


def test_wrongly_indented_body_is_reindented_relative_to_the_cursor_line() -> None:
    request = request_at("class A:\n    def f(self):|\n", "python")
    fixed = "\n        x = 1\n        if x:\n            return x"
    assert texts(request, "\n  x = 1\n  if x:\n      return x") == [fixed]


def test_unfinished_block_opener_is_not_a_complete_suggestion() -> None:
    request = request_at("def f(a):|\n", "python")
    assert texts(request, "\n    x = 1\n    if x:") == ["\n    x = 1"]


def test_multi_line_candidates_stop_at_max_lines() -> None:
    request = request_at("def f(a):|\n", "python")
    body = "".join(f"\n    x{i} = {i}" for i in range(30))
    (kept,) = texts(request, body)
    assert kept.count("\n") == request.max_lines


def test_ranking_puts_higher_scores_first_and_dedupes_identical_texts() -> None:
    request = request_at("def f(a):\n    y = |\n", "python")
    ranked = postprocess(
        request,
        [Candidate("a + 1", 0.2), Candidate("a + 2", 0.9), Candidate("a + 1", 0.5), Candidate("a +", 1.0)],
    )
    assert sorted((c.text, c.score) for c in ranked) == [("a + 1", 0.5), ("a + 2", 0.9)]


def test_a_requests_candidates_are_parsed_once_by_everything_that_judges_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """fim.ask asks repair_point and any_shown, then the caller postprocesses: the same verdicts, one parse each."""
    parsed: list[bytes] = []
    check = SyntaxChecker.check
    monkeypatch.setattr(SyntaxChecker, "check", lambda self, text: parsed.append(text) or check(self, text))
    request = request_at("def f(a):\n    y = |\n", "python")
    candidates = [Candidate("a + (1", 0.5), Candidate("a + 2", 0.9)]
    assert repair_point(request, candidates) is None  # a candidate parses: nothing to repair
    assert any_shown(request, candidates)
    first = len(parsed)
    assert [c.text for c in postprocess(request, candidates)] == ["a + 2"]
    assert len(parsed) == first > 0
    other = request_at("def f(a):\n    y = |\n\n", "python")  # another request judges its own candidates
    assert [c.text for c in postprocess(other, candidates)] == ["a + 2"]
    assert len(parsed) > first


def test_what_a_call_accepts_does_not_depend_on_the_calls_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verdicts are shared, the parse budget is not: a block whose whole text breaks the file and whose budget allows
    one parse is rejected every time, not accepted by a later call that finds the first verdict cached."""
    monkeypatch.setattr(validate, "MAX_CHECKS", 1)
    request = request_at(CASES["python"].body, "python")
    candidates = [Candidate("\n    total = a + b\n    return (", 1.0)]
    assert postprocess(request, candidates) == []
    assert postprocess(request, candidates) == []
    monkeypatch.setattr(validate, "MAX_CHECKS", 2)  # the cut to the first line is what a second parse accepts
    assert [c.text for c in postprocess(request, candidates)] == ["\n    total = a + b"]


def test_empty_candidates_and_empty_lists_give_nothing() -> None:
    request = request_at("x = |\n", "python")
    assert postprocess(request, []) == []
    assert texts(request, "", "   ", "\n") == []


def test_crlf_document_gets_crlf_candidates() -> None:
    request = request_at("def f(a):|\r\n\r\ndef g():\r\n    pass\r\n", "python")
    assert texts(request, "\n    y = a\r\n    return y") == ["\r\n    y = a\r\n    return y"]


def test_non_ascii_text_is_validated_in_utf8_bytes() -> None:
    request = request_at("def f(名):\n    s = '漢字🙂'\n    return g(|)\n", "python")
    assert texts(request, "名, '🎉')") == ["名, '🎉'"]
    assert texts(request, "名, '🎉']") == []


def test_unknown_language_gets_line_based_truncation_only() -> None:
    request = request_at("main = do {|\n}\n", "haskell")
    assert request.mode is Mode.MULTI_LINE
    assert texts(request, "\n  print 1\n}\n\nfoo = (") == ["\n  print 1"]
    single = request_at("x = f(|)\n", "haskell")
    assert texts(single, "1 2)\nnext line") == ["1 2"]


def test_empty_file_accepts_a_new_program() -> None:
    request = request_at("|", "python")
    assert texts(request, "import os\n\nprint(os.getcwd())\n") == ["import os\n\nprint(os.getcwd())"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_crlf_documents_validate_and_keep_crlf_in_every_language(language: str) -> None:
    case = CASES[language]
    request = request_at(case.body.replace("\n", "\r\n"), language)
    assert texts(request, case.body_candidate) == [case.body_kept.replace("\n", "\r\n")]


@pytest.mark.parametrize("language", LANGUAGES)
def test_emoji_and_cjk_before_the_cursor_keep_columns_and_bytes_right(language: str) -> None:
    case = CASES[language]
    if language == "python":
        marked = "# 漢字 🙂🎉 名前\n" + case.call.replace("(|)", "('🙂', |)")
    else:
        marked = "// 漢字 🙂🎉 名前\n" + case.call.replace("(|)", "(/* 🙂 */ |)")
    request = request_at(marked, language)  # the column is counted in UTF-16 units
    assert request.prefix == marked.split("|")[0]
    assert texts(request, case.call_good) == [case.call_kept]
    assert texts(request, case.call_bad) == []


def test_trailing_space_after_code_is_healed_and_candidates_follow_what_was_typed() -> None:
    request = request_at("def f(values):\n    total = 0\n    total += |\n    return total\n", "python")
    assert request.healed == " "
    assert request.model_prefix.endswith("total +=")
    assert request.prefix.endswith("total += ")  # the document's text, for validation
    # The model continues "total +=": its space-led token loses the space the user typed, one without keeps all.
    assert texts(request, " len(values)") == ["len(values)"]
    assert texts(request, "len(values)") == ["len(values)"]
    assert texts(request, "  len(values)") == [" len(values)"]  # only as much as was typed


def test_indentation_and_code_without_trailing_space_are_not_healed() -> None:
    indented = request_at("def f():\n    |\n", "python")
    assert indented.healed == "" and indented.model_prefix == indented.prefix
    plain = request_at("x = f(|)\n", "python")
    assert plain.healed == "" and plain.model_prefix == plain.prefix
    crlf = request_at("x = 1\r\ny = \t|\r\n", "python")
    assert crlf.healed == " \t" and crlf.model_prefix.endswith("\r\ny =")
