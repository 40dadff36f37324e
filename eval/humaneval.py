"""HumanEval-Infilling (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle").

Each problem is a HumanEval function with a gap: `prompt` (text before), `suffix` (after), `canonical_solution`
(the gap), `test` (defines `check(candidate)`). A completion is scored by running
``prompt + completion + suffix + "\\n" + test + "\\ncheck(entry_point)\\n"`` in ``eval.sandbox``.

Completions take the editor's path: the document with the gap removed and the cursor where the gap was becomes a
``fim.request.FimRequest`` (LSP line and UTF-16 column), the engine samples the request's candidates, and
``fim.validate.postprocess`` truncates, validates and ranks them. One adaptation: when the gap is whole lines
(every SingleLine and MultiLine problem), the cursor sits on an empty line of its own after the gap's indentation,
as in an editor that auto-indents and as the model is trained (``engine.data``); the inserted text is followed by
that line's break. With the gap's lines simply removed, the cursor would sit at column 0 in front of the next line's
code, where a one-line suggestion (kept without its line break) would glue itself to that code -- no editor could
accept the right answer there.

Three completions per problem are scored (identical texts run once):
- ``editor``: the top post-processed candidate, or "" when post-processing rejected all of them (the editor
  shows nothing then). This is the headline pass@1.
- ``fallback``: ``editor``, or else the raw top candidate cut to the request's line limit.
- ``raw``: the highest-scoring candidate exactly as the model wrote it (the model alone, no post-processing).

With ``n > 1``, an extra request draws n + 1 candidates at the given temperature, drops the greedy first row (the
engine's convention), post-processes each sample alone, and reports pass@k with the unbiased estimator of Chen
et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from eval.sandbox import Limits, Outcome, run_program
from fim.request import FimRequest, FimSettings, Mode, approx_tokens, build_request
from fim.validate import Candidate, postprocess

if TYPE_CHECKING:
    from engine.contract import Completion, CompletionEngine, SampleOptions

SETS = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span": "HumanEval-RandomSpanInfilling.jsonl.gz",
    "random-span-light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}
# The mode each set asks for; None = what the editor decides at the cursor. MultiLine gaps are several lines, so
# they are asked as a block (a user invoking block completion); a blank line mid-body would otherwise ask for one.
SET_MODES: dict[str, Mode | None] = {"single-line": None, "multi-line": Mode.MULTI_LINE}
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "benchmarks" / "humaneval-infilling"
PASS_AT = (1, 2, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class Problem:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str

    @property
    def line_gap(self) -> bool:
        """The gap is whole lines: it starts at a line start and ends with a line break."""
        return self.canonical_solution.endswith("\n") and (not self.prompt or self.prompt.endswith("\n"))

    @property
    def indent(self) -> str:
        """For a line gap, the indentation of its first line: the editor's cursor sits after it."""
        if not self.line_gap:
            return ""
        first = self.canonical_solution.split("\n", 1)[0]
        return first[: len(first) - len(first.lstrip(" \t"))]

    @property
    def middle(self) -> str:
        """What a perfect completion inserts at the cursor: a line gap without its first line's indentation (in
        front of the cursor) and its last line break (the cursor line's own)."""
        if not self.line_gap:
            return self.canonical_solution
        return self.canonical_solution[len(self.indent) : -1]


# ---------------------------------------------------------------- data


def default_data_dir() -> Path | None:
    """``../shared/benchmarks/humaneval-infilling`` next to the repository, when it is there."""
    return DEFAULT_DATA if DEFAULT_DATA.is_dir() else None


def load_problems(data_dir: Path, set_name: str, limit: int | None = None) -> list[Problem]:
    """The set's problems in file order (the standard ``.jsonl.gz``, or the same file uncompressed)."""
    path = Path(data_dir) / SETS[set_name]
    if not path.exists() and path.with_suffix("").exists():
        path = path.with_suffix("")
    opener = gzip.open if path.suffix == ".gz" else open
    names = [f.name for f in dataclasses.fields(Problem)]
    problems = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                problems.append(Problem(**{name: record[name] for name in names}))
            if limit is not None and len(problems) >= limit:
                break
    return problems


