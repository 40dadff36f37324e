"""FIM tasks from a JSON Lines file: ``id``, ``kind``, ``prefix``, ``middle``, ``suffix`` (and optionally
``language``, ``path``), the format of ``benchmarks/fim-dev`` (tasks cut from tinygrad, outside the corpus).

The document the editor holds is ``prefix + suffix`` with the cursor at the end of ``prefix``; the middle is what the
user went on to type. The editor picks the mode at the cursor, as it would. Scored like ``repo``: exact match and
edit similarity of the whole middle, stripped, overall and per kind.

``--half`` splits the file deterministically for calibration (``diffill eval calibrate``): within each kind, the
tasks in file order alternate between the ``calibration`` half (even positions) and the ``held-out`` half (odd),
so both halves hold the same mix of kinds and one never sees the other's tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.editor import FimTask
from eval.suites.files import DataError, read_records, require
from eval.suites.repo import MiddleSuite
from fim.languages import language_from_path, normalize_language

FIELDS = ("id", "kind", "prefix", "middle", "suffix")
HALVES = ("all", "calibration", "held-out")


def _language(row: dict[str, Any]) -> str:
    if isinstance(row.get("language"), str):
        return normalize_language(row["language"])
    language = language_from_path(Path(row["path"])) if isinstance(row.get("path"), str) else None
    return language or "python"


def in_half(position: int, half: str) -> bool:
    """Whether the task at `position` among the tasks of its kind belongs to `half`."""
    if half not in HALVES:
        raise DataError(f"unknown half {half!r}; one of {', '.join(HALVES)}")
    return half == "all" or (position % 2 == 0) == (half == "calibration")


def load_tasks(path: Path, half: str = "all", limit: int | None = None) -> list[FimTask]:
    """The file's tasks in file order, those of `half` only; `limit` keeps the first N per kind."""
    tasks: list[FimTask] = []
    seen: dict[str, int] = {}
    kept: dict[str, int] = {}
    for number, row in enumerate(read_records(path), 1):
        require(row, FIELDS, f"{path}: row {number}")
        kind = row["kind"]
        position = seen[kind] = seen.get(kind, -1) + 1
        if not in_half(position, half) or (limit is not None and kept.get(kind, 0) >= limit):
            continue
        kept[kind] = kept.get(kind, 0) + 1
        text = row["prefix"] + row["suffix"]
        tasks.append(FimTask(f"{row['id']}:{kind}", _language(row), text, len(row["prefix"]), row["middle"]))
    return tasks


class JsonlSuite(MiddleSuite):
    def __init__(self, path: Path, tasks: Sequence[FimTask], half: str = "all") -> None:
        name = Path(path).name.split(".")[0]
        super().__init__(name if half == "all" else f"{name}/{half}", tasks)
