"""SantaCoder-FIM and repo tasks, resumable runs and the report, end to end through `diffill eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.cli import main
from eval.suites.repo import cut_tasks
from eval.suites.santacoder import load_problems
from tests.eval.suite_rows import REPO_FILES, SANTACODER_ROWS

COMMON = ["--no-progress"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_santacoder_rows_load_from_jsonl_and_parquet_alike(santacoder_jsonl: Path, tmp_path: Path) -> None:
    rows = load_problems(santacoder_jsonl)
    assert [p.language for p in rows] == ["python", "javascript", "java"]
    assert [p.task_id for p in load_problems(santacoder_jsonl, ["py", "java"])] == [rows[0].task_id, rows[2].task_id]
    task = rows[0].task()  # a whole-line middle: the cursor after its indentation on a line of its own
    assert task.text[task.cursor - 4 : task.cursor + 1] == "    \n" and task.middle == "return total"
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    path = tmp_path / "test.parquet"
    pq.write_table(pyarrow.Table.from_pylist(SANTACODER_ROWS), path)
    assert load_problems(path) == rows


@pytest.mark.parametrize(("backend", "expected"), [(["--oracle"], 1.0), (["--baseline", "copy"], 0.0)])
def test_santacoder_scores_the_first_line(backend, expected, santacoder_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["santacoder-fim", "--data", str(santacoder_jsonl), *backend, "--out", str(out), *COMMON]) == 0
    summary = _summary(out)
    assert summary["headline"] == "exact_match" and summary["exact_match"] == expected
    assert set(summary["exact_match_by_language"]) == {"python", "javascript", "java"}
    assert summary["edit_similarity"] == pytest.approx(expected) if expected else summary["edit_similarity"] < 1


def test_repo_tasks_are_deterministic_and_skip_what_is_not_source(source_tree: Path) -> None:
    tasks = cut_tasks(source_tree, 12, seed=3)
    assert [t.task_id for t in tasks] == [t.task_id for t in cut_tasks(source_tree, 12, seed=3)]
    assert [t.task_id for t in tasks] != [t.task_id for t in cut_tasks(source_tree, 12, seed=4)]
    files = {t.task_id.split(":")[0] for t in tasks}
    assert files <= set(REPO_FILES)  # not the binary, hidden, vendored, huge or unknown ones
    kinds = [t.task_id.rsplit(":", 1)[1] for t in tasks]
    assert kinds[:3] == ["rest-of-line", "whole-line", "block"]
    for task in tasks:
        original = REPO_FILES[task.task_id.split(":")[0]]
        assert task.text[: task.cursor] + task.middle + task.text[task.cursor :] == original
    assert {t.language for t in cut_tasks(source_tree, 12, languages=["javascript"])} == {"javascript"}


def test_repo_oracle_scores_everything_and_the_copy_floor_less(source_tree: Path, tmp_path: Path) -> None:
    argv = ["repo", str(source_tree), "--n", "12", "--seed", "1", *COMMON]
    assert main([*argv, "--oracle", "--out", str(tmp_path / "oracle")]) == 0
    summary = _summary(tmp_path / "oracle")
    assert summary["exact_match"] == 1.0 and summary["problems"] == 12
    assert set(summary["by_kind"]) == {"rest-of-line", "whole-line", "block"}
    assert main([*argv, "--baseline", "copy", "--out", str(tmp_path / "copy")]) == 0
    assert _summary(tmp_path / "copy")["exact_match"] < 1.0


def test_a_stopped_run_resumes_where_it_was(source_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["repo", str(source_tree), "--n", "6", "--baseline", "copy", "--out", str(out), *COMMON]
    assert main(argv) == 0
    first = [(r["task_id"], r["completion"]) for r in _records(out)]
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:3]) + lines[3][:20])  # killed while writing the 4th line
    assert main(argv) == 0
    summary = _summary(out)
    assert summary["resumed"] == 3 and summary["problems"] == 6
    assert [(r["task_id"], r["completion"]) for r in _records(out)] == first  # each once, in order


def test_a_run_directory_refuses_a_different_run(source_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["repo", str(source_tree), "--n", "3", "--oracle", "--out", str(out), *COMMON]) == 0
    assert main(["repo", str(source_tree), "--n", "3", "--baseline", "copy", "--out", str(out), *COMMON]) == 2
    assert "holds another run (different backend)" in capsys.readouterr().err


def test_the_report_puts_runs_side_by_side(mini_data: Path, santacoder_jsonl: Path, tmp_path: Path, capsys) -> None:
    runs = []
    for name, argv in {
        "he-oracle": ["humaneval-infilling", "--data", str(mini_data), "--oracle", "--limit", "1"],
        "he-copy": ["humaneval-infilling", "--data", str(mini_data), "--baseline", "copy", "--limit", "1"],
        "sc-oracle": ["santacoder-fim", "--data", str(santacoder_jsonl), "--oracle"],
    }.items():
        runs.append(tmp_path / name)
        assert main([*argv, "--out", str(runs[-1]), *COMMON]) == 0
    capsys.readouterr()
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "report")]) == 0
    table = capsys.readouterr().out
    assert "| humaneval-infilling/single-line | oracle (reference) | pass@1 | 1.000 |" in table
    assert "| santacoder-fim | oracle (reference) | exact_match | 1.000 | 1.000 | 1.000 | 1.000 |" in table  # shown
    assert "| humaneval-infilling/single-line | copy (reference) | pass@1 | 0.000 |" in table
    assert "| santacoder-fim | oracle (reference) | exact_match | 1.000 |" in table
    assert (tmp_path / "report" / "report.md").read_text() == table
    pytest.importorskip("matplotlib")
    assert (tmp_path / "report" / "report.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "report" / "showing.png").read_bytes().startswith(b"\x89PNG")  # precision vs show rate
    assert main(["report", str(tmp_path / "missing")]) == 2
