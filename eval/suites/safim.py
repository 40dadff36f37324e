"""SAFIM (Gong et al. 2024, "Evaluation of LLMs on Syntax-Aware Code Fill-in-the-Middle Tasks"), scored as its
authors' ``evaluate.py`` scores it.

Files: ``{block,control,api}_completion.jsonl.gz`` from github.com/gonglinyuan/safim (or the Hugging Face dataset
``gonglinyuan/safim``), one JSON object a line: ``task_id``, ``lang`` (python, java, cpp, csharp), ``prompt`` (an
instruction plus the code, for chat models; not used), ``eval_prompt`` (the whole program with the literal
placeholder ``{{completion}}`` where the middle goes), ``ground_truth`` and ``unit_tests``: a string holding the
list of ``{"input": stdin text, "output": [accepted stdout, ...]}`` -- JSON in the published files (the authors'
loader calls ``json.loads``), also accepted as a Python literal, optionally written ``list(...)``; empty (or
``[]``) for the api split.

The task is the editor's: the document is ``eval_prompt`` without the placeholder, the cursor where it was (after
the line's indentation for blocks), the language SAFIM's ``lang``. Block middles are asked as a block (multi-line
mode); control expressions and API calls as the editor decides at the cursor.

Scoring, per the reference: a completion equal to ``ground_truth`` passes. Otherwise, with unit tests, the program
(``eval_prompt`` with every placeholder replaced) runs on each test's input, in order, until one fails; it passes
when each run exits cleanly and prints one of the accepted outputs, compared as ExecEval compares them (line by
line after stripping; else token by token, numbers within 1e-12, yes/no/true/false in any case). Python runs in
``eval.sandbox``; Java, C++ and C# where their toolchain is installed (``eval.native``), else the task is "not
run" and counted apart. Without unit tests (the api split) a completion passes when it equals the ground truth
after removing all whitespace, or, for Python, when both parse as calls whose positional and keyword arguments have
equal ASTs (the reference compares arguments only, not the callee).
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from eval.editor import FimTask, Generation, timing_summary
from eval.metrics import edit_similarity, exact_match, mean
from eval.native import run_native
from eval.sandbox import Limits, Outcome, run_program
from eval.suites.files import DataError, read_jsonl, require
from fim.request import Mode

SPLITS = {
    "block": "block_completion.jsonl.gz",
    "control": "control_completion.jsonl.gz",
    "api": "api_completion.jsonl.gz",
}
LANGUAGES = ("python", "java", "cpp", "csharp")
SPLIT_MODES: dict[str, Mode | None] = {"block": Mode.MULTI_LINE, "control": None, "api": None}
PLACEHOLDER = "{{completion}}"
NOT_RUN = "not run"
# Threads are how many Codeforces Python solutions raise their stack size; the audit hooks still refuse processes.
LIMITS = Limits(timeout_s=10.0, memory_mb=1024, processes=8)
_TOLERANCE = Fraction(1, 10**12)
_CASELESS = {"yes", "no", "true", "false"}


@dataclass(frozen=True)
class UnitTest:
    input: str
    outputs: tuple[str, ...]  # accepted outputs


@dataclass(frozen=True)
class SafimProblem:
    task_id: str
    lang: str
    eval_prompt: str
    ground_truth: str
    unit_tests: tuple[UnitTest, ...]

    def program(self, completion: str) -> str:
        return self.eval_prompt.replace(PLACEHOLDER, completion)

    def task(self, mode: Mode | None) -> FimTask:
        cursor = self.eval_prompt.index(PLACEHOLDER)
        text = self.eval_prompt[:cursor] + self.eval_prompt[cursor + len(PLACEHOLDER) :]
        return FimTask(self.task_id, self.lang, text, cursor, self.ground_truth, mode)


# ---------------------------------------------------------------- data


def parse_unit_tests(value: Any, where: str) -> tuple[UnitTest, ...]:
    """The ``unit_tests`` field: JSON text, a Python literal (``list(...)`` or ``list[...]`` tolerated), or a list
    already decoded. Only literals are evaluated (``ast.literal_eval``); anything else is a DataError."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("list"):
            text = text[4:].strip()
            if text.startswith("(") and text.endswith(")"):
                text = text[1:-1].strip()
        if not text:
            return ()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
                raise DataError(f"{where}: unit_tests is neither JSON nor a Python literal ({e})") from None
    if not isinstance(value, list | tuple):
        raise DataError(f"{where}: unit_tests must hold a list, got {type(value).__name__}")
    tests = []
    for test in value:
        outputs = test.get("output") if isinstance(test, dict) else None
        outputs = [outputs] if isinstance(outputs, str) else outputs
        if not (
            isinstance(test.get("input"), str)
            and isinstance(outputs, list)
            and all(isinstance(o, str) for o in outputs)
        ):
            raise DataError(f"{where}: each unit test must be {{'input': str, 'output': [str, ...]}}")
        tests.append(UnitTest(test["input"], tuple(outputs)))
    return tuple(tests)


