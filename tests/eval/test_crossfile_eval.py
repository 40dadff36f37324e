"""`diffill eval repo --cross-file`: tasks whose middle needs another file's definition, without and with context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.cli import main
from eval.suites.repo import cut_cross_file_tasks

FILES = {
    "pkg/__init__.py": "",
    "pkg/util.py": 'def frobnicate(left, right=2):\n    """Combine two numbers."""\n    return left * right\n',
    "pkg/shapes.py": "class Square:\n    def area(self):\n        return 4\n",
    "pkg/main.py": "from pkg.util import frobnicate\nfrom pkg import shapes\n\n\n"
    + "".join(
        f"def task_{i}(x):\n    y = frobnicate(x, {i})\n    s = shapes.Square()\n    return y + s.area()\n\n\n"
        for i in range(12)
    ),
    "pkg/plain.py": "".join(f"def helper_{i}(a):\n    return a - {i}\n\n\n" for i in range(12)),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_cross_file_tasks_need_a_definition_from_another_file(project: Path) -> None:
    tasks = cut_cross_file_tasks(project, 8, seed=2)
    assert tasks == cut_cross_file_tasks(project, 8, seed=2)
    assert len(tasks) == 16
    for without, with_context in zip(tasks[::2], tasks[1::2], strict=True):
        assert without.task_id.endswith(":no-context") and with_context.task_id.endswith(":cross-file")
        assert without.text == with_context.text and without.middle == with_context.middle
        assert without.root is None and with_context.root == str(project.resolve())
        assert with_context.path == "pkg/main.py"  # the only file using another file's names
        assert "frobnicate" in without.middle or "shapes.Square" in without.middle
        original = FILES["pkg/main.py"]
        assert without.text[: without.cursor] + without.middle + without.text[without.cursor :] == original
        assert "import" not in without.middle


def test_the_run_scores_both_kinds_and_sends_the_chunks(project: Path, tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "run"
    argv = ["repo", str(project), "--cross-file", "--n", "3", "--model", str(tiny_checkpoint), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["by_kind"]) == {"no-context", "cross-file"}
    assert all(kind["tasks"] == 3 and "latency_ms" in kind for kind in summary["by_kind"].values())
    records = {r["task_id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    for task_id, record in records.items():
        stats = record["engine_stats"]
        assert stats["context_tokens"] <= 512  # the tiny model's context: the window made room for the chunks
        if task_id.endswith(":cross-file"):
            assert stats["chunks"] >= 1 and stats["collect_ms"] > 0  # collected as the editor would, and timed
        else:
            assert "chunks" not in stats
    assert main([*argv, "--languages", "go", "--no-progress"]) == 2  # imports are resolved for Python only