# ---------------------------------------------------------------- documents and programs


def document(problem: Problem) -> tuple[str, int]:
    """The editor's document and the cursor's string index in it."""
    before = problem.prompt + problem.indent
    return before + ("\n" if problem.line_gap else "") + problem.suffix, len(before)


def splice(problem: Problem, completion: str) -> str:
    """The completed function: the completion inserted at the cursor of ``document(problem)``."""
    text, cursor = document(problem)
    return text[:cursor] + completion + text[cursor:]


def build_program(problem: Problem, completion: str) -> str:
    return splice(problem, completion) + "\n" + problem.test + f"\ncheck({problem.entry_point})\n"


# ---------------------------------------------------------------- metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k), as a stable product (Chen et al.)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def exact_match(completion: str, canonical: str) -> bool:
    return completion.strip() == canonical.strip()


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenConfig:
    options: SampleOptions
    mode: Mode | None = None  # None: the mode the editor picks at the cursor
    canvas: int | None = None  # overrides the request's canvas length
    candidates: int | None = None  # overrides the request's number of candidates
    n: int = 1  # samples per problem for pass@k (n > 1: one more request of n + 1 candidates)


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
    stats: dict[str, float] = field(default_factory=dict)  # LocalEngine.last_stats when there is one


def settings_for(description: dict[str, Any]) -> FimSettings:
    """fim's sizes fitted to what the engine accepts, as the language server does."""
    return FimSettings().fitted(description.get("max_text_tokens"), description.get("max_canvas"))


def make_request(
    problem: Problem, config: GenConfig, settings: FimSettings, count: Callable[[str], int], max_canvas: int | None
) -> FimRequest:
    text, cursor = document(problem)
    request = build_request(text, cursor, "python", settings, count)
    if config.mode is not None and config.mode is not request.mode:
        mode = config.mode
        request = dataclasses.replace(
            request,
            mode=mode,
            canvas_length=settings.canvas_length(mode),
            num_candidates=settings.num_candidates(mode),
            max_lines=settings.line_limit(mode),
        )
    canvas = config.canvas or request.canvas_length
    canvas = min(canvas, max_canvas) if max_canvas else canvas
    return dataclasses.replace(
        request, canvas_length=canvas, num_candidates=config.candidates or request.num_candidates
    )


def cut_lines(text: str, request: FimRequest) -> str:
    """The raw text cut to the request's line limit, as the editor would before any syntax check."""
    return "\n".join(text.split("\n")[: request.max_lines]).rstrip()


def _complete(
    engine: CompletionEngine, request: FimRequest, options: SampleOptions, n: int, session: str
) -> list[Completion]:
    return engine.complete(
        request.prefix,
        request.suffix,
        language=request.language,
        canvas_length=request.canvas_length,
        num_candidates=n,
        options=options,
        session_id=session,
    )


def _samples(engine: CompletionEngine, request: FimRequest, config: GenConfig, session: str) -> tuple[str, ...]:
    """n i.i.d. samples at the configured temperature, each post-processed alone ("" when rejected)."""
    if config.n <= 1:
        return ()
    rows = _complete(engine, request, config.options, config.n + 1, session)[1:]  # row 0 is greedy
    kept = [postprocess(request, [Candidate(c.text, c.score)]) for c in rows]
    return tuple(k[0].text if k else "" for k in kept)


def session_id(problem: Problem, run: str) -> str:
    """A fresh engine session per problem and run: every timed request prefills its context from scratch (cold),
    also when a sweep asks the same engine again."""
    return f"eval:{run}:{problem.task_id}"


def task_of(session: str | None) -> str:
    return (session or "").split(":", 2)[-1]


def _engine_stats(engine: CompletionEngine) -> dict[str, float]:
    stats = engine.last_stats
    return {k: float(v) for k, v in dataclasses.asdict(stats).items()} if stats is not None else {}