def split_path(data: Path, split: str) -> Path:
    """The split's file in a directory (``.jsonl.gz`` or uncompressed), or `data` itself when it is a file."""
    data = Path(data)
    if data.is_file():
        return data
    path = data / SPLITS[split]
    return path.with_suffix("") if not path.exists() and path.with_suffix("").exists() else path


def load_problems(path: Path, languages: Sequence[str] | None = None, limit: int | None = None) -> list[SafimProblem]:
    problems = []
    for number, record in enumerate(read_jsonl(path), 1):
        where = f"{path}:{number}"
        require(record, ("task_id", "lang", "eval_prompt", "ground_truth"), where)
        if PLACEHOLDER not in record["eval_prompt"]:
            raise DataError(f"{where}: eval_prompt has no {PLACEHOLDER} placeholder")
        if languages and record["lang"] not in languages:
            continue
        tests = parse_unit_tests(record.get("unit_tests", ""), where)
        problems.append(
            SafimProblem(record["task_id"], record["lang"], record["eval_prompt"], record["ground_truth"], tests)
        )
        if limit is not None and len(problems) >= limit:
            break
    return problems


# ---------------------------------------------------------------- scoring


def _number(token: str) -> Fraction | None:
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def outputs_match(expected: str, actual: str) -> bool:
    """ExecEval's comparison: stripped lines equal, else tokens equal (numbers within 1e-12, yes/no/true/false
    without case)."""
    lines_a, lines_b = expected.strip().split("\n"), actual.strip().split("\n")
    if len(lines_a) == len(lines_b) and all(a.strip() == b.strip() for a, b in zip(lines_a, lines_b, strict=True)):
        return True
    tokens_a, tokens_b = expected.split(), actual.split()
    if len(tokens_a) != len(tokens_b):
        return False
    for a, b in zip(tokens_a, tokens_b, strict=True):
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            if abs(x - y) > _TOLERANCE:
                return False
        elif (a.lower() if a.lower() in _CASELESS else a) != (b.lower() if b.lower() in _CASELESS else b):
            return False
    return True


def _call_arguments(code: str) -> tuple[list[str], dict[str | None, str]] | None:
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not isinstance(tree.body, ast.Call):
        return None
    call = tree.body
    return [ast.dump(a) for a in call.args], {k.arg: ast.dump(k.value) for k in call.keywords}


def syntax_match(completion: str, ground_truth: str, lang: str) -> bool:
    """The api split's rule: Python calls with equal argument ASTs, else equal text without any whitespace."""
    if lang == "python":
        ours, theirs = _call_arguments(completion), _call_arguments(ground_truth)
        if ours is not None and theirs is not None:
            return ours == theirs
    return re.sub(r"\s+", "", completion) == re.sub(r"\s+", "", ground_truth)


def _clean_exit(outcome: Outcome) -> bool:
    """Ran to its end, or stopped itself with status 0 (``sys.exit()``, ``exit(0)``: common in contest code)."""
    if outcome.passed:
        return True
    return outcome.kind == "exit" and (
        outcome.detail in ("SystemExit", "SystemExit: 0", "SystemExit: None") or outcome.detail.endswith("status 0)")
    )


