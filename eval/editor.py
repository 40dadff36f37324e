"""The editor's path for one benchmark task: document + cursor -> FIM request -> engine -> post-processing.

Every suite (HumanEval-Infilling, SAFIM, SantaCoder-FIM, tasks cut from a repository) turns its rows into
``FimTask``s -- a document, a cursor (string index), a language and the expected middle -- and this module asks
any ``CompletionEngine`` exactly as the language server does: ``fim.request.build_request`` windows the document and
picks the mode (``fim_request`` is the one place that calls it), the engine samples the request's candidates, and
``fim.validate.postprocess`` truncates, validates, filters and ranks them (``GenConfig.min_confidence`` is the
editor's show-or-stay-silent threshold, ``completion.minConfidence``).

A task may ask for cross-file context (``FimTask.root``: the repository its file is in): the chunks are then
collected as the language server collects them (``fim.crossfile.collect``: imported definitions resolved in the
repository, read from disk), within the room ``FimSettings.fitted`` reserves for ``cross_file_tokens``, and the
collection is part of the timed request (``latency_ms``).

Three completions per task come back: ``editor`` (the top post-processed candidate, "" when all were rejected: the
editor shows nothing), ``fallback`` (editor, else the raw top candidate cut to the line limit) and ``raw`` (the
best candidate as the model wrote it). With ``n > 1`` an extra, untimed request draws n + 1 candidates at the
configured temperature, drops the greedy first row (the engine's convention) and post-processes each sample alone.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from eval.metrics import mean, spread
from fim.ask import ask_engine
from fim.confidence import UNCALIBRATED, Calibration
from fim.crossfile import DiskReader, collect
from fim.request import FimRequest, FimSettings, Mode, build_request
from fim.validate import Assessed, Candidate, assess, postprocess, select

if TYPE_CHECKING:
    from engine.contract import CompletionEngine, CompletionStats, ContextChunk, SampleOptions


@dataclass(frozen=True)
class FimTask:
    """One completion to ask for: the editor's document, the cursor's string index in it, the expected middle."""

    task_id: str
    language: str  # an LSP language id or alias (fim.languages normalises it)
    text: str
    cursor: int
    middle: str
    mode: Mode | None = None  # the suite's mode for this task; None: what the editor picks at the cursor
    # Cross-file context: the repository root holding the task's file (`path`, relative to it) and the token budget
    # the editor would reserve for chunks (crossFile.maxTokens); None / 0: the file alone.
    root: str | None = None
    path: str | None = None
    cross_file_tokens: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.cursor <= len(self.text):
            raise ValueError(f"{self.task_id}: cursor {self.cursor} is outside a document of {len(self.text)} chars")


def place_gap(before: str, gap: str, after: str) -> tuple[str, int, str]:
    """(document, cursor, middle) for a gap between `before` and `after`, as an editor would hold it.

    A whole-line gap (it starts at a line start and ends with a line break) leaves the cursor on an empty line of
    its own after the gap's first-line indentation -- as after Enter in an editor that auto-indents, and as the
    model is trained (``engine.data``). The middle is then the gap without that indentation and without its last
    line break (the cursor line's own). Any other gap is simply cut out.
    """
    if not (gap.endswith("\n") and (not before or before.endswith("\n"))):
        return before + after, len(before), gap
    first = gap.split("\n", 1)[0]
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    head = before + indent
    return head + "\n" + after, len(head), gap[len(indent) : -1]


def fim_request(
    text: str, offset: int, language: str, settings: FimSettings, count: Callable[[str], int]
) -> FimRequest:
    """``fim.request.build_request`` at a string offset: the only call site in eval/."""
    return build_request(text, offset, language, settings, count)


def settings_for(
    description: dict[str, Any], cross_file_tokens: int = 0, first_steps: int | None = None
) -> FimSettings:
    """fim's sizes fitted to what the engine accepts, as the language server does (`first_steps`: None, the
    editor's default; no quick first ask for an engine that is not a diffusion model either way)."""
    quick = {} if first_steps is None else {"first_steps": first_steps}
    return FimSettings(cross_file_tokens=cross_file_tokens, **quick).fitted(description)


@dataclass(frozen=True)
class GenConfig:
    options: SampleOptions
    mode: Mode | None = None  # overrides the task's mode; None: the task's, else what the editor picks
    canvas: int | None = None  # overrides the request's canvas length
    candidates: int | None = None  # overrides the request's number of candidates
    n: int = 1  # samples per problem for pass@k (n > 1: one more request of n + 1 candidates)
    # The show-or-stay-silent threshold: 0 (benchmarks' default) shows every text that is not degenerate; None is
    # the model's own default (its calibration's, what an editor applies when the user sets nothing).
    min_confidence: float | None = 0.0
    # Follow-up requests when no single-line candidate parses (fim.ask); the editor's default unless set.
    repairs: int = FimSettings.repairs
    # Steps of a single-line request's quick first ask (fim.ask); None: the editor's default for the engine (none
    # unless it is a diffusion model), resolved by ``Asker.of``.
    first_steps: int | None = None


@dataclass(frozen=True)
class Generation:
    task_id: str
    mode: str
    editor: str
    fallback: str
    raw: str
    samples: tuple[str, ...]
    latency_ms: float  # engine.complete + post-processing, what the editor waits for
    model_ms: float  # engine.complete alone
    tokens: int  # tokens the engine produced over all candidates of the timed request
    candidates: int
    accepted: int  # candidates post-processing kept
    stats: dict[str, float] = field(default_factory=dict)  # the engine's stats of the request's calls (fim.ask)
    repairs: int = 0  # follow-up requests made (fim.ask)
    escalated: bool = False  # the quick first ask had nothing to show: asked again at full steps (fim.ask)
    line: bool = False  # a multi-line request's block had nothing to show: its first line was asked (fim.ask)
    assessed: tuple[Assessed, ...] = ()  # every distinct post-processed text and its show-or-stay-silent signals

    def timing(self) -> dict[str, Any]:
        """The fields every suite's per-task record carries."""
        record = {
            "mode": self.mode,
            "latency_ms": round(self.latency_ms, 3),
            "model_ms": round(self.model_ms, 3),
            "tokens": self.tokens,
            "candidates": self.candidates,
            "accepted": self.accepted,
            "repairs": self.repairs,
            "escalated": self.escalated,
            "line": self.line,
        }
        record["assessed"] = [
            {"text": a.text, "confidence": a.confidence, "rejected": a.rejected} | dataclasses.asdict(a.signals)
            for a in self.assessed
        ]
        return record | ({"engine_stats": self.stats} if self.stats else {})


def make_request(
    task: FimTask, config: GenConfig, settings: FimSettings, count: Callable[[str], int], max_canvas: int | None
) -> FimRequest:
    request = fim_request(task.text, task.cursor, task.language, settings, count)
    mode = config.mode or task.mode
    if mode is not None and mode is not request.mode:
        request = dataclasses.replace(request, **settings.sizes(mode))
    canvas = config.canvas or request.canvas_length
    canvas = min(canvas, max_canvas) if max_canvas else canvas
    return dataclasses.replace(
        request, canvas_length=canvas, num_candidates=config.candidates or request.num_candidates
    )


def cut_lines(text: str, request: FimRequest) -> str:
    """The raw text cut to the request's line limit, as the editor would before any syntax check."""
    return "\n".join(text.split("\n")[: request.max_lines]).rstrip()


def _samples(
    engine: CompletionEngine,
    request: FimRequest,
    config: GenConfig,
    session: str,
    chunks: Sequence[ContextChunk],
    calibration: Calibration,
) -> tuple[str, ...]:
    """n i.i.d. samples at the configured temperature, each post-processed alone ("" when rejected)."""
    if config.n <= 1:
        return ()
    n = config.n + 1  # row 0 is greedy
    answer = ask_engine(engine, request, config.options, num_candidates=n, session_id=session, chunks=chunks)
    rows = answer.completions[1:]
    threshold = calibration.threshold(config.min_confidence)
    kept = [postprocess(request, [Candidate(c.text, c.score)], calibration, threshold) for c in rows]
    return tuple(k[0].text if k else "" for k in kept)


def session_id(task_id: str, run: str) -> str:
    """A fresh engine session per task and run: every timed request prefills its context from scratch (cold),
    also when a sweep asks the same engine again."""
    return f"eval:{run}:{task_id}"


def task_of(session: str | None) -> str:
    return (session or "").split(":", 2)[-1]


def _engine_stats(stats: CompletionStats | None) -> dict[str, float]:
    return {k: float(v) for k, v in dataclasses.asdict(stats).items()} if stats is not None else {}


def generate(
    engine: CompletionEngine,
    task_id: str,
    request: FimRequest,
    config: GenConfig,
    run: str,
    chunks_for: Callable[[FimRequest], Sequence[ContextChunk]] | None = None,
    calibration: Calibration = UNCALIBRATED,
) -> Generation:
    """One editor request for the task (timed, cross-file collection by `chunks_for` included; texts judged under
    the model's `calibration`), plus the pass@k samples when n > 1 (not timed)."""
    session = session_id(task_id, run)
    t_collect = time.perf_counter()
    chunks = tuple(chunks_for(request)) if chunks_for is not None else ()
    t0 = time.perf_counter()
    answer = ask_engine(
        engine,
        request,
        config.options,
        session_id=session,
        chunks=chunks,
        repairs=config.repairs,
        first_steps=config.first_steps or 0,
    )
    raw = answer.completions
    t1 = time.perf_counter()
    assessed = assess(request, [Candidate(c.text, c.score) for c in raw], calibration)
    ranked = select(request, assessed, calibration.threshold(config.min_confidence))
    t2 = time.perf_counter()
    stats = _engine_stats(answer.stats) | (
        {"chunks": float(len(chunks)), "collect_ms": (t0 - t_collect) * 1e3} if chunks_for else {}
    )
    top_raw = max(raw, key=lambda c: c.score).text if raw else ""
    editor = ranked[0].text if ranked else ""
    return Generation(
        task_id=task_id,
        mode=str(request.mode),
        editor=editor,
        fallback=editor or cut_lines(top_raw, request),
        raw=top_raw,
        samples=_samples(engine, request, config, session, chunks, calibration),
        latency_ms=(t2 - t_collect) * 1e3,
        model_ms=(t1 - t0) * 1e3,
        tokens=sum(c.tokens for c in raw),
        candidates=len(raw),
        accepted=len(ranked),
        stats=stats,
        repairs=answer.repairs,
        escalated=answer.escalated,
        line=answer.line,
        assessed=tuple(assessed),
    )


@dataclass(frozen=True)
class Asker:
    """What one engine needs to turn tasks into requests: its FIM sizes, token counter and canvas limit."""

    engine: CompletionEngine
    config: GenConfig
    settings: FimSettings
    count: Callable[[str], int]
    max_canvas: int | None
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    description: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration = UNCALIBRATED  # the model's show-or-stay-silent fit, from its description
    readers: dict[str, DiskReader] = field(default_factory=dict)  # one cached reader per repository

    @classmethod
    def of(cls, engine: CompletionEngine, config: GenConfig) -> Asker:
        description = engine.describe()
        max_canvas = description.get("max_canvas")
        max_canvas = max_canvas if isinstance(max_canvas, int) and max_canvas > 0 else None
        settings = settings_for(description, first_steps=config.first_steps)
        config = dataclasses.replace(config, first_steps=settings.first_steps)
        calibration = Calibration.of(description)
        return cls(
            engine, config, settings, engine.count_tokens, max_canvas, description=description, calibration=calibration
        )

    def settings_of(self, task: FimTask) -> FimSettings:
        if not task.cross_file_tokens:
            return self.settings
        return settings_for(self.description, task.cross_file_tokens, self.config.first_steps)

    def request(self, task: FimTask) -> FimRequest:
        return make_request(task, self.config, self.settings_of(task), self.count, self.max_canvas)

    def chunks(self, task: FimTask, request: FimRequest) -> tuple[ContextChunk, ...]:
        """The cross-file chunks the language server would send for this task (``lsp_server.crossfile``)."""
        from engine.contract import ContextChunk

        if task.root is None or task.path is None:
            return ()
        root = Path(task.root)
        read = self.readers.setdefault(task.root, DiskReader(root))
        found = collect(
            task.text,
            task.cursor,
            budget=self.settings_of(task).cross_file_tokens,
            count=self.count,
            path=root / task.path,
            root=root,
            read=read,
            language=request.language,
        )
        return tuple(ContextChunk(s.path, s.text) for s in found)

    def ask(self, task: FimTask) -> Generation:
        chunks_for = functools.partial(self.chunks, task) if task.root is not None else None
        request = self.request(task)
        return generate(self.engine, task.task_id, request, self.config, self.run, chunks_for, self.calibration)

    def warm_up(self, task: FimTask) -> None:
        """One untimed request, so lazy initialisation (allocator pools, kernels, connections) is not charged to
        the first task."""
        request = self.request(task)
        ask_engine(self.engine, request, self.config.options, session_id="eval:warm-up")


def generate_all(
    engine: CompletionEngine, tasks: Sequence[FimTask], config: GenConfig, *, progress: bool = True
) -> list[Generation]:
    asker = Asker.of(engine, config)
    if tasks:
        asker.warm_up(tasks[0])
    return [asker.ask(task) for task in tqdm(tasks, desc="generate", unit="task", disable=not progress)]


def timing_summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What every suite's summary reports about speed and the editor path: problems, latency, tokens/s."""
    records = list(records)
    model_s = sum(r["model_ms"] for r in records) / 1e3
    return {
        "problems": len(records),
        "accept_rate": mean(r["accepted"] > 0 for r in records),
        "modes": dict(Counter(r["mode"] for r in records).most_common()),
        "latency_ms": spread([r["latency_ms"] for r in records]),
        "model_ms": spread([r["model_ms"] for r in records]),
        "tokens_per_s": sum(r["tokens"] for r in records) / model_s if model_s > 0 else float("nan"),
    }
