"""build_request: mode detection, sizes per mode, and token budgets cut at line boundaries."""

from __future__ import annotations

import pytest

from fim.request import FimSettings, Mode, approx_tokens, build_request

SINGLE, MULTI = Mode.SINGLE_LINE, Mode.MULTI_LINE

# (language, document with a | marking the cursor, expected mode)
MODE_CASES: list[tuple[str, str, Mode]] = [
    ("python", "def f(x):|\n", MULTI),
    ("python", "def f(x):  # the body|\n", MULTI),
    ("python", "x = '#':|\n", MULTI),
    ("python", "x = 1  # note:|\n", SINGLE),
    ("python", "def f(x):\n    |\n\ndef g():\n    pass\n", MULTI),
    ("python", "def f(x):\n    y = 1\n    |\n    return y\n", SINGLE),
    ("python", "def f(x):\n    return foo(|)\n", SINGLE),
    ("python", "def f(x):\n    return x +|\n", SINGLE),
    ("python", "x = 1|\n", SINGLE),
    ("python", "|", MULTI),
    ("python", "|x = 1\n", SINGLE),
    ("python", "class A:\n\n    |\n", MULTI),
    ("javascript", "function f(a) {|\n}\n", MULTI),
    ("javascript", "function f(a) {\n  |\n}\n", MULTI),
    ("javascript", "if (a) { // then|\n}\n", MULTI),
    ("javascript", "const url = 'http://x'; // {|\n", SINGLE),
    ("javascript", "function f(a) {\n  return g(|);\n}\n", SINGLE),
    ("typescript", "class A {\n  m(): number {|\n  }\n}\n", MULTI),
    ("tsx", "const x = [1, |];\n", SINGLE),
    ("go", "func f() {\n\t|\n}\n", MULTI),
    ("go", "func f() {\n\tx := 1\n\t|\n}\n", SINGLE),
    ("rust", "fn f() -> i32 {|\n}\n", MULTI),
    ("java", "class A {\n  void m() {\n    |\n  }\n}\n", MULTI),
    ("c", "int f(void) {\n  return g(1, |);\n}\n", SINGLE),
    ("cpp", "namespace n {|\n}\n", MULTI),
    ("haskell", "main = do {|\n", MULTI),
]


def _at_cursor(marked: str) -> tuple[str, int, int]:
    """Document without the | marker, and the marker's string offset."""
    return marked.replace("|", "", 1), marked.index("|")


@pytest.mark.parametrize(("language", "marked", "mode"), MODE_CASES)
def test_mode_follows_what_the_editor_asks_for(language: str, marked: str, mode: Mode) -> None:
    text, offset = _at_cursor(marked)
    assert build_request(text, offset, language).mode is mode


def test_canvas_candidates_and_line_limit_come_from_the_mode() -> None:
    settings = FimSettings(single_line_canvas=16, multi_line_canvas=96, single_line_candidates=5, max_lines=7)
    single = build_request("x = f(\n", 6, "python", settings)
    multi = build_request("def f():\n", 8, "python", settings)
    assert (single.canvas_length, single.num_candidates, single.max_lines) == (16, 5, 1)
    assert (multi.canvas_length, multi.num_candidates, multi.max_lines) == (96, 2, 7)


def test_language_ids_are_normalized_and_indent_is_the_cursor_lines() -> None:
    request = build_request("class A {\n\tm() {\n\t\treturn 1;\n\t}\n}\n", 22, "typescriptreact")
    assert request.language == "tsx"
    assert request.indent == "\t\t"


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        FimSettings(multi_line_canvas=0)
    with pytest.raises(ValueError):
        FimSettings(prefix_tokens=-1)
    assert FimSettings(prefix_tokens=0).prefix_tokens == 0


def _numbered(count: int) -> list[str]:
    return [f"line{i:02d} = {i:02d}\n" for i in range(count)]  # 12 characters each


def test_budgets_keep_the_nearest_whole_lines() -> None:
    lines = _numbered(20)
    text = "".join(lines)
    settings = FimSettings(prefix_tokens=12 * 3 + 5, suffix_tokens=12 * 2 + 7)
    request = build_request(text, 12 * 10 + 5, "python", settings, count_tokens=len)
    assert request.prefix == "".join(lines[7:10]) + "line1"
    assert request.suffix == "0 = 10\n" + "".join(lines[11:13])
    assert text[request.cursor_offset - len(request.prefix) : request.cursor_offset] == request.prefix


def test_budget_cut_prefers_a_blank_line_near_the_far_end() -> None:
    lines = _numbered(20)
    lines[4] = "\n"
    lines[16] = "\n"
    text = "".join(lines)
    settings = FimSettings(prefix_tokens=12 * 6, suffix_tokens=12 * 6)
    request = build_request(text, text.index("line10"), "python", settings, count_tokens=len)
    assert request.prefix == "".join(lines[5:10])  # starts right after the blank line, not at line04
    assert request.suffix == "".join(lines[10:16])  # ends right before the blank line


def test_a_line_longer_than_the_budget_keeps_the_characters_nearest_the_cursor() -> None:
    text = "x = " + "a" * 100 + " + b\n"
    request = build_request(text, 50, "python", FimSettings(prefix_tokens=10, suffix_tokens=4), len)
    assert request.prefix == text[40:50]
    assert request.suffix == text[50:54]


def test_zero_budgets_give_empty_context_and_default_counter_is_cheap() -> None:
    text = "a = 1\nb = 2\n"
    request = build_request(text, 8, "python", FimSettings(prefix_tokens=0, suffix_tokens=0))
    assert (request.prefix, request.suffix) == ("", "")
    assert approx_tokens("x" * 35) == 10
    assert approx_tokens("") == 0


def test_default_budget_windows_a_long_file() -> None:
    lines = _numbered(100) * 40
    text = "".join(lines)
    request = build_request(text, 12 * 2000, "python")
    assert 0 < len(request.prefix) < len(text) // 2
    assert request.prefix.endswith("\n") and request.suffix.endswith("\n")
    assert approx_tokens(request.prefix) <= FimSettings().prefix_tokens


def test_settings_fitted_to_an_engine_keep_the_split_and_clamp_the_canvas() -> None:
    diffusion = {"kind": "diffusion"}
    fitted = FimSettings().fitted(diffusion | {"max_text_tokens": 400, "max_canvas": 24})
    assert (fitted.prefix_tokens, fitted.suffix_tokens) == (300, 100)
    assert (fitted.single_line_canvas, fitted.multi_line_canvas) == (16, 24)
    assert FimSettings().fitted(diffusion | {"max_canvas": 12}).single_line_canvas == 12
    assert FimSettings().fitted(diffusion | {"max_canvas": "64"}) == FimSettings()  # not a positive int: ignored


def test_a_quick_first_ask_is_for_diffusion_engines_only() -> None:
    assert FimSettings().first_steps > 0
    assert FimSettings().fitted({"kind": "diffusion"}).first_steps == FimSettings().first_steps
    for kind in ("autoregressive", None):  # an AR model's answer does not depend on steps; unknown: one ask
        assert FimSettings().fitted({"kind": kind}).first_steps == 0
    with pytest.raises(ValueError, match="first_steps"):
        FimSettings(first_steps=-1)