def run_tests(problem: SafimProblem, completion: str, limits: Limits = LIMITS) -> tuple[bool, str, str]:
    """(passed, result, detail) of the program on its unit tests; result NOT_RUN when no toolchain is here."""
    program = problem.program(completion)
    inputs = [t.input for t in problem.unit_tests]
    if problem.lang == "python":
        outcomes: list[Outcome] = []
        for text in inputs:
            outcomes.append(run_program(program, limits, stdin=text, output_bytes=limits.output_kb * 1024))
            if not _clean_exit(outcomes[-1]):
                break
    else:
        found = run_native(problem.lang, program, inputs, limits)
        if found is None:
            return False, NOT_RUN, f"no {problem.lang} toolchain on this machine"
        outcomes = found
    for number, (test, outcome) in enumerate(zip(problem.unit_tests, outcomes, strict=False), 1):
        if not _clean_exit(outcome):
            return False, outcome.kind, f"test {number}: {outcome.detail}"
        if not any(outputs_match(expected, outcome.output) for expected in test.outputs):
            return False, "wrong answer", f"test {number}: printed {outcome.output.strip()[:120]!r}"
    return True, "passed", ""


def judge(problem: SafimProblem, completion: str, limits: Limits = LIMITS) -> tuple[bool, str, str]:
    """(passed, result, detail) as the reference evaluate.py decides."""
    if completion == problem.ground_truth:
        return True, "exact", ""
    if problem.unit_tests:
        passed, result, detail = run_tests(problem, completion, limits)
    else:
        passed = syntax_match(completion, problem.ground_truth, problem.lang)
        result, detail = ("match" if passed else "wrong answer"), ""
    if not passed and not completion.strip() and result != NOT_RUN:
        result = "empty"
    return passed, result, detail


class SafimSuite:
    def __init__(
        self, problems: Sequence[SafimProblem], split: str, *, limits: Limits = LIMITS, workers: int = 2
    ) -> None:
        self.name = f"safim/{split}"
        self.problems = {p.task_id: p for p in problems}
        self.tasks = [p.task(SPLIT_MODES[split]) for p in problems]
        self.limits = limits
        self.workers = max(1, workers)

    def score(self, tasks: Sequence[FimTask], generations: Sequence[Generation]) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(self.workers) as pool:
            verdicts = list(pool.map(lambda g: judge(self.problems[g.task_id], g.editor, self.limits), generations))
        records = []
        for g, (passed, result, detail) in zip(generations, verdicts, strict=True):
            problem = self.problems[g.task_id]
            records.append(
                {
                    "task_id": g.task_id,
                    "lang": problem.lang,
                    "completion": g.editor,
                    "passed": passed,
                    "result": result,
                    "detail": detail,
                    "exact_match": exact_match(g.editor, problem.ground_truth),
                    "edit_similarity": edit_similarity(g.editor.strip(), problem.ground_truth.strip()),
                    "raw": {"completion": g.raw, "exact_match": exact_match(g.raw, problem.ground_truth)},
                }
                | g.timing()
            )
        return records

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        judged = [r for r in records if r["result"] != NOT_RUN]
        by_lang = sorted({r["lang"] for r in records})
        return {
            "headline": "pass@1",
            "pass@1": mean(r["passed"] for r in records),
            "pass@1_judged": mean(r["passed"] for r in judged),
            "not_run": len(records) - len(judged),
            "pass@1_by_language": {lang: mean(r["passed"] for r in records if r["lang"] == lang) for lang in by_lang},
            "exact_match": mean(r["exact_match"] for r in records),
            "exact_match_raw": mean(r["raw"]["exact_match"] for r in records),
            "edit_similarity": mean(r["edit_similarity"] for r in records),
            "results": dict(Counter(r["result"] for r in records).most_common()),
        } | timing_summary(records)
