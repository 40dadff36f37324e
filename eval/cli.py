"""``diffill eval``: FIM benchmarks on any completion backend, side by side (see docs/eval.md).

    diffill eval humaneval-infilling --set single-line [--half calibration|held-out] [BACKEND] [--limit N] [--out DIR]
    diffill eval safim --data DIR --split {block,control,api} [--lang python,java,cpp,csharp] [BACKEND]
    diffill eval santacoder-fim --data FILE [--lang python,javascript,java] [BACKEND]
    diffill eval repo PATH [--languages python,go] [--n N] [--seed S] [--cross-file] [BACKEND]
    diffill eval jsonl --data FILE [--half calibration|held-out] [--limit N] [BACKEND]
    diffill eval calibrate RUN_DIR... [--held-out RUN_DIR...] [--out DIR] [--save MODEL_DIR]
    diffill eval report RUN_DIR... [--out DIR]
    diffill eval speed [--set single-line] [--steps 1 2 4 8 16] [--thresholds 0.5 0.7 0.9 1.0]
        [--diffusion-candidates 4 16] [--limit N]

BACKEND: [--model DIR] (the embedded model by default) | --remote URL | --backend openai --url U --model NAME |
--backend llama-cpp --url U | --backend ollama --model NAME | --baseline copy | --oracle.
Runs are resumable: the same command with the same --out continues where it stopped. Progress bars and logs go to
stderr; the summary JSON goes to stdout and, with the per-task JSONL, to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.cli import add_dtype_argument
from engine.contract import DEFAULT_PRESET, PRESETS, SampleOptions
from eval.backends import KINDS, SINGLE_ANSWER, BackendSpec, open_backend
from eval.editor import GenConfig, settings_for
from eval.humaneval import SET_MODES, SETS, ExecCache, HumanEvalSuite, default_data_dir, load_problems, set_path
from eval.runner import run_suite
from eval.sandbox import Limits, capabilities
from eval.suites.jsonl import HALVES
from fim.request import FimSettings, Mode

MODES = {"auto": None, "single-line": Mode.SINGLE_LINE, "multi-line": Mode.MULTI_LINE}


class UsageError(Exception):
    """A bad combination of arguments or a missing input, reported as `diffill eval: error: ...`."""


def add_run_arguments(p: argparse.ArgumentParser, *, limit: bool = True) -> None:
    if limit:
        p.add_argument("--limit", type=int, help="only the first N problems (quick runs)")
    p.add_argument("--out", type=Path, help="output directory (default runs/eval/<command>-<time>); reuse to resume")
    p.add_argument("--workers", type=int, default=2, help="programs executed in parallel")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    p.add_argument("--memory-mb", type=int, default=1024, help="address-space limit per program")
    p.add_argument("--device", default="auto", help="device for in-process models (auto, cpu, cuda)")
    p.add_argument("--threads", type=int, help="torch CPU threads for in-process models")
    add_dtype_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", choices=sorted(SETS), default="single-line", help="HumanEval-Infilling subset")
    p.add_argument("--data", type=Path, help="directory with the HumanEval-*Infilling*.jsonl.gz files")
    add_run_arguments(p)


def add_sampling_arguments(p: argparse.ArgumentParser, *, sweep: bool, seed: bool = True) -> None:
    if not sweep:
        p.add_argument("--steps", type=int, default=8, help="denoising step budget")
        p.add_argument("--threshold", type=float, default=0.9, help="confidence threshold for parallel commits")
    p.add_argument(
        "--temperature", type=float, help="temperature of candidates after the first (default: the model's own)"
    )
    if seed:
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=sorted(MODES), help="request mode (default: the suite's, else auto)")
    p.add_argument("--canvas", type=int, help="canvas length (default: the request's, clamped to the model's)")
    p.add_argument("--candidates", type=int, help="candidates per request (default: the request's)")
    p.add_argument(
        "--repairs",
        type=int,
        help="follow-up requests when no single-line candidate parses, at each step count asked (fim.ask; default: "
        "FimSettings.repairs)",
    )
    p.add_argument(
        "--first-steps",
        type=int,
        help="diffusion: steps of a single-line request's quick first ask and its repairs, asked again at full steps "
        "when it still has nothing to show (fim.ask; 0: one ask; default: FimSettings.first_steps)",
    )
    p.add_argument(
        "--initial-canvas",
        type=int,
        default=SampleOptions.initial_canvas,
        help="diffusion: the canvas starts this long and grows while its middle has not ended (SampleOptions)",
    )
    p.add_argument(
        "--branch-after",
        type=int,
        default=SampleOptions.branch_after,
        help="diffusion: steps the trunk runs before the candidates branch off it (SampleOptions)",
    )
    p.add_argument(
        "--trunk",
        type=int,
        default=SampleOptions.trunk,
        help="diffusion: rows of the trunk before --branch-after steps (the greedy one and sampled ones)",
    )
    p.add_argument(
        "--canvas-cache",
        action=argparse.BooleanOptionalAction,
        default=SampleOptions.canvas_cache,
        help="diffusion: run only the canvas positions a step can change (SampleOptions)",
    )
    p.add_argument(
        "--min-confidence",
        type=min_confidence,
        default=0.0,
        help="show-or-stay-silent threshold in [0, 1], or `model`: the model's own default, as an editor applies "
        "it (completion.minConfidence; default 0: every text that is not degenerate)",
    )


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=KINDS, help="where completions come from (default: engine)")
    p.add_argument("--model", help="checkpoint directory (engine), or the model name (openai, ollama)")
    p.add_argument("--url", help="server URL (remote, openai, llama-cpp, ollama)")
    p.add_argument("--remote", help="URL of a `diffill serve` endpoint (same as --backend remote --url URL)")
    p.add_argument("--token", help="bearer token for a server backend")
    p.add_argument("--extra-body", help="JSON object merged into each HTTP request body (openai, llama-cpp, ollama)")
    p.add_argument("--send-language", action="store_true", help="send the task's language (diffill serve's field)")
    p.add_argument("--oracle", action="store_true", help="answer with the true middle (post-processing ceiling)")
    p.add_argument("--baseline", choices=["copy"], help="the copy-from-context floor as the backend")
    p.add_argument("--autoregressive", action="store_true", help="the AR twin (embedded default-ar, or --model)")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=DEFAULT_PRESET,
        help="a released coder's sampling: fast (--steps/--threshold/--temperature) or reference (as its authors "
        "evaluated it)",
    )


def min_confidence(value: str) -> float | None:
    """--min-confidence: a number in [0, 1], or "model" (None: the model's calibrated default)."""
    if value == "model":
        return None
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'model', got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'model', got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffill eval", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("humaneval-infilling", help="pass@1 / pass@k, exact match, latency on HumanEval-Infilling")
    add_data_arguments(p)
    p.add_argument("--half", choices=HALVES, default="all", help="the calibration or held-out half (see docs)")
    add_sampling_arguments(p, sweep=False)
    add_backend_arguments(p)
    p.add_argument("--n", type=int, default=1, help="samples per problem for pass@k (needs --temperature > 0)")
    p.set_defaults(func=cmd_humaneval)

    p = sub.add_parser("safim", help="SAFIM pass@1 (block, control-flow, API-call completion)")
    p.add_argument("--data", type=Path, required=True, help="directory with {block,control,api}_completion.jsonl.gz")
    p.add_argument("--split", choices=["block", "control", "api"], required=True)
    p.add_argument("--lang", help="comma-separated languages among python,java,cpp,csharp (default: all)")
    add_run_arguments(p)
    add_sampling_arguments(p, sweep=False)
    add_backend_arguments(p)
    p.set_defaults(func=cmd_safim)

    p = sub.add_parser("santacoder-fim", help="SantaCoder-FIM first-line exact match and edit similarity")
    p.add_argument("--data", type=Path, required=True, help="the task file (.parquet, .jsonl or .jsonl.gz)")
    p.add_argument("--lang", help="comma-separated languages among python,javascript,java (default: all)")
    add_run_arguments(p)
    add_sampling_arguments(p, sweep=False)
    add_backend_arguments(p)
    p.set_defaults(func=cmd_santacoder)

    p = sub.add_parser("repo", help="exact match and edit similarity on FIM tasks cut from your own code")
    p.add_argument("path", type=Path, help="a repository or directory of source files")
    p.add_argument("--languages", help="comma-separated languages (default: every language with a grammar)")
    p.add_argument("--n", type=int, default=300, help="tasks to cut (rest of line, whole line, block, in turn)")
    p.add_argument("--seed", type=int, default=0, help="seed of the task cut (and of sampling)")
    p.add_argument("--max-file-kb", type=int, default=256, help="skip larger files")
    p.add_argument(
        "--cross-file",
        action="store_true",
        help="tasks whose middle uses a name defined in another file, each without and with cross-file context",
    )
    p.add_argument("--cross-file-tokens", type=int, default=512, help="the cross-file budget (crossFile.maxTokens)")
    add_run_arguments(p, limit=False)
    add_sampling_arguments(p, sweep=False, seed=False)
    add_backend_arguments(p)
    p.set_defaults(func=cmd_repo)

    p = sub.add_parser("jsonl", help="exact match, show rate and precision on FIM tasks from a JSON Lines file")
    p.add_argument("--data", type=Path, required=True, help="id, kind, prefix, middle, suffix per line (fim-dev)")
    p.add_argument("--half", choices=HALVES, default="all", help="the calibration or held-out half (see docs)")
    add_run_arguments(p)
    add_sampling_arguments(p, sweep=False)
    add_backend_arguments(p)
    p.set_defaults(func=cmd_jsonl)

    p = sub.add_parser("calibrate", help="fit the show-or-stay-silent confidence on runs; reliability table")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="runs on the calibration half")
    p.add_argument("--held-out", type=Path, nargs="*", default=[], help="runs to evaluate the fit on")
    p.add_argument("--out", type=Path, help="where calibration.md/.json/.png go (default runs/eval/calibrate-<time>)")
    p.add_argument("--save", type=Path, metavar="MODEL_DIR", help="write the fit into this checkpoint directory")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("report", help="one Markdown table and a quality-vs-latency plot from run directories")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="where report.md and report.png go (default runs/eval/report-<time>)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("speed", help="steps/threshold sweep of the diffusion model beside the AR twin")
    add_data_arguments(p)
    add_sampling_arguments(p, sweep=True)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="step budgets to sweep")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.9, 1.0], help="thresholds to sweep")
    p.add_argument(
        "--diffusion-candidates",
        type=int,
        nargs="+",
        default=None,
        help="candidates per diffusion request to sweep (default: the request's, or --candidates); the AR twin keeps "
        "its own",
    )
    p.add_argument("--model", help="diffusion checkpoint (default: the embedded model)")
    p.add_argument("--ar-model", help="AR checkpoint (default: the embedded AR twin)")
    p.add_argument("--no-ar", action="store_true", help="skip the AR twin")
    p.set_defaults(func=cmd_speed)
    return parser


