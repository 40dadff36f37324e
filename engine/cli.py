"""The ``diffill`` command line.

    diffill complete FILE:LINE:COL [--model DIR]   print completions at a position (1-based line and column)
    diffill corpus --src DIR... --out DIR          build a training corpus
    diffill train --corpus DIR --out DIR ...       train the diffusion model (or --autoregressive twin)
    diffill lsp [--tcp] ...                        the language server (lsp_server)
    diffill serve --model DIR ...                  the network engine for a shared GPU box
    diffill pull ORG/NAME [--revision R] [--dir D]  download a released diffusion coder, print its --model path
    diffill eval ...                               benchmarks (eval)

Subcommands owned by other packages are dispatched by module name, so importing the engine never imports the
language server or the benchmarks. Logs and progress go to stderr; stdout carries only results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from engine.contract import DTYPES
from engine.errors import DiffillError

# name -> (module, help): subcommands implemented elsewhere, each module exposing main(argv) -> int.
FORWARDED = {
    "lsp": ("lsp_server.cli", "run the language server (stdio by default)"),
    "serve": ("engine.serve", "serve the engine over the network (msgpack + JSON endpoints)"),
    "eval": ("eval.cli", "run benchmarks (HumanEval-Infilling, speed)"),
    "distill": ("eval.distill", "write a model's own shown lines of training examples (train --distilled)"),
}


def parse_location(spec: str) -> tuple[Path, int, int]:
    """FILE:LINE:COL with 1-based line and column (as compilers and editors print them)."""
    try:
        path, line, col = spec.rsplit(":", 2)
        line_no, col_no = int(line), int(col)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FILE:LINE:COL, got {spec!r}") from None
    if line_no < 1 or col_no < 1:
        raise argparse.ArgumentTypeError(f"line and column are 1-based, got {line_no}:{col_no}")
    return Path(path), line_no, col_no


def _check_device(device: str) -> None:
    """A DiffillError for a device torch does not know or this machine lacks (torch raises RuntimeError or, for
    CUDA in a CPU-only build, AssertionError, deep in the load)."""
    import torch

    from engine.checkpoint import resolve_device

    try:
        torch.empty(0, device=resolve_device(device))
    except (RuntimeError, AssertionError) as e:
        raise DiffillError(f"cannot use device {device!r}: {e}") from e


def cmd_complete(args: argparse.Namespace) -> int:
    from engine.api import editor_threads, load_engine
    from engine.contract import SampleOptions
    from fim.ask import ask_engine
    from fim.confidence import Calibration
    from fim.languages import language_from_path, normalize_language
    from fim.request import FimSettings, build_request
    from fim.text import offset_at
    from fim.validate import Candidate, postprocess

    path, line, col = args.location
    # Misuse is a one-line error (exit 2), checked before the model loads: counts, sampling options, the device.
    for flag in ("steps", "candidates", "canvas", "repeat", "threads"):
        if (value := getattr(args, flag)) is not None and value < 1:
            raise DiffillError(f"--{flag} must be at least 1, got {value}")
    for flag in ("repairs", "first_steps"):
        if (value := getattr(args, flag)) is not None and value < 0:
            raise DiffillError(f"--{flag.replace('_', '-')} must be at least 0, got {value}")
    try:
        options = SampleOptions(
            steps=args.steps, threshold=args.threshold, temperature=args.temperature, seed=args.seed
        )
    except ValueError as e:
        raise DiffillError(str(e)) from e
    _check_device(args.device)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DiffillError(f"cannot read {path}: {e}") from e
    offset = offset_at(text, line - 1, col - 1)
    if offset is None:
        lines = len(text.splitlines()) or 1
        raise DiffillError(f"{path}:{line}:{col} is outside the file, which has {lines} lines")
    language = normalize_language(args.language) if args.language else (language_from_path(path) or "other")
    t0 = time.perf_counter()
    threads = editor_threads(args.threads)
    engine = load_engine(
        args.model,
        device=args.device,
        autoregressive=args.autoregressive,
        threads=threads,
        preset=args.preset,
        dtype=args.dtype,
    )
    description = engine.describe()
    shown = {k: v for k, v in description.items() if k != "calibration"} | {"calibrated": "calibration" in description}
    print(f"loaded {shown} in {time.perf_counter() - t0:.2f}s ({threads} CPU threads)", file=sys.stderr)
    quick = {} if args.first_steps is None else {"first_steps": args.first_steps}
    settings = FimSettings(**quick).fitted(description)  # no quick first ask for a model that is not a diffusion one
    repairs = settings.repairs if args.repairs is None else args.repairs
    calibration = Calibration.of(description)
    request = build_request(text, offset, language, settings, engine.count_tokens)
    timings = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        answer = ask_engine(
            engine,
            request,
            options,
            num_candidates=args.candidates,
            canvas_length=args.canvas,
            repairs=repairs,
            first_steps=settings.first_steps,
        )
        raw = answer.completions
        # Every text worth showing at all, most confident first; the editor's threshold is reported, not applied.
        ranked = postprocess(request, [Candidate(c.text, c.score) for c in raw], calibration, min_confidence=0.0)
        timings.append((time.perf_counter() - t0) * 1e3)
    if args.json:
        out = {
            "mode": str(request.mode),
            "completions": [{"text": c.text, "score": c.score, "confidence": c.confidence} for c in ranked],
            "min_confidence": calibration.min_confidence,
            "raw": [{"text": c.text, "score": c.score} for c in raw],
            "repairs": answer.repairs,
            "escalated": answer.escalated,
            "line": answer.line,
            "latency_ms": timings,
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"# {request.mode} at {path}:{line}:{col}, {len(ranked)} of {len(raw)} candidates kept", file=sys.stderr)
        if answer.line:
            print("# the block had nothing to show: its first line was asked as a single-line request", file=sys.stderr)
        if answer.escalated:
            quick = f"# nothing to show after {settings.first_steps} steps and repairs: asked again at {options.steps}"
            print(quick, file=sys.stderr)
        if answer.repairs:
            where = f", the candidates continue {answer.repaired_from!r}" if answer.repaired_from else ""
            print(f"# {answer.repairs} follow-up requests to repair a line{where}", file=sys.stderr)
        threshold = calibration.min_confidence
        for i, c in enumerate(ranked):
            quiet = "; an editor stays silent: below the model's minConfidence" if c.confidence < threshold else ""
            print(f"--- completion {i + 1} (score {c.score:.3f}, confidence {c.confidence:.3f}{quiet})")
            print(c.text)
        if not ranked:
            print("(no completion worth showing: none valid, or all degenerate)", file=sys.stderr)
        elif threshold > 0:
            print(
                f"# an editor shows completions with confidence >= {threshold:.3g} (the model's default)",
                file=sys.stderr,
            )
        warm = timings[1:] or timings
        print(f"latency: first {timings[0]:.1f} ms, warm median {sorted(warm)[len(warm) // 2]:.1f} ms", file=sys.stderr)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from engine.pull import pull

    path = pull(args.repo, revision=args.revision, directory=args.dir)
    if not args.no_check:
        from engine.api import load_runner

        t0 = time.perf_counter()
        description = load_runner(path, device=args.device).describe()
        print(f"loaded {description} in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    print(path)  # stdout: the --model path, nothing else
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from engine.corpus import build_corpus, default_source_dirs

    sources = [Path(s) for s in args.src] if args.src else default_source_dirs()
    bench = Path(args.benchmarks) if args.benchmarks else None
    stats = build_corpus(sources, Path(args.out), bench, max_file_bytes=args.max_file_bytes)
    print(json.dumps(stats.__dict__ if hasattr(stats, "__dict__") else stats, indent=2, default=str))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from engine.train import config_from_args, train

    metrics = train(config_from_args(args))
    print(json.dumps(metrics, indent=2))
    return 0


def add_preset_argument(p: argparse.ArgumentParser) -> None:
    """--preset: how a released coder samples (engine.adapters.presets); Diffill's own model has one way."""
    from engine.contract import DEFAULT_PRESET, PRESETS

    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=DEFAULT_PRESET,
        help="released coders: fast (the --steps/--threshold/--temperature given) or reference (the sampling its "
        "authors evaluated with)",
    )