def generate(
    engine: CompletionEngine, problem: Problem, request: FimRequest, config: GenConfig, session: str
) -> Generation:
    """One editor request for the problem (timed), plus the pass@k samples when n > 1 (not timed)."""
    t0 = time.perf_counter()
    raw = _complete(engine, request, config.options, request.num_candidates, session)
    t1 = time.perf_counter()
    ranked = postprocess(request, [Candidate(c.text, c.score) for c in raw])
    t2 = time.perf_counter()
    stats = _engine_stats(engine)
    top_raw = max(raw, key=lambda c: c.score).text if raw else ""
    editor = ranked[0].text if ranked else ""
    return Generation(
        task_id=problem.task_id,
        mode=str(request.mode),
        editor=editor,
        fallback=editor or cut_lines(top_raw, request),
        raw=top_raw,
        samples=_samples(engine, request, config, session),
        latency_ms=(t2 - t0) * 1e3,
        model_ms=(t1 - t0) * 1e3,
        tokens=sum(c.tokens for c in raw),
        candidates=len(raw),
        accepted=len(ranked),
        stats=stats,
    )


def warm_up(engine: CompletionEngine, problem: Problem, config: GenConfig, settings: FimSettings) -> None:
    """One untimed request, so lazy initialisation (allocator pools, kernels) is not charged to the first problem."""
    max_canvas = engine.describe().get("max_canvas")
    request = make_request(problem, config, settings, engine.count_tokens, max_canvas)
    _complete(engine, request, config.options, request.num_candidates, "eval:warm-up")


def generate_all(
    engine: CompletionEngine, problems: Sequence[Problem], config: GenConfig, *, progress: bool = True
) -> list[Generation]:
    description = engine.describe()
    settings = settings_for(description)
    count = engine.count_tokens
    max_canvas = description.get("max_canvas") if isinstance(description.get("max_canvas"), int) else None
    if problems:
        warm_up(engine, problems[0], config, settings)
    run = secrets.token_hex(4)
    out = []
    for problem in tqdm(problems, desc="generate", unit="task", disable=not progress):
        request = make_request(problem, config, settings, count, max_canvas)
        out.append(generate(engine, problem, request, config, session_id(problem, run)))
    return out


@dataclass
class OracleEngine:
    """Answers each problem with its own middle: what post-processing leaves of a perfect model (a ceiling)."""

    answers: dict[str, str]  # task id -> middle
    ready: bool = True
    last_stats: None = None

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> OracleEngine:
        return cls({p.task_id: p.middle for p in problems})

    def describe(self) -> dict[str, Any]:
        return {"name": "oracle", "kind": "oracle"}

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def forget(self, session_id: str) -> None:
        """Nothing is kept per session."""

    def close(self) -> None:
        """Nothing is held."""

    def complete(self, prefix: str, suffix: str, *, num_candidates: int, session_id: str | None = None, **_: Any):
        from engine.contract import Completion

        text = self.answers.get(task_of(session_id), "")
        return [Completion(text=text, score=0.0, tokens=approx_tokens(text))] * num_candidates


# ---------------------------------------------------------------- execution


class ExecCache:
    """Outcomes by (task, completion): each distinct program runs once per harness, across variants and runs."""

    def __init__(self, limits: Limits = Limits(), workers: int = 2) -> None:  # noqa: B008 - frozen default
        self.limits = limits
        self.workers = max(1, workers)
        self.outcomes: dict[tuple[str, str], Outcome] = {}

    def run(self, pairs: Iterable[tuple[Problem, str]], *, progress: bool = True) -> None:
        todo = {(p.task_id, c): p for p, c in pairs if (p.task_id, c) not in self.outcomes}
        if not todo:
            return
        with (
            ThreadPoolExecutor(self.workers) as pool,
            tqdm(total=len(todo), desc="execute", unit="prog", disable=not progress) as bar,
        ):
            futures = {key: pool.submit(run_program, build_program(p, key[1]), self.limits) for key, p in todo.items()}
            for key, future in futures.items():
                self.outcomes[key] = future.result()
                bar.update()

    def __getitem__(self, key: tuple[str, str]) -> Outcome:
        return self.outcomes[key]