# ---------------------------------------------------------------- shared helpers


def check_limit(args: argparse.Namespace) -> int | None:
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise UsageError("--limit must be >= 1")
    return limit


def data_dir(args: argparse.Namespace) -> Path:
    check_limit(args)
    path = args.data or default_data_dir()
    if path is None:
        raise UsageError("no HumanEval-Infilling data found next to the repository; pass --data DIR")
    if not set_path(Path(path), args.set).exists():
        raise UsageError(f"{SETS[args.set]} is not in {path}")
    return Path(path)


def out_dir(args: argparse.Namespace, detail: str) -> Path:
    if args.out is not None:
        return args.out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "eval" / f"{args.command}-{detail}-{stamp}"


def languages(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def backend_spec(args: argparse.Namespace) -> BackendSpec:
    """One source of completions from --backend / --remote / --oracle / --baseline (at most one of them)."""
    chosen = [
        name
        for name, given in (
            ("--backend", args.backend),
            ("--remote", args.remote),
            ("--oracle", args.oracle),
            ("--baseline", args.baseline),
        )
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} each choose the backend; pass one")
    kind = args.backend or ("remote" if args.remote else "oracle" if args.oracle else args.baseline or "engine")
    extra: dict[str, Any] = {}
    if args.extra_body:
        try:
            extra = json.loads(args.extra_body)
        except ValueError as e:
            raise UsageError(f"--extra-body is not JSON: {e}") from None
        if not isinstance(extra, dict):
            raise UsageError("--extra-body must be a JSON object")
    if args.autoregressive and kind != "engine":
        raise UsageError("--autoregressive goes with the engine backend")
    return BackendSpec(
        kind=kind,
        model=args.model,
        url=args.remote or args.url,
        token=args.token,
        extra=extra,
        send_language=args.send_language,
        autoregressive=args.autoregressive,
        device=args.device,
        threads=args.threads,
        preset=args.preset,
        dtype=args.dtype,
    )


def sample_options(args: argparse.Namespace, **overrides: Any) -> SampleOptions:
    values = {"temperature": args.temperature, "seed": args.seed, "initial_canvas": args.initial_canvas}
    values |= {"branch_after": args.branch_after, "trunk": args.trunk, "canvas_cache": args.canvas_cache}
    if hasattr(args, "threshold"):
        values |= {"steps": args.steps, "threshold": args.threshold}
    return SampleOptions(**(values | overrides))


def gen_config(args: argparse.Namespace, default_mode: Mode | None = None, **option_overrides: Any) -> GenConfig:
    for flag in ("repairs", "first_steps"):
        if (value := getattr(args, flag)) is not None and value < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 0, got {value}")
    return GenConfig(
        options=sample_options(args, **option_overrides),
        mode=MODES[args.mode] if args.mode else default_mode,
        canvas=args.canvas,
        candidates=args.candidates,
        n=getattr(args, "n", 1) if args.command == "humaneval-infilling" else 1,
        min_confidence=args.min_confidence,
        repairs=FimSettings.repairs if args.repairs is None else args.repairs,
        first_steps=args.first_steps,
    )


def limits(args: argparse.Namespace, base: Limits = Limits()) -> Limits:  # noqa: B008 - frozen default
    from dataclasses import replace

    return replace(base, timeout_s=args.timeout, memory_mb=args.memory_mb)


def load_local(model: str | None, args: argparse.Namespace, *, autoregressive: bool = False):
    spec = BackendSpec(
        model=model, autoregressive=autoregressive, device=args.device, threads=args.threads, dtype=args.dtype
    )
    return open_backend(spec)


def run_command(
    args: argparse.Namespace, suite, spec: BackendSpec, config: GenConfig, identity: dict, out: Path
) -> int:
    """Open the backend, run (or resume) the suite into `out`, print the summary."""
    if config.n > 1 and spec.kind in SINGLE_ANSWER:
        raise UsageError(f"--n > 1 needs several samples per request; the {spec.kind} backend answers one")
    engine = open_backend(spec, suite.tasks)
    options = {**vars(config.options), "mode": args.mode or str(config.mode or "auto"), "canvas": args.canvas}
    options |= {"candidates": args.candidates, "n": config.n, "min_confidence": config.min_confidence}
    description = engine.describe()
    first_steps = settings_for(description, first_steps=config.first_steps).first_steps  # as the run asks
    options |= {"repairs": config.repairs, "first_steps": first_steps}
    meta = {
        "engine": description,
        "limit": getattr(args, "limit", None),
        "sandbox": {**capabilities(), "timeout_s": args.timeout, "memory_mb": args.memory_mb},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    identity = identity | {"backend": spec.identity(), "options": options}
    try:
        summary = run_suite(suite, engine, config, out, identity, meta, progress=not args.no_progress)
    finally:
        engine.close()
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'results.jsonl'} and {out / 'summary.json'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- commands


def cmd_humaneval(args: argparse.Namespace) -> int:
    if not 1 <= args.n <= 63 or (args.n > 1 and args.temperature is not None and args.temperature <= 0):
        raise UsageError("--n must be in [1, 63], and --n > 1 needs --temperature > 0 (else every sample is the same)")
    data = data_dir(args)
    spec = backend_spec(args)
    problems = load_problems(data, args.set, args.limit, args.half)
    suite = HumanEvalSuite(problems, args.set, ExecCache(limits(args), args.workers))
    config = gen_config(args, SET_MODES.get(args.set))
    identity = {"set": args.set, "data": str(data)} | ({"half": args.half} if args.half != "all" else {})
    detail = args.set if args.half == "all" else f"{args.set}-{args.half}"
    return run_command(args, suite, spec, config, identity, out_dir(args, detail))


def cmd_safim(args: argparse.Namespace) -> int:
    from eval.suites.safim import LANGUAGES, LIMITS, SafimSuite, load_problems, split_path

    langs = languages(args.lang)
    if langs and (unknown := set(langs) - set(LANGUAGES)):
        raise UsageError(f"unknown SAFIM language(s) {', '.join(sorted(unknown))}; among {', '.join(LANGUAGES)}")
    path = split_path(args.data, args.split)
    problems = load_problems(path, langs, check_limit(args))
    suite = SafimSuite(problems, args.split, limits=limits(args, LIMITS), workers=args.workers)
    identity = {"data": str(path), "languages": langs}
    return run_command(args, suite, backend_spec(args), gen_config(args), identity, out_dir(args, args.split))


def cmd_santacoder(args: argparse.Namespace) -> int:
    from eval.suites.santacoder import SantaCoderSuite, load_problems

    suite = SantaCoderSuite(load_problems(args.data, languages(args.lang), check_limit(args)))
    identity = {"data": str(args.data), "languages": languages(args.lang)}
    return run_command(args, suite, backend_spec(args), gen_config(args), identity, out_dir(args, "tasks"))


def cmd_repo(args: argparse.Namespace) -> int:
    from eval.suites.repo import RepoSuite, cut_cross_file_tasks, cut_tasks

    if args.n < 1 or args.cross_file_tokens < 1:
        raise UsageError("--n and --cross-file-tokens must be >= 1")
    langs = languages(args.languages)
    if args.cross_file:
        if langs and langs != ["python"]:
            raise UsageError("--cross-file resolves Python imports: leave --languages out or pass python")
        tasks = cut_cross_file_tasks(args.path, args.n, args.seed, args.max_file_kb, args.cross_file_tokens)
        if not tasks:
            raise UsageError(f"no Python file under {args.path} uses a name defined in another of its files")
    else:
        tasks = cut_tasks(args.path, args.n, args.seed, langs, args.max_file_kb)
    if not tasks:
        raise UsageError(f"no source files to cut tasks from under {args.path}")
    suite = RepoSuite(args.path, tasks)
    identity = {"path": str(Path(args.path).resolve()), "languages": langs, "n": args.n, "seed": args.seed}
    if args.cross_file:
        identity |= {"cross_file_tokens": args.cross_file_tokens}
    return run_command(args, suite, backend_spec(args), gen_config(args), identity, out_dir(args, args.path.name))


def cmd_jsonl(args: argparse.Namespace) -> int:
    from eval.suites.jsonl import JsonlSuite, load_tasks

    tasks = load_tasks(args.data, args.half, check_limit(args))
    if not tasks:
        raise UsageError(f"no tasks in {args.data}")
    suite = JsonlSuite(args.data, tasks, args.half)
    identity = {"data": str(args.data), "half": args.half}
    detail = f"{args.data.name.split('.')[0]}-{args.half}"
    return run_command(args, suite, backend_spec(args), gen_config(args), identity, out_dir(args, detail))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from eval.calibrate import write_calibration

    out = args.out or Path("runs") / "eval" / f"calibrate-{time.strftime('%Y%m%d-%H%M%S')}"
    text, paths = write_calibration(args.runs, args.held_out, out, args.save)
    print(text, end="")
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from eval.report import write_report

    out = args.out or Path("runs") / "eval" / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    text, paths = write_report(args.runs, out)
    print(text, end="")
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from eval.speed import SweepConfig, run_sweep, write_report

    candidates = tuple(args.diffusion_candidates or [None])
    if any(n is not None and n < 1 for n in candidates):
        raise UsageError("--diffusion-candidates must be >= 1")
    data = data_dir(args)
    problems = load_problems(data, args.set, args.limit)
    diffusion = load_local(args.model, args)
    ar = None if args.no_ar else load_local(args.ar_model, args, autoregressive=True)
    base = gen_config(args, SET_MODES.get(args.set))
    sweep = SweepConfig(base=base, steps=tuple(args.steps), thresholds=tuple(args.thresholds), candidates=candidates)
    cache = ExecCache(limits(args), args.workers)
    points = run_sweep(diffusion, ar, problems, sweep, cache, progress=not args.no_progress)
    out = out_dir(args, args.set)
    meta = {"set": args.set, "data": str(data), "limit": args.limit, "sandbox": capabilities()}
    described = diffusion.describe()
    meta |= {"repairs": base.repairs, "first_steps": settings_for(described, 0, base.first_steps).first_steps}
    meta |= {"diffusion": described, "autoregressive": ar.describe() if ar else None}
    paths = write_report(out, points, meta)
    print(json.dumps([p.as_dict() for p in points], indent=2))
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from engine.errors import DiffillError

    try:
        return int(args.func(args) or 0)
    except (UsageError, DiffillError, OSError, ValueError) as e:
        print(f"diffill eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
