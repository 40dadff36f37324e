"""`python -m eval.bench_lsp` end to end: the real language server over stdio, the embedded default model, a
fim-dev-shaped set of two files, one of which opens no block (a multi-line request cannot be asked there)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from eval.bench_lsp import main

WITH_BLOCKS = """import os


def size_of(path):
    if os.path.isdir(path):
        return sum(size_of(os.path.join(path, name)) for name in os.listdir(path))
    return os.path.getsize(path)


class Counter:
    def __init__(self, start):
        self.value = start
"""
WITHOUT_BLOCKS = '''"""Constants only."""
DEFAULT_TIMEOUT_SECONDS = 30
MAXIMUM_RETRY_COUNT = 5
BASE_DIRECTORY_NAME = "data"
'''


def _fim_dev(path: Path, files: dict[str, str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for name, text in files.items():
            middle = len(text) // 2
            handle.write(json.dumps({"path": name, "prefix": text[:middle], "suffix": text[middle:]}) + "\n")
    return path


def _rows(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| default ")]
    return {cells[1].strip(): [cell.strip() for cell in cells] for cells in rows}


def test_multi_line_requests_are_asked_only_where_a_block_opens(tmp_path, capsys) -> None:
    data = _fim_dev(tmp_path / "set.jsonl.gz", {"a/blocks.py": WITH_BLOCKS, "a/constants.py": WITHOUT_BLOCKS})
    argv = ["--model", "default", "--threads", "1", "--n", "3", "--fim-dev", str(data)]
    assert main([*argv, "--seed", "1", "--scenario", "single-line", "multi-line"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == {"single-line", "multi-line"}
    for cells in rows.values():
        assert cells[2] == "3" and float(cells[3]) > 0  # n, p50 ms


def test_a_set_without_any_block_is_a_clear_error(tmp_path) -> None:
    data = _fim_dev(tmp_path / "set.jsonl.gz", {"constants.py": WITHOUT_BLOCKS})
    with pytest.raises(ValueError, match="opens a block"):
        main(["--model", "default", "--threads", "1", "--n", "1", "--fim-dev", str(data), "--scenario", "single-line"])
