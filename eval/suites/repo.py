"""FIM tasks cut from a team's own code: how completions do on the code they will be used on.

``diffill eval repo PATH`` walks a directory (sorted, so the walk is the same everywhere), keeps source files whose
extension maps to a language ``fim`` has a grammar for (``--languages`` narrows it), skips hidden and vendored
directories, files over ``--max-file-kb`` and binary files (a NUL byte, or not UTF-8), and cuts ``--n`` tasks with
a seeded generator, cycling through three kinds -- the spans ``engine.data`` trains on, chosen by the same rules:

- ``rest-of-line``: the cursor after at least one typed character of a code line; the middle is the rest of it;
- ``whole-line``: the cursor after a line's indentation; the middle is the line's code;
- ``block``: the cursor at the first statement of a block body (tree-sitter); the middle is the whole body.

The document is the file without the middle, so the editor's mode detection sees what a user would. Same path,
seed, ``--n`` and files: the same tasks, so runs of different backends compare task by task and a stopped run
resumes. Scored by exact match (stripped) and edit similarity of the whole middle, overall and per kind.

``--cross-file`` cuts, instead, tasks whose middle uses a name the file imports from another file of the repository
(a definition there: ``f`` after ``from m import f``, ``m.f`` after ``import m``), Python only, spans of the same
three kinds; each is asked twice, kind ``no-context`` (the file alone, as with ``crossFile.maxTokens`` 0) and kind
``cross-file`` (the chunks the language server would send, collected from the repository on disk within
``--cross-file-tokens``, the window shrunk by as much), so the summary's ``by_kind`` compares them task for task.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.data import pick_span
from eval.editor import FimTask, Generation, timing_summary
from eval.metrics import edit_similarity, exact_match, mean, spread
from eval.suites.files import DataError
from fim.crossfile import DiskReader, read_source, resolve_imports
from fim.languages import SUPPORTED_LANGUAGES, language_from_path, normalize_language

KINDS = {"rest-of-line": "rest_of_line", "whole-line": "whole_line", "block": "block_body"}  # ours -> engine.data
SKIP_DIRS = frozenset(
    {"node_modules", "__pycache__", "venv", "site-packages", "vendor", "third_party", "dist", "build"}
)
MAX_MIDDLE_CHARS = 400  # as engine.data's default: longer blocks are not what a completion is asked for
ATTEMPTS = 50  # files tried per task before a kind is given up on


def source_files(root: Path, languages: Sequence[str] | None, max_bytes: int) -> list[tuple[Path, str]]:
    """(path, language) of candidate files under root, in a fixed order."""
    wanted = {normalize_language(lang) for lang in languages} if languages else set(SUPPORTED_LANGUAGES)
    unknown = wanted - set(SUPPORTED_LANGUAGES)
    if unknown:
        raise DataError(f"no grammar for {', '.join(sorted(unknown))}; languages: {', '.join(SUPPORTED_LANGUAGES)}")
    if not root.is_dir():
        raise DataError(f"not a directory: {root}")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(files):
            path = Path(folder) / name
            language = language_from_path(path)
            if language in wanted and not name.startswith(".") and path.is_file() and path.stat().st_size <= max_bytes:
                found.append((path, language))
    return found


def cut_tasks(
    root: Path, n: int, seed: int = 0, languages: Sequence[str] | None = None, max_file_kb: int = 256
) -> list[FimTask]:
    """n tasks (fewer when the files have no more distinct spans), kinds in turn, deterministic per seed."""
    root = Path(root)
    files = source_files(root, languages, max_file_kb * 1024)
    texts: dict[Path, str | None] = {}
    rng = random.Random(seed)
    tasks: list[FimTask] = []
    seen: set[str] = set()
    kinds = list(KINDS)
    exhausted: set[str] = set()
    turn = 0
    while len(tasks) < n and files and len(exhausted) < len(kinds):
        kind = kinds[turn % len(kinds)]
        turn += 1
        if kind in exhausted:
            continue
        for _ in range(ATTEMPTS):
            path, language = files[rng.randrange(len(files))]
            if path not in texts:
                texts[path] = read_source(path)
            text = texts[path]
            span = pick_span(KINDS[kind], text, language, rng, MAX_MIDDLE_CHARS) if text else None
            if span is None or span[1] <= span[0]:
                continue
            start, end = span
            task_id = f"{path.relative_to(root).as_posix()}:{start}-{end}:{kind}"
            if task_id in seen:
                continue
            seen.add(task_id)
            tasks.append(FimTask(task_id, language, text[:start] + text[end:], start, text[start:end]))
            break
        else:
            exhausted.add(kind)
    return tasks


CROSS_FILE_KINDS = ("no-context", "cross-file")


def foreign_uses(root: Path, path: Path, text: str, read: DiskReader) -> re.Pattern[str] | None:
    """A pattern matching uses of names `text` imports from definitions in other files under `root`, or None."""
    uses = {use for item in resolve_imports(text, path, root, read) for use in item.uses()}
    if not uses:
        return None
    alternatives = "|".join(re.escape(u) for u in sorted(uses, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])(?:{alternatives})\b")


def cut_cross_file_tasks(
    root: Path, n: int, seed: int = 0, max_file_kb: int = 256, cross_file_tokens: int = 512
) -> list[FimTask]:
    """n spans (fewer when the repository has no more) whose middle uses a name defined in another file of the
    repository, each as two tasks: without and with cross-file context (module docstring)."""
    root = Path(root).resolve()
    read = DiskReader(root, max_bytes=max_file_kb * 1024)
    files = [path for path, _ in source_files(root, ["python"], max_file_kb * 1024)]
    patterns: dict[Path, re.Pattern[str] | None] = {}
    rng = random.Random(seed)
    tasks: list[FimTask] = []
    seen: set[str] = set()
    kinds = list(KINDS)
    for attempt in range(n * ATTEMPTS):
        if len(tasks) >= 2 * n or not files:
            break
        kind = kinds[attempt % len(kinds)]
        path = files[rng.randrange(len(files))]
        text = read(path)
        if path not in patterns:
            patterns[path] = foreign_uses(root, path, text, read) if text else None
        pattern = patterns[path]
        span = pick_span(KINDS[kind], text, "python", rng, MAX_MIDDLE_CHARS) if text and pattern else None
        if span is None or span[1] <= span[0]:
            continue
        start, end = span
        middle = text[start:end]
        lines = text[text.rfind("\n", 0, start) + 1 : end].split("\n")
        if not pattern.search(middle) or any(line.lstrip().startswith(("import ", "from ")) for line in lines):
            continue  # the import itself must stay in the document
        relative = path.relative_to(root).as_posix()
        base = f"{relative}:{start}-{end}:{kind}"
        if base in seen:
            continue
        seen.add(base)
        document = text[:start] + text[end:]
        tasks.append(FimTask(f"{base}:no-context", "python", document, start, middle))
        tasks.append(
            FimTask(
                f"{base}:cross-file",
                "python",
                document,
                start,
                middle,
                root=str(root),
                path=relative,
                cross_file_tokens=cross_file_tokens,
            )
        )
    return tasks


def kind_of(task_id: str) -> str:
    return task_id.rsplit(":", 1)[-1]


class MiddleSuite:
    """Tasks scored by their whole middle (exact match, edit similarity, stripped), overall and per kind (the
    last ``:``-separated part of the task id)."""

    def __init__(self, name: str, tasks: Sequence[FimTask]) -> None:
        self.name = name
        self.tasks = list(tasks)
        self.middles = {t.task_id: t.middle for t in tasks}

    def score(self, tasks: Sequence[FimTask], generations: Sequence[Generation]) -> list[dict[str, Any]]:
        records = []
        for g in generations:
            middle = self.middles[g.task_id]
            records.append(
                {
                    "task_id": g.task_id,
                    "kind": kind_of(g.task_id),
                    "completion": g.editor,
                    "exact_match": exact_match(g.editor, middle),
                    "edit_similarity": edit_similarity(g.editor.strip(), middle.strip()),
                    "raw": {"completion": g.raw, "exact_match": exact_match(g.raw, middle)},
                }
                | g.timing()
            )
        return records

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        kinds = dict.fromkeys(r["kind"] for r in records)  # first-seen order
        by_kind = {
            kind: {
                "tasks": len(rows),
                "exact_match": mean(r["exact_match"] for r in rows),
                "edit_similarity": mean(r["edit_similarity"] for r in rows),
                "latency_ms": spread([r["latency_ms"] for r in rows]),
            }
            for kind in kinds
            if (rows := [r for r in records if r["kind"] == kind])
        }
        return {
            "headline": "exact_match",
            "exact_match": mean(r["exact_match"] for r in records),
            "exact_match_raw": mean(r["raw"]["exact_match"] for r in records),
            "edit_similarity": mean(r["edit_similarity"] for r in records),
            "by_kind": by_kind,
        } | timing_summary(records)


class RepoSuite(MiddleSuite):
    def __init__(self, root: Path, tasks: Sequence[FimTask]) -> None:
        super().__init__(f"repo/{Path(root).resolve().name}", tasks)
