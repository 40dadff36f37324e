"""Engine micro-benchmark: ms per denoising step with and without the exact context cache.

    python -m eval.bench_engine [--preset small-20m] [--context 2000] [--canvas 32] [--candidates 1 4]

Random weights (speed does not depend on them). "Without cache" is what a model with full bidirectional attention
must do every step: a forward over context + canvas. "With cache" is ``DiffillModel.denoise`` against the cached
context. Also reports the one-off prefill of the context and an incremental extension by a few typed tokens.
Prints a Markdown table; timings are medians over --repeat runs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from engine.cache import ContextCache
from engine.config import preset
from engine.model import DiffillModel


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small-20m")
    parser.add_argument("--context", type=int, default=2000)
    parser.add_argument("--canvas", type=int, default=32)
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--typed", type=int, default=4, help="tokens appended for the incremental-extension timing")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    cfg = preset(args.preset)
    model = DiffillModel(cfg).to(args.device).eval()
    V = cfg.vocab_size
    context = torch.randint(0, V, (args.context,)).tolist()
    print(
        f"# {args.preset}: {model.num_parameters() / 1e6:.1f}M parameters, device {args.device}, "
        f"{torch.get_num_threads()} threads, context {args.context}, canvas {args.canvas}\n"
    )
    rows = []
    with torch.inference_mode():
        ctx = ContextCache(model.new_cache())
        prefill = median_ms(lambda: (ctx.__setattr__("tokens", []), ctx.update(model, context)), args.repeat)
        ctx.update(model, context)

        def typed() -> None:
            ctx.update(model, context)  # restore (recomputes only the last token)
            ctx.update(model, context + list(range(100, 100 + args.typed)))

        extend = median_ms(typed, args.repeat)
        for n in args.candidates:
            canvas = torch.randint(0, V, (n, args.canvas))
            ctx.update(model, context)
            cached = median_ms(lambda canvas=canvas: model.denoise(canvas, ctx.cache), args.repeat)
            full_tokens = torch.cat([torch.tensor(context).expand(n, -1), canvas], dim=1)
            pad = torch.zeros(n, dtype=torch.long)
            full = median_ms(lambda t=full_tokens, p=pad: model(t, p, len(context)), max(3, args.repeat // 3))
            rows.append((n, cached, full))
    print("| candidates | step with cache (ms) | step without cache (ms) | speed-up |")
    print("|---:|---:|---:|---:|")
    for n, cached, full in rows:
        print(f"| {n} | {cached:.1f} | {full:.1f} | {full / cached:.1f}x |")
    print(f"\ncontext prefill ({args.context} tokens, once per request or less): {prefill:.1f} ms")
    print(f"incremental extension after typing {args.typed} tokens (incl. 1-token restore): {extend:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
