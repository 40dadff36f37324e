"""SantaCoder-FIM (Allal et al. 2023, "SantaCoder: don't reach for the stars!"): one-line middles in Python,
JavaScript and Java, scored by exact match -- and edit similarity -- of the first non-empty line, stripped (the
metric SantaCoder, DreamOn and Open-dLLM report).

File: the ``bigcode/santacoder-fim-task`` rows as Parquet (needs pyarrow) or JSON Lines (``.jsonl``/``.jsonl.gz``):
``name``, ``language`` (``py``, ``js``, ``java``), ``prompt`` (text before the middle), ``suffix``,
``canonical_solution`` (the middle), ``tests`` (not used: the reference scores by match). The document is
``prompt + suffix`` through ``eval.editor.place_gap`` (a whole-line middle -- the prompt ends a line, the suffix
starts with the line's break -- puts the cursor after its indentation, as an editor does), asked in single-line
mode: every middle is one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.editor import FimTask, Generation, place_gap, timing_summary
from eval.metrics import edit_similarity, first_line, mean
from eval.suites.files import read_records, require
from fim.languages import normalize_language
from fim.request import Mode

FIELDS = ("name", "language", "prompt", "suffix", "canonical_solution")


@dataclass(frozen=True)
class SantaCoderProblem:
    task_id: str
    language: str  # canonical (fim.languages): python, javascript, java
    prompt: str
    suffix: str
    canonical_solution: str

    def task(self) -> FimTask:
        gap, after = self.canonical_solution, self.suffix
        if after.startswith("\n") and not gap.endswith("\n"):  # a whole line whose break is in the suffix
            gap, after = gap + "\n", after[1:]
        text, cursor, middle = place_gap(self.prompt, gap, after)
        return FimTask(self.task_id, self.language, text, cursor, middle, Mode.SINGLE_LINE)


def load_problems(
    path: Path, languages: Sequence[str] | None = None, limit: int | None = None
) -> list[SantaCoderProblem]:
    """Rows in file order; `languages` as canonical names or aliases (py, js)."""
    wanted = {normalize_language(lang) for lang in languages or ()}
    problems: list[SantaCoderProblem] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(read_records(path), 1):
        require(row, FIELDS, f"{path}: row {number}")
        language = normalize_language(row["language"])
        if wanted and language not in wanted:
            continue
        count = seen[row["name"]] = seen.get(row["name"], 0) + 1
        task_id = row["name"] if count == 1 else f"{row['name']}#{count}"  # names are not unique across languages
        problems.append(SantaCoderProblem(task_id, language, row["prompt"], row["suffix"], row["canonical_solution"]))
        if limit is not None and len(problems) >= limit:
            break
    return problems


class SantaCoderSuite:
    name = "santacoder-fim"

    def __init__(self, problems: Sequence[SantaCoderProblem]) -> None:
        self.problems = {p.task_id: p for p in problems}
        self.tasks = [p.task() for p in problems]

    def score(self, tasks: Sequence[FimTask], generations: Sequence[Generation]) -> list[dict[str, Any]]:
        records = []
        for g in generations:
            problem = self.problems[g.task_id]
            ours, reference = first_line(g.editor), first_line(problem.canonical_solution)
            records.append(
                {
                    "task_id": g.task_id,
                    "language": problem.language,
                    "completion": g.editor,
                    "exact_match": ours == reference,
                    "edit_similarity": edit_similarity(ours, reference),
                    "raw": {"completion": g.raw, "exact_match": first_line(g.raw) == reference},
                }
                | g.timing()
            )
        return records

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        languages = sorted({r["language"] for r in records})
        return {
            "headline": "exact_match",
            "exact_match": mean(r["exact_match"] for r in records),
            "exact_match_raw": mean(r["raw"]["exact_match"] for r in records),
            "edit_similarity": mean(r["edit_similarity"] for r in records),
            "exact_match_by_language": {
                lang: mean(r["exact_match"] for r in records if r["language"] == lang) for lang in languages
            },
        } | timing_summary(records)
