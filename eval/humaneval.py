"""HumanEval-Infilling (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle").

Each problem is a HumanEval function with a gap: `prompt` (text before), `suffix` (after), `canonical_solution`
(the gap), `test` (defines `check(candidate)`). A completion is scored by running
``prompt + completion + suffix + "\\n" + test + "\\ncheck(entry_point)\\n"`` in ``eval.sandbox``.

Completions take the editor's path (``eval.editor``): the document with the gap removed and the cursor where the
gap was (``place_gap``: a whole-line gap -- every SingleLine and MultiLine problem -- leaves the cursor on an empty
line of its own after the gap's indentation, as in an editor that auto-indents; with the lines simply removed, the
cursor would sit at column 0 in front of the next line's code, where no editor could accept the right answer).
The ``editor``, ``fallback`` and ``raw`` completions are each executed (identical texts run once).

With ``n > 1``, an extra request draws n + 1 candidates at the given temperature, drops the greedy first row (the
engine's convention), post-processes each sample alone, and reports pass@k with the unbiased estimator of Chen
et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from eval.editor import FimTask, GenConfig, Generation, generate_all, place_gap, timing_summary
from eval.metrics import edit_similarity, exact_match, first_line, mean, pass_at_k
from eval.sandbox import Limits, Outcome, run_program
from eval.suites.files import read_jsonl
from eval.suites.jsonl import in_half as in_position_half
from fim.request import Mode

if TYPE_CHECKING:
    from engine.contract import CompletionEngine

SETS = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span": "HumanEval-RandomSpanInfilling.jsonl.gz",
    "random-span-light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}
# The mode each set asks for; None = what the editor decides at the cursor. MultiLine gaps are several lines, so
# they are asked as a block (a user invoking block completion); a blank line mid-body would otherwise ask for one.
SET_MODES: dict[str, Mode | None] = {"single-line": None, "multi-line": Mode.MULTI_LINE}
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "benchmarks" / "humaneval-infilling"
PASS_AT = (1, 2, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class Problem:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str

    @property
    def middle(self) -> str:
        """What a perfect completion inserts at the cursor (``eval.editor.place_gap``)."""
        return place_gap(self.prompt, self.canonical_solution, self.suffix)[2]

    def task(self) -> FimTask:
        text, cursor = document(self)
        return FimTask(self.task_id, "python", text, cursor, self.middle)


# ---------------------------------------------------------------- data


def default_data_dir() -> Path | None:
    """``../shared/benchmarks/humaneval-infilling`` next to the repository, when it is there."""
    return DEFAULT_DATA if DEFAULT_DATA.is_dir() else None


def set_path(data_dir: Path, set_name: str) -> Path:
    """The set's standard ``.jsonl.gz``, or the same file uncompressed when only that is there."""
    path = Path(data_dir) / SETS[set_name]
    return path.with_suffix("") if not path.exists() and path.with_suffix("").exists() else path


def in_half(problem: Problem, half: str) -> bool:
    """Whether the problem belongs to `half` (``eval.suites.jsonl.HALVES``). The split goes by the HumanEval
    problem a task was cut from (`.../HumanEval/12/L3` -> 12), so the lines of one function never land in both
    halves: a held-out half's contexts are ones the calibration half never saw."""
    found = re.search(r"HumanEval/(\d+)", problem.task_id)
    return in_position_half(int(found.group(1)) if found else 0, half)


def load_problems(data_dir: Path, set_name: str, limit: int | None = None, half: str = "all") -> list[Problem]:
    """The set's problems of `half` in file order (the first `limit` of them)."""
    names = [f.name for f in dataclasses.fields(Problem)]
    problems = []
    for record in read_jsonl(set_path(data_dir, set_name)):
        problem = Problem(**{name: record[name] for name in names})
        if in_half(problem, half):
            problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    return problems


# ---------------------------------------------------------------- documents and programs


def document(problem: Problem) -> tuple[str, int]:
    """The editor's document and the cursor's string index in it."""
    text, cursor, _ = place_gap(problem.prompt, problem.canonical_solution, problem.suffix)
    return text, cursor


def splice(problem: Problem, completion: str) -> str:
    """The completed function: the completion inserted at the cursor of ``document(problem)``."""
    text, cursor = document(problem)
    return text[:cursor] + completion + text[cursor:]


def build_program(problem: Problem, completion: str) -> str:
    return splice(problem, completion) + "\n" + problem.test + f"\ncheck({problem.entry_point})\n"


# ---------------------------------------------------------------- execution


