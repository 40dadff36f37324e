"""The VS Code extension, end to end, and its TypeScript unit tests.

`vscode-extension/scripts/e2e.sh` builds the .vsix from this checkout, installs it into a fresh code-server
(VS Code for the browser), starts the real language server on a real checkpoint through the extension, types in
a Python file in headless Debian Chromium and waits for the server's ghost text; then toggles completions off and
on from the status bar, restarts the server, and switches the settings to a `diffill serve` box on loopback.
Artefacts (screenshots, the extension's log with the LSP trace, code-server's and the box's output) go to
`$DIFFILL_ARTEFACTS/vscode` when that is set, else to the test's tmp directory; the path is printed.

Skipped only when Node or Chromium is missing. Missing npm packages are a setup error: run
`tests/vscode/install.sh` (see docs/vscode.md for the apt packages it needs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "vscode-extension"
E2E = REPO / "tests" / "vscode"
CHROMIUM = os.environ.get("DIFFILL_CHROMIUM", "/usr/bin/chromium")
RESULT_PREFIX = "E2E_RESULT "


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the extension and its end-to-end test need Node 20)")
    return node


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set DIFFILL_CHROMIUM)")
    return CHROMIUM


def _require(*paths: Path) -> None:
    missing = [str(path.relative_to(REPO)) for path in paths if not path.exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run tests/vscode/install.sh first", pytrace=False)


@pytest.fixture(scope="module")
def checkpoint(request: pytest.FixtureRequest) -> Path:
    """The briefly trained tiny model when tests/conftest.py has it, else random weights.

    The test types at the end of a comment, where any single-line continuation is valid Python, so even random
    weights yield ghost text that survives the server's syntax validation.
    """
    for name in ("trained_checkpoint", "tiny_checkpoint"):
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            continue
    raise RuntimeError("tests/conftest.py provides no checkpoint fixture")


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    root = os.environ.get("DIFFILL_ARTEFACTS")
    path = Path(root) / "vscode" if root else tmp_path / "artefacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else {}


@pytest.mark.parametrize("script", ["typecheck", "test", "format:check"])
def test_extension_checks_pass(script: str):
    _node()
    _require(EXTENSION / "node_modules")
    run = subprocess.run(["npm", "run", script], cwd=EXTENSION, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


@pytest.mark.slow
def test_ghost_text_from_the_server_appears_in_vscode(checkpoint: Path, artefacts: Path):
    """Local model, toggle, restart, then a `diffill serve` box: ghost text from the server each time."""
    _node()
    chromium = _chromium()
    _require(EXTENSION / "node_modules", E2E / "node_modules" / "code-server", E2E / "node_modules" / "playwright-core")
    command = [
        str(EXTENSION / "scripts" / "e2e.sh"),
        *("--model", str(checkpoint)),
        *("--python", sys.executable),
        *("--artefacts", str(artefacts)),
        *("--chromium", chromium),
        *("--timeout", "180"),
    ]
    print(f"VS Code end-to-end artefacts: {artefacts}")
    # The script bounds each of its own waits; this outer limit only guards against a wedged process tree.
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    result = _result(run.stdout)
    report = (
        f"artefacts: {artefacts}\nerror: {result.get('error')}\n"
        f"--- e2e stderr (tail) ---\n{run.stderr[-4000:]}\n--- stdout (tail) ---\n{run.stdout[-2000:]}"
    )
    assert run.returncode == 0 and result.get("ok"), report
    for key in ("ghostText", "ghostTextAfterRestart", "ghostTextRemote"):
        assert result[key].strip(), report
    for key in ("statusText", "remoteStatusText"):
        assert result[key].endswith(" ms"), report  # latency of the last completion in the status bar
    assert result["remoteStatus"].startswith("Remote engine ready"), report
    assert result["remoteCompletions"] >= 2, report  # the box's warm-up and the completion shown
    assert Path(result["screenshot"]).is_file() and Path(result["screenshotRemote"]).is_file(), report