def score(
    problems: Sequence[Problem], generations: Sequence[Generation], cache: ExecCache, *, progress: bool = True
) -> list[dict[str, Any]]:
    """One JSON-ready record per problem, executing every distinct completion once."""
    by_id = {p.task_id: p for p in problems}
    pairs = [
        (by_id[g.task_id], text)
        for g in generations
        for text in dict.fromkeys((g.editor, g.fallback, g.raw, *g.samples))
    ]
    cache.run(pairs, progress=progress)
    return [_record(by_id[g.task_id], g, cache) for g in generations]


def _variant(problem: Problem, text: str, cache: ExecCache) -> dict[str, Any]:
    outcome = cache[problem.task_id, text]
    return {"completion": text, "passed": outcome.passed, "kind": outcome.kind, "detail": outcome.detail}


def _record(problem: Problem, g: Generation, cache: ExecCache) -> dict[str, Any]:
    editor = _variant(problem, g.editor, cache)
    record = {"task_id": g.task_id, "mode": g.mode, **editor, "exact_match": exact_match(g.editor, problem.middle)}
    record |= {
        "latency_ms": round(g.latency_ms, 3),
        "model_ms": round(g.model_ms, 3),
        "tokens": g.tokens,
        "candidates": g.candidates,
        "accepted": g.accepted,
        "fallback": _variant(problem, g.fallback, cache),
        "raw": _variant(problem, g.raw, cache) | {"exact_match": exact_match(g.raw, problem.middle)},
    }
    if g.stats:
        record["engine_stats"] = g.stats
    if g.samples:
        record["samples"] = [_variant(problem, s, cache) for s in g.samples]
    return record


# ---------------------------------------------------------------- summary


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "mean": _mean(values)}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """pass@1 (editor, fallback, raw), pass@k (n > 1), exact match, outcome kinds, latency and throughput."""
    model_s = sum(r["model_ms"] for r in records) / 1e3
    summary: dict[str, Any] = {
        "problems": len(records),
        "pass@1": _mean(r["passed"] for r in records),
        "pass@1_fallback": _mean(r["fallback"]["passed"] for r in records),
        "pass@1_raw": _mean(r["raw"]["passed"] for r in records),
        "exact_match": _mean(r["exact_match"] for r in records),
        "exact_match_raw": _mean(r["raw"]["exact_match"] for r in records),
        "accept_rate": _mean(r["accepted"] > 0 for r in records),
        "kinds": dict(Counter(r["kind"] for r in records).most_common()),
        "modes": dict(Counter(r["mode"] for r in records).most_common()),
        "latency_ms": _spread([r["latency_ms"] for r in records]),
        "model_ms": _spread([r["model_ms"] for r in records]),
        "tokens_per_s": sum(r["tokens"] for r in records) / model_s if model_s > 0 else math.nan,
    }
    n = min((len(r.get("samples", ())) for r in records), default=0)
    if n > 1:
        correct = [sum(s["passed"] for s in r["samples"]) for r in records]
        summary["n"] = n
        ks = sorted({*(k for k in PASS_AT if k <= n), n})
        summary["pass@k"] = {str(k): _mean(pass_at_k(n, c, k) for c in correct) for k in ks}
    return summary


def evaluate(
    engine: CompletionEngine,
    problems: Sequence[Problem],
    config: GenConfig,
    cache: ExecCache,
    *,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate (timed, sequential), then execute (parallel): per-problem records and their summary.

    The phases do not overlap, so sandboxed programs never compete with the model for CPU during timing.
    """
    generations = generate_all(engine, problems, config, progress=progress)
    records = score(problems, generations, cache, progress=progress)
    return records, summarize(records)


def write_results(out_dir: Path, records: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """``results.jsonl`` (one line per problem) and ``summary.json`` in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "results.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
