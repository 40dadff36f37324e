"""A resumable run of one suite on one backend: tasks -> editor path -> scores, one JSON line per task.

The run directory holds ``run.json`` (what is being run: suite, backend, sampling options -- a later invocation
with other settings refuses to mix its results in), ``results.jsonl`` (appended and flushed task by task, so a
stopped 5,000-problem run loses at most the chunk in flight) and ``summary.json`` (rewritten at the end from every
record, old and new). Running the same command again skips the task ids already in ``results.jsonl``; a line cut
short by a kill is dropped and redone.

Tasks go in chunks: the chunk's completions are generated first (timed, sequentially), then scored (programs may
execute in parallel), so sandboxed programs never compete with the model for CPU while it is being timed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tqdm import tqdm

from engine.errors import DiffillError
from eval.editor import Asker, FimTask, GenConfig, Generation
from eval.showing import labelled, show_summary
from fim.confidence import Calibration

if TYPE_CHECKING:
    from engine.contract import CompletionEngine

CHUNK = 32  # tasks generated before their chunk is scored and written


class RunError(DiffillError):
    """A run directory that holds a different run."""


class Suite(Protocol):
    """A benchmark: its tasks in a fixed order, how a chunk of completions is scored, how records sum up."""

    name: str  # e.g. "safim/block", "humaneval-infilling/single-line"

    @property
    def tasks(self) -> Sequence[FimTask]: ...

    def score(self, tasks: Sequence[FimTask], generations: Sequence[Generation]) -> list[dict[str, Any]]: ...

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]: ...


def _load_records(path: Path) -> list[dict[str, Any]]:
    """The complete records of a results file; a last line cut short by a kill is removed from the file."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records = []
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number != len(lines) - 1:
                raise RunError(f"{path}:{number + 1} is not a JSON line; remove the file to start over") from None
            path.write_text("".join(lines[:number]), encoding="utf-8")
    return records


def _relabel(path: Path, records: list[dict[str, Any]], tasks: dict[str, FimTask]) -> list[dict[str, Any]]:
    """Records with their show fields recomputed from the tasks (cheap, deterministic): a run resumed after the
    labels or filters changed reports them the current way; the file is rewritten only when something changed."""
    fresh = [r | labelled(r, tasks[r["task_id"]]) if r["task_id"] in tasks else r for r in records]
    if fresh != records:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fresh), encoding="utf-8")
    return fresh


def _claim(out_dir: Path, identity: dict[str, Any]) -> None:
    """Write run.json, or check that the one there describes this same run."""
    path = out_dir / "run.json"
    identity = json.loads(json.dumps(identity, default=str))  # as it reads back
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != identity:
            changed = sorted(k for k in identity.keys() | previous.keys() if identity.get(k) != previous.get(k))
            raise RunError(
                f"{out_dir} holds another run (different {', '.join(changed)}); pass a new --out to start one"
            )
        return
    path.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")


def run_suite(
    suite: Suite,
    engine: CompletionEngine,
    config: GenConfig,
    out_dir: Path,
    identity: dict[str, Any],
    meta: dict[str, Any] | None = None,
    *,
    progress: bool = True,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """Run (or continue) the suite into out_dir; returns the summary written to summary.json.

    `identity`: what makes two invocations the same run (suite, backend, options, data); `meta`: facts recorded in
    the summary only (time, machine, sandbox layers).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim(out_dir, {"suite": suite.name} | identity)
    results = out_dir / "results.jsonl"
    previous = _relabel(results, _load_records(results), {t.task_id: t for t in suite.tasks})
    done = {r["task_id"] for r in previous}
    todo = [t for t in suite.tasks if t.task_id not in done]
    if done and progress:
        print(f"# resuming {out_dir}: {len(suite.tasks) - len(todo)} of {len(suite.tasks)} done", file=sys.stderr)
    t0 = time.perf_counter()
    new: list[dict[str, Any]] = []
    if todo:
        asker = Asker.of(engine, config)
        asker.warm_up(todo[0])
        done_count = len(suite.tasks) - len(todo)
        bar = tqdm(total=len(suite.tasks), initial=done_count, desc=suite.name, unit="task", disable=not progress)
        with results.open("a", encoding="utf-8") as f, bar:
            for start in range(0, len(todo), chunk):
                tasks = todo[start : start + chunk]
                generations = []
                for task in tasks:
                    generations.append(asker.ask(task))
                    bar.update()
                asked = {t.task_id: t for t in tasks}
                for record in suite.score(tasks, generations):
                    record |= labelled(record, asked[record["task_id"]])
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    new.append(record)
                f.flush()
    by_id = {r["task_id"]: r for r in [*previous, *new]}
    records = [by_id[t.task_id] for t in suite.tasks if t.task_id in by_id]
    summary = (
        {"suite": suite.name}
        | identity
        | (meta or {})
        | {"wall_s": time.perf_counter() - t0, "resumed": len(previous)}
        | suite.summarize(records)
        | show_summary(records, Calibration.of((meta or {}).get("engine") or {}))
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary
