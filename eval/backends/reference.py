"""Reference rows beside every model: the copy-from-context floor and the oracle ceiling.

Both are ``CompletionEngine``s, so they take the editor's path like any model (the same window, the same
post-processing) and their rows mean exactly what a model's row means:

- ``CopyEngine`` (the floor, issue 15): complete the line by copying the rest of the nearest line in the window that
  starts the same way as the cursor's line. The cursor line's text before the cursor, without its indentation, is
  the key; lines above and below are tried nearest first (above before below at equal distance); the first whose
  text, without indentation, starts with the key and goes on is copied from there to its end. An empty key (the
  cursor after indentation only) suggests nothing. A model that does not beat this has learned nothing the file
  does not already say.
- ``OracleEngine`` (the ceiling): answers each task with its own expected middle; what post-processing leaves of a
  perfect model.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from engine.contract import Completion
from eval.backends.base import StatelessBackend
from eval.editor import task_of
from fim.request import approx_tokens

__all__ = ["CopyEngine", "OracleEngine", "copy_rest_of_line"]


class _HasMiddle(Protocol):
    task_id: str

    @property
    def middle(self) -> str: ...


def _nearest_first(above: list[str], below: list[str]) -> Iterator[str]:
    """Lines by distance from the cursor line: 1 above, 1 below, 2 above, ..."""
    for pair in itertools.zip_longest(reversed(above), below):
        yield from (line for line in pair if line is not None)


def answer(text: str, num_candidates: int) -> list[Completion]:
    """The same text as every candidate."""
    return [Completion(text=text, score=0.0, tokens=approx_tokens(text))] * num_candidates


def copy_rest_of_line(prefix: str, suffix: str) -> str:
    """The copy baseline's suggestion for a cursor between prefix and suffix ("" when no line matches)."""
    prefix_lines = prefix.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    key = prefix_lines[-1].lstrip()
    if not key.strip():
        return ""
    below = suffix.replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:]
    for line in _nearest_first(prefix_lines[:-1], below):
        text = line.lstrip()
        rest = text[len(key) :].rstrip()
        if text.startswith(key) and rest:
            return rest
    return ""


@dataclass
class CopyEngine(StatelessBackend):
    """The copy-from-context floor as an engine (stateless; every candidate is the same suggestion)."""

    def describe(self) -> dict[str, Any]:
        return {"name": "copy", "kind": "copy"}

    def complete(self, prefix: str, suffix: str, *, num_candidates: int, **_: Any) -> list[Completion]:
        return answer(copy_rest_of_line(prefix, suffix), num_candidates)


@dataclass
class OracleEngine(StatelessBackend):
    """Answers each task with its own middle (looked up by the task id in the eval session id)."""

    answers: dict[str, str]  # task id -> middle

    @classmethod
    def of(cls, tasks: Iterable[_HasMiddle]) -> OracleEngine:
        return cls({t.task_id: t.middle for t in tasks})

    def describe(self) -> dict[str, Any]:
        return {"name": "oracle", "kind": "oracle"}

    def complete(
        self, prefix: str, suffix: str, *, num_candidates: int, session_id: str | None = None, **_: Any
    ) -> list[Completion]:
        return answer(self.answers.get(task_of(session_id), ""), num_candidates)
