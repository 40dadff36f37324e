"""Reading the published benchmark files: JSON Lines (plain or gzip) and, when pyarrow is installed, Parquet.

Nothing is fetched: the user downloads a benchmark once and passes its path. A malformed line is an error that
names the file and the line, not a traceback from deep inside a suite.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import DiffillError

__all__ = ["DataError", "read_jsonl", "read_records"]


class DataError(DiffillError):
    """A benchmark file that is missing or not in the published format."""


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """One JSON object per non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{number}: not a JSON line ({e})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield record


def read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file as dicts (needs pyarrow, the optional ``eval`` extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path} is a Parquet file and pyarrow is not installed: `pip install pyarrow` (or the eval extra), "
            "or pass the same rows as JSON Lines"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError family
        raise DataError(f"cannot read {path} as Parquet: {e}") from None
    yield from table.to_pylist()


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a ``.parquet``, ``.jsonl`` or ``.jsonl.gz`` file, by extension."""
    path = Path(path)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise DataError(f"no such file: {path}")
        return read_parquet(path)
    return read_jsonl(path)


def require(record: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    """Every field present, as a string."""
    missing = [name for name in fields if not isinstance(record.get(name), str)]
    if missing:
        raise DataError(f"{where}: missing or non-string field(s) {', '.join(missing)}")
