"""CPU time of one warm completion request of an embedded model, on realistic code (the fim-dev files).

    python -m eval.bench_sampling [--model DIR] [--autoregressive] [--candidates 4] [--steps 8] [--canvas 16]
        [--tasks 12] [--max-lines 1] [--initial-canvas N] [--threshold 0.9] [--dtype bfloat16]
        [--canvas-cache]

For each of the first `--tasks` rest-of-line and full-line tasks of ../shared/benchmarks/fim-dev: a request with
the prefix short by one character warms the session (as typing does), then the request at the cursor is timed
with `time.process_time()` -- the process's own CPU time, one torch thread, so the figure moves less with other
load on the machine than wall time does. Prints p50 and mean CPU-ms. docs/speed.md keeps the results.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import torch

from engine.api import load_engine
from engine.contract import DTYPES, SampleOptions
from fim.request import FimSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "fim-dev" / "tinygrad-fim-dev.jsonl.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_sampling", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: the embedded pair)")
    parser.add_argument("--autoregressive", action="store_true")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--canvas", type=int, default=FimSettings().single_line_canvas)
    parser.add_argument("--tasks", type=int, default=12, help="tasks of each kind (rest-of-line, full-line)")
    parser.add_argument(
        "--max-lines", type=int, default=1, help="line limit, as the editor's single-line mode (0: none)"
    )
    parser.add_argument("--initial-canvas", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=SampleOptions.threshold)
    parser.add_argument("--dtype", choices=DTYPES, default=None)
    parser.add_argument(
        "--canvas-cache", action=argparse.BooleanOptionalAction, default=SampleOptions.canvas_cache,
        help="run only the canvas positions a step can change (SampleOptions.canvas_cache)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with gzip.open(args.data, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    tasks = [r for kind in ("rest-of-line", "full-line") for r in [r for r in rows if r["kind"] == kind][: args.tasks]]
    engine = load_engine(args.model, device="cpu", autoregressive=args.autoregressive, threads=1, dtype=args.dtype)
    options = SampleOptions(
        steps=args.steps,
        threshold=args.threshold,
        max_lines=args.max_lines,
        initial_canvas=args.initial_canvas,
        canvas_cache=args.canvas_cache,
    )
    cpu_ms, steps = [], []
    for task in tasks:
        prefix, suffix = task["prefix"][-5000:], task["suffix"][:1500]
        ask = dict(language="python", canvas_length=args.canvas, num_candidates=args.candidates, options=options)
        engine.complete(prefix[:-1], suffix, session_id=task["id"], **ask)
        start = time.process_time()
        engine.complete(prefix, suffix, session_id=task["id"], **ask)
        cpu_ms.append((time.process_time() - start) * 1e3)
        steps.append(engine.last_stats.steps if engine.last_stats else 0)
    model = str(args.model) if args.model else "default-ar" if args.autoregressive else "default"
    p50, mean = statistics.median(cpu_ms), statistics.mean(cpu_ms)
    mean_steps = statistics.mean(steps)
    print(f"{model}: {len(cpu_ms)} requests, CPU-ms p50 {p50:.0f}, mean {mean:.0f}, steps per request {mean_steps:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