class ExecCache:
    """Outcomes by (task, completion): each distinct program runs once per harness, across variants and runs."""

    def __init__(self, limits: Limits = Limits(), workers: int = 2) -> None:  # noqa: B008 - frozen default
        self.limits = limits
        self.workers = max(1, workers)
        self.outcomes: dict[tuple[str, str], Outcome] = {}

    def run(self, pairs: Iterable[tuple[Problem, str]], *, progress: bool = True) -> None:
        todo = {(p.task_id, c): p for p, c in pairs if (p.task_id, c) not in self.outcomes}
        if not todo:
            return
        with (
            ThreadPoolExecutor(self.workers) as pool,
            tqdm(total=len(todo), desc="execute", unit="prog", disable=not progress) as bar,
        ):
            futures = {key: pool.submit(run_program, build_program(p, key[1]), self.limits) for key, p in todo.items()}
            for key, future in futures.items():
                self.outcomes[key] = future.result()
                bar.update()

    def __getitem__(self, key: tuple[str, str]) -> Outcome:
        return self.outcomes[key]


def score(
    problems: Sequence[Problem], generations: Sequence[Generation], cache: ExecCache, *, progress: bool = True
) -> list[dict[str, Any]]:
    """One JSON-ready record per problem, executing every distinct completion once."""
    by_id = {p.task_id: p for p in problems}
    pairs = [
        (by_id[g.task_id], text)
        for g in generations
        for text in dict.fromkeys((g.editor, g.fallback, g.raw, *g.samples))
    ]
    cache.run(pairs, progress=progress)
    return [_record(by_id[g.task_id], g, cache) for g in generations]


def _variant(problem: Problem, text: str, cache: ExecCache) -> dict[str, Any]:
    outcome = cache[problem.task_id, text]
    return {"completion": text, "passed": outcome.passed, "kind": outcome.kind, "detail": outcome.detail}


def _record(problem: Problem, g: Generation, cache: ExecCache) -> dict[str, Any]:
    editor = _variant(problem, g.editor, cache)
    record = {"task_id": g.task_id, "mode": g.mode, **editor, "exact_match": exact_match(g.editor, problem.middle)}
    record["edit_similarity"] = edit_similarity(first_line(g.editor), first_line(problem.middle))
    record |= g.timing() | {
        "fallback": _variant(problem, g.fallback, cache),
        "raw": _variant(problem, g.raw, cache) | {"exact_match": exact_match(g.raw, problem.middle)},
    }
    if g.samples:
        record["samples"] = [_variant(problem, s, cache) for s in g.samples]
    return record


# ---------------------------------------------------------------- summary


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """pass@1 (editor, fallback, raw), pass@k (n > 1), exact match, first-line edit similarity, outcome kinds,
    latency and throughput."""
    summary: dict[str, Any] = {
        "headline": "pass@1",
        "pass@1": mean(r["passed"] for r in records),
        "pass@1_fallback": mean(r["fallback"]["passed"] for r in records),
        "pass@1_raw": mean(r["raw"]["passed"] for r in records),
        "exact_match": mean(r["exact_match"] for r in records),
        "exact_match_raw": mean(r["raw"]["exact_match"] for r in records),
        "edit_similarity": mean(r["edit_similarity"] for r in records),
        "kinds": dict(Counter(r["kind"] for r in records).most_common()),
    } | timing_summary(records)
    n = min((len(r.get("samples", ())) for r in records), default=0)
    if n > 1:
        correct = [sum(s["passed"] for s in r["samples"]) for r in records]
        summary["n"] = n
        ks = sorted({*(k for k in PASS_AT if k <= n), n})
        summary["pass@k"] = {str(k): mean(pass_at_k(n, c, k) for c in correct) for k in ks}
    return summary


def evaluate(
    engine: CompletionEngine,
    problems: Sequence[Problem],
    config: GenConfig,
    cache: ExecCache,
    *,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate (timed, sequential), then execute (parallel): per-problem records and their summary.

    The phases do not overlap, so sandboxed programs never compete with the model for CPU during timing.
    """
    generations = generate_all(engine, [p.task() for p in problems], config, progress=progress)
    records = score(problems, generations, cache, progress=progress)
    return records, summarize(records)


class HumanEvalSuite:
    """The set as an ``eval.runner`` suite (resumable runs, any backend)."""

    def __init__(self, problems: Sequence[Problem], set_name: str, cache: ExecCache) -> None:
        self.name = f"humaneval-infilling/{set_name}"
        self.problems = list(problems)
        self.tasks = [p.task() for p in problems]
        self.cache = cache

    def score(self, tasks: Sequence[FimTask], generations: Sequence[Generation]) -> list[dict[str, Any]]:
        return score(self.problems, generations, self.cache, progress=False)

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return summarize(records)
