"""The checkpoint the language-server tests run: the trained tiny model once it exists, else random weights."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def checkpoint(request: pytest.FixtureRequest) -> Path:
    """The briefly trained tiny model when tests/conftest.py has it (plausible completions), else random weights."""
    for name in ("trained_checkpoint", "tiny_checkpoint"):
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            continue
    raise RuntimeError("tests/conftest.py provides no checkpoint fixture")
