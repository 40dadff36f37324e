"""One completion, from a document snapshot and cursor to ranked texts: fim request -> engine -> fim validation.

Runs in a worker thread (tokenizing, the model and tree-sitter are all blocking work); the event loop only
awaits it. The document URI is the engine's session id, so the engine's per-document context cache is
extended rather than rebuilt as the user types. Cross-file chunks (``lsp_server.crossfile``) are collected here
too, within the room ``fim`` left for them (``FimSettings.cross_file_tokens``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from fim.ask import ask_engine
from fim.confidence import UNCALIBRATED, Calibration
from fim.request import FimSettings, build_request
from fim.validate import Candidate, postprocess
from lsp_server.cache import CompletionCache
from lsp_server.crossfile import CrossFile
from lsp_server.documents import Cursor, Snapshot
from lsp_server.settings import CompletionSettings

if TYPE_CHECKING:
    from pygls.workspace import Workspace

    from engine.contract import CompletionEngine, CompletionStats

__all__ = ["Job", "Ran", "run"]


@dataclass(frozen=True)
class Job:
    engine: CompletionEngine
    document: Snapshot
    cursor: Cursor
    fim: FimSettings
    sampling: CompletionSettings
    cache: CompletionCache
    cross_file: CrossFile | None = None
    workspace: Workspace | None = None
    calibration: Calibration = UNCALIBRATED  # the model's show-or-stay-silent fit (its describe()'s "calibration")
    # Whether the request is still wanted (not superseded by a newer one or an edit): asked before each follow-up
    # request (fim.ask), so a stale request frees the model sooner. None: always.
    current: Callable[[], bool] | None = None


class Ran(NamedTuple):
    texts: list[str]  # ranked, validated completion texts (possibly none)
    stats: CompletionStats | None  # the engine's stats of every call the request made (fim.ask), as one


def run(job: Job) -> Ran:
    """The job's cursor's completions; their texts are stored in the cache."""
    from engine.contract import ContextChunk, SampleOptions

    document, cursor = job.document, job.cursor
    request = build_request(document.text, cursor.offset, document.language_id, job.fim, job.engine.count_tokens)
    chunks: list[ContextChunk] = []
    if job.cross_file is not None and job.workspace is not None:
        budget = job.fim.cross_file_tokens
        found = job.cross_file.snippets(job.workspace, document, cursor.offset, budget, job.engine.count_tokens)
        chunks = [ContextChunk(s.path, s.text) for s in found]
    sampling = job.sampling
    options = SampleOptions(steps=sampling.steps, threshold=sampling.threshold, temperature=sampling.temperature)
    answer = ask_engine(
        job.engine,
        request,
        options,
        session_id=document.uri,
        chunks=chunks,
        repairs=job.fim.repairs,
        first_steps=job.fim.first_steps,
        current=job.current,
    )
    candidates = [Candidate(c.text, c.score) for c in answer.completions]
    ranked = postprocess(request, candidates, job.calibration, job.sampling.min_confidence)
    texts = [c.text for c in ranked if c.text]
    job.cache.put(document.language_id, document.text, cursor.offset, texts)
    return Ran(texts, answer.stats)
