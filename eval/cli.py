"""``diffill eval``: HumanEval-Infilling pass@1/pass@k and the speed/quality sweep (see docs/eval.md).

    diffill eval humaneval-infilling --set single-line [--model DIR | --remote URL] [--limit N] [--out DIR]
    diffill eval speed [--set single-line] [--steps 1 2 4 8 16] [--thresholds 0.5 0.7 0.9 1.0] [--limit N]

Progress bars and logs go to stderr; the summary JSON goes to stdout and, with the per-problem JSONL, to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.humaneval import (
    SET_MODES,
    SETS,
    ExecCache,
    GenConfig,
    OracleEngine,
    default_data_dir,
    evaluate,
    load_problems,
    write_results,
)
from eval.sandbox import Limits, capabilities
from fim.request import Mode

if TYPE_CHECKING:
    from engine.contract import CompletionEngine

MODES = {"auto": None, "single-line": Mode.SINGLE_LINE, "multi-line": Mode.MULTI_LINE}


class UsageError(Exception):
    """A bad combination of arguments or a missing input, reported as `diffill eval: error: ...`."""


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", choices=sorted(SETS), default="single-line", help="HumanEval-Infilling subset")
    p.add_argument("--data", type=Path, help="directory with the HumanEval-*Infilling*.jsonl.gz files")
    p.add_argument("--limit", type=int, help="only the first N problems of the set (quick runs)")
    p.add_argument("--out", type=Path, help="output directory (default runs/eval/<command>-<set>-<time>)")
    p.add_argument("--workers", type=int, default=2, help="programs executed in parallel")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    p.add_argument("--memory-mb", type=int, default=1024, help="address-space limit per program")
    p.add_argument("--device", default="auto", help="device for in-process models (auto, cpu, cuda)")
    p.add_argument("--threads", type=int, help="torch CPU threads for in-process models")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def add_sampling_arguments(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    if not sweep:
        p.add_argument("--steps", type=int, default=8, help="denoising step budget")
        p.add_argument("--threshold", type=float, default=0.9, help="confidence threshold for parallel commits")
    p.add_argument("--temperature", type=float, default=0.8, help="temperature of candidates after the first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mode", choices=sorted(MODES), help="request mode (default: multi-line for the multi-line set, else auto)"
    )
    p.add_argument("--canvas", type=int, help="canvas length (default: the request's, clamped to the model's)")
    p.add_argument("--candidates", type=int, help="candidates per request (default: the request's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffill eval", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("humaneval-infilling", help="pass@1 / pass@k, exact match, latency on HumanEval-Infilling")
    add_data_arguments(p)
    add_sampling_arguments(p, sweep=False)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    source.add_argument("--remote", help="URL of a `diffill serve` endpoint")
    source.add_argument("--oracle", action="store_true", help="answer with the true middle (post-processing ceiling)")
    p.add_argument("--token", help="bearer token for --remote")
    p.add_argument("--autoregressive", action="store_true", help="the AR twin (embedded default-ar, or --model)")
    p.add_argument("--n", type=int, default=1, help="samples per problem for pass@k (needs --temperature > 0)")
    p.set_defaults(func=cmd_humaneval)

    p = sub.add_parser("speed", help="steps/threshold sweep of the diffusion model beside the AR twin")
    add_data_arguments(p)
    add_sampling_arguments(p, sweep=True)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="step budgets to sweep")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.9, 1.0], help="thresholds to sweep")
    p.add_argument("--model", help="diffusion checkpoint (default: the embedded model)")
    p.add_argument("--ar-model", help="AR checkpoint (default: the embedded AR twin)")
    p.add_argument("--no-ar", action="store_true", help="skip the AR twin")
    p.set_defaults(func=cmd_speed)
    return parser


# ---------------------------------------------------------------- shared helpers


def data_dir(args: argparse.Namespace) -> Path:
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    path = args.data or default_data_dir()
    if path is None:
        raise UsageError("no HumanEval-Infilling data found next to the repository; pass --data DIR")
    if not (Path(path) / SETS[args.set]).exists() and not (Path(path) / SETS[args.set]).with_suffix("").exists():
        raise UsageError(f"{SETS[args.set]} is not in {path}")
    return Path(path)


def out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "eval" / f"{args.command}-{args.set}-{stamp}"


def load_local(model: str | None, args: argparse.Namespace, *, autoregressive: bool = False) -> CompletionEngine:
    import torch

    from engine.api import load_engine

    if args.threads:
        torch.set_num_threads(args.threads)
    return load_engine(model, device=args.device, autoregressive=autoregressive)


def open_engine(args: argparse.Namespace, problems: list) -> CompletionEngine:
    if args.oracle:
        return OracleEngine.of(problems)
    if args.remote:
        from engine.remote import RemoteEngine  # written beside this package; only needed for remote runs

        return RemoteEngine(args.remote, token=args.token)
    return load_local(args.model, args, autoregressive=args.autoregressive)


def sample_options(args: argparse.Namespace, **overrides: Any):
    from engine.contract import SampleOptions

    values = {"temperature": args.temperature, "seed": args.seed}
    if hasattr(args, "threshold"):
        values |= {"steps": args.steps, "threshold": args.threshold}
    return SampleOptions(**(values | overrides))


def gen_config(args: argparse.Namespace, **option_overrides: Any) -> GenConfig:
    mode = MODES[args.mode] if args.mode else SET_MODES.get(args.set)
    return GenConfig(
        options=sample_options(args, **option_overrides),
        mode=mode,
        canvas=args.canvas,
        candidates=args.candidates,
        n=getattr(args, "n", 1),
    )


def limits(args: argparse.Namespace) -> Limits:
    return Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)


def run_info(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    return {
        "set": args.set,
        "data": str(data),
        "limit": args.limit,
        "sandbox": {**capabilities(), "timeout_s": args.timeout, "memory_mb": args.memory_mb},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------- commands


def cmd_humaneval(args: argparse.Namespace) -> int:
    if not 1 <= args.n <= 63 or (args.n > 1 and args.temperature <= 0):
        raise UsageError("--n must be in [1, 63], and --n > 1 needs --temperature > 0 (else every sample is the same)")
    if args.token and not args.remote:
        raise UsageError("--token goes with --remote")
    data = data_dir(args)
    problems = load_problems(data, args.set, args.limit)
    config = gen_config(args)
    engine = open_engine(args, problems)
    cache = ExecCache(limits(args), args.workers)
    t0 = time.perf_counter()
    records, summary = evaluate(engine, problems, config, cache, progress=not args.no_progress)
    summary = (
        run_info(args, data)
        | {
            "engine": engine.describe(),
            "options": {**vars(config.options), "mode": args.mode or str(config.mode or "auto"), "n": args.n},
            "wall_s": time.perf_counter() - t0,
        }
        | summary
    )
    out = out_dir(args)
    write_results(out, records, summary)
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'results.jsonl'} and {out / 'summary.json'}", file=sys.stderr)
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from eval.speed import SweepConfig, run_sweep, write_report

    data = data_dir(args)
    problems = load_problems(data, args.set, args.limit)
    diffusion = load_local(args.model, args)
    ar = None if args.no_ar else load_local(args.ar_model, args, autoregressive=True)
    sweep = SweepConfig(base=gen_config(args), steps=tuple(args.steps), thresholds=tuple(args.thresholds))
    cache = ExecCache(limits(args), args.workers)
    points = run_sweep(diffusion, ar, problems, sweep, cache, progress=not args.no_progress)
    out = out_dir(args)
    meta = run_info(args, data) | {"diffusion": diffusion.describe(), "autoregressive": ar.describe() if ar else None}
    paths = write_report(out, points, meta)
    print(json.dumps([p.as_dict() for p in points], indent=2))
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from engine.errors import DiffillError

    try:
        return int(args.func(args) or 0)
    except (UsageError, DiffillError, OSError) as e:
        print(f"diffill eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