def add_dtype_argument(p: argparse.ArgumentParser) -> None:
    """--dtype: what a local model runs in (engine.contract.DTYPES; "auto" = engine.checkpoint.auto_dtype)."""
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="what a local model runs in (default auto: bfloat16 on GPUs and on CPUs with bf16 units, else float32)",
    )


def build_parser() -> argparse.ArgumentParser:
    from engine.train import add_arguments

    parser = argparse.ArgumentParser(prog="diffill", description="Diffusion fill-in-the-middle code completion")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("complete", help="print completions at FILE:LINE:COL (1-based)")
    p.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    p.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    p.add_argument("--autoregressive", action="store_true", help="use the embedded AR twin instead")
    add_preset_argument(p)
    p.add_argument("--language", help="language id (default: from the file extension)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    add_dtype_argument(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: half the cores, 1..4)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=None, help="of the alternatives (default: the model's own)")
    p.add_argument("--candidates", type=int, default=None, help="default: per mode (fim settings)")
    p.add_argument("--canvas", type=int, default=None, help="canvas tokens (default: per mode)")
    p.add_argument(
        "--repairs",
        type=int,
        default=None,
        help="follow-up requests when no candidate parses, at each step count asked (default: FimSettings.repairs)",
    )
    p.add_argument(
        "--first-steps",
        type=int,
        default=None,
        help="steps of a single-line request's quick first ask and its repairs, asked again at --steps when it "
        "still has nothing to show (diffusion models; 0: one ask; default: FimSettings.first_steps)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="run N times and report warm latency")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("pull", help="download a released diffusion coder from the Hugging Face Hub")
    p.add_argument("repo", metavar="ORG/NAME", help="model id, e.g. fredzzp/open-dcoder-0.5B")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--dir", help="where to put it (default: $DIFFILL_MODELS/ORG/NAME, else ~/.cache/diffill/models)")
    p.add_argument("--device", default="auto", help="device for the load check: cpu, cuda or auto")
    p.add_argument("--no-check", action="store_true", help="skip loading the model after the download")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("corpus", help="build a training corpus from source directories")
    p.add_argument("--src", nargs="*", help="directories to walk (default: this Python's stdlib + site-packages)")
    p.add_argument("--out", required=True)
    p.add_argument("--benchmarks", help="HumanEval-Infilling directory to decontaminate against")
    p.add_argument("--max-file-bytes", type=int, default=200_000)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("train", help="train a model (see engine/train.py)")
    add_arguments(p)
    p.set_defaults(func=cmd_train)

    for name, (_, help_text) in FORWARDED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        module = importlib.import_module(FORWARDED[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except DiffillError as e:
        print(f"diffill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
