"""`diffill complete` misuse: each mistake is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--candidates", "0"], "--candidates must be at least 1"),
        (["--canvas", "-3"], "--canvas must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--repairs", "-1"], "--repairs must be at least 0"),
        (["--first-steps", "-2"], "--first-steps must be at least 0"),
        (["--threshold", "2"], "threshold must be in [0, 1]"),
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--device", "tpu"], "cannot use device 'tpu'"),
        (["--model", "/no/such/checkpoint"], "checkpoint directory not found"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(flags, message, capsys):
    assert main(["complete", f"{DEMO}:2:1", *flags]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("diffill: error:") and message in line


def test_a_position_past_the_end_of_the_file_is_one_line_and_exit_2(capsys):
    lines = len(DEMO.read_text(encoding="utf-8").splitlines())
    assert main(["complete", f"{DEMO}:{lines + 75}:1"]) == 2  # found before any model loads
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"diffill: error: {DEMO}:{lines + 75}:1 is outside the file, which has {lines} lines"
