"""SAFIM: the published rows load, programs run on stdin and are judged by their output, api calls match by
arguments, and the oracle passes every split through the editor path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eval.cli import main
from eval.suites.files import DataError
from eval.suites.safim import (
    NOT_RUN,
    SafimProblem,
    judge,
    load_problems,
    outputs_match,
    parse_unit_tests,
    split_path,
    syntax_match,
)
from eval.suites.safim import UnitTest as T

COMMON = ["--no-progress", "--workers", "2", "--timeout", "20"]


def _problem(safim_data: Path, split: str, task_id: str) -> SafimProblem:
    return next(p for p in load_problems(split_path(safim_data, split)) if p.task_id == task_id)


def test_unit_tests_parse_from_json_and_python_literals_and_nothing_else() -> None:
    expected = (T("1 2\n", ("3",)),)
    assert parse_unit_tests('[{"input": "1 2\\n", "output": ["3"]}]', "row") == expected
    assert parse_unit_tests("list([{'input': '1 2\\n', 'output': ['3']}])", "row") == expected
    assert parse_unit_tests("list[{'input': '1 2\\n', 'output': ['3']}]", "row") == expected
    assert parse_unit_tests([{"input": "1 2\n", "output": "3"}], "row") == expected
    assert parse_unit_tests("", "row") == () and parse_unit_tests("[]", "row") == ()
    with pytest.raises(DataError, match="row: unit_tests"):
        parse_unit_tests("__import__('os').system('true')", "row")  # never evaluated: not a literal
    with pytest.raises(DataError, match="each unit test"):
        parse_unit_tests('[{"input": 1, "output": []}]', "row")


def test_outputs_compare_as_execeval_compares_them() -> None:
    assert outputs_match("3\n7", "3  \n7\n\n")
    assert outputs_match("3 7", "3\n7")  # token by token when the lines differ
    assert outputs_match("0.1000000000000", "0.1") and not outputs_match("0.1", "0.1001")
    assert outputs_match("YES", "yes") and not outputs_match("Alice", "alice")
    assert outputs_match("123456789012345678", "123456789012345678")
    assert not outputs_match("123456789012345678", "123456789012345679")  # exact, not float
    assert not outputs_match("1 2", "1 2 3")


def test_api_calls_match_by_arguments_or_by_text_without_whitespace() -> None:
    truth = "np.ones((n, n), dtype=int)"
    assert syntax_match("np.ones( (n,n), dtype = int )", truth, "python")
    assert syntax_match("np.zeros((n, n), dtype=int)", truth, "python")  # the reference compares arguments only
    assert not syntax_match("np.ones((n, n))", truth, "python")
    assert not syntax_match("np.ones(shape=(n, n), dtype=int)", truth, "python")
    assert syntax_match("new JSONObject( data )", "new JSONObject(data)", "java")


def test_python_programs_run_on_stdin_and_are_judged_by_what_they_print(safim_data: Path) -> None:
    problem = _problem(safim_data, "block", "block_completion_000001")
    assert judge(problem, problem.ground_truth)[:2] == (True, "exact")
    rewritten = "x, y = map(int, input().split())\n    print(y + x)"
    assert judge(problem, rewritten)[:2] == (True, "passed")
    passed, result, detail = judge(problem, "a, b = map(int, input().split())\n    print(a - b)")
    assert (passed, result) == (False, "wrong answer") and detail.startswith("test 1")
    assert judge(problem, "a, b = input(\n    print(a)")[:2] == (False, "syntax")
    assert judge(problem, "")[:2] == (False, "empty")
    exits = "a, b = map(int, input().split())\n    print(a + b)\n    if _ == t - 1: exit()"
    assert judge(problem, exits)[:2] == (True, "passed")  # contest code may stop itself with status 0


@pytest.mark.parametrize(
    ("task_id", "tool"), [("block_completion_000002", "g++"), ("block_completion_000003", "javac")]
)
def test_compiled_programs_run_where_the_toolchain_is_installed(safim_data: Path, task_id: str, tool: str) -> None:
    problem = _problem(safim_data, "block", task_id)
    swapped = problem.ground_truth.replace("a + b", "b + a")
    if shutil.which(tool) is None:
        assert judge(problem, swapped)[:2] == (False, NOT_RUN)
        return
    assert judge(problem, swapped)[:2] == (True, "passed")
    assert judge(problem, problem.ground_truth.replace("a + b", "a * b"))[:2] == (False, "wrong answer")
    assert judge(problem, "this is not code")[:2] == (False, "syntax")


@pytest.mark.parametrize("split", ["block", "control", "api"])
def test_the_oracle_passes_every_split_through_the_editor_path(split: str, safim_data: Path, tmp_path: Path) -> None:
    out = tmp_path / split
    assert main(["safim", "--data", str(safim_data), "--split", split, "--oracle", "--out", str(out), *COMMON]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert summary["suite"] == f"safim/{split}" and summary["headline"] == "pass@1"
    assert summary["pass@1"] == 1.0 and summary["exact_match"] == 1.0
    assert summary["problems"] == len(records) and {r["result"] for r in records} == {"exact"}
    if split == "block":
        assert set(summary["modes"]) == {"multi-line"}


def test_the_copy_baseline_and_a_language_filter(safim_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    argv = ["safim", "--data", str(safim_data), "--split", "block", "--lang", "python", "--baseline", "copy"]
    assert main([*argv, "--out", str(out), *COMMON]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 1 and summary["backend"]["kind"] == "copy"
    assert summary["pass@1"] == 0.0  # nothing in the file starts like an empty cursor line
    assert main(["safim", "--data", str(safim_data), "--split", "api", "--lang", "cobol", "--oracle"]) == 2
