"""Adapter benchmark: speed of the released coders' shapes with and without the approximate cache, and what the
approximation costs in accuracy.

    python -m eval.bench_adapters [--sizes tiny open-dcoder-0.5b coda-1.7b dream-coder-7b] [--layers N]
                                  [--context 512] [--canvas 32] [--steps 8] [--refresh 4] [--candidates 1]
                                  [--top-p P] [--repeat 3] [--device cuda] [--dtype bfloat16] [--json OUT]

Random weights (speed does not depend on them; the accuracy numbers are those of a random network, a sanity
bound rather than a quality claim) in the shapes of the releases (``config.json`` of each): ``open-dcoder-0.5b``
(Qwen2.5-Coder-0.5B: hidden 896, 24 layers, 14 heads over 2 KV heads, intermediate 4864, vocab 151936, q/k/v
biases, tied embeddings), ``coda-1.7b`` (Qwen3-1.7B: hidden 2048, 28 layers, 16 heads over 8 KV heads of 128,
intermediate 6144, vocab 151936, q/k norms, own head) and ``dream-coder-7b`` (Qwen2.5-7B: hidden 3584, 28 layers,
28 heads over 4 KV heads, intermediate 18944, vocab 152064, biases, own head). ``--layers`` runs fewer layers on
slow machines (the table says how many ran). Dream's prompt layout, logit shift and sampler (entropy order),
threshold 1 (the reference commit counts), greedy. ``scripts/bench_adapters_gpu.sh`` is the GPU run.

Columns: one exact full forward and one window-only forward; the first completion (cold: allocator and kernels
warm up on it) and the median later one, exact and approximate; one sampler step (``predict``) with Dream's
top-p 0.95 over the canvas logits -- random weights give flat distributions, the worst case for top-p (a full
vocabulary sort); then a whole fill of the canvas, exact (full forward every step) and approximate (refreshed
every --refresh steps), as ms per step and canvas tokens per second (top-p off in these fills unless --top-p,
so they time the network and the cache). Accuracy: along the exact trajectory, the largest |logit| difference
and the argmax agreement of the approximate logits on steps between refreshes, and the fraction of final
tokens the approximate fill shares with the exact one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import torch

from engine.adapters.families import ArchSpec
from engine.adapters.model import DiffusionLM, ServingLimits, randomize
from engine.adapters.presets import DREAM_SAMPLING
from engine.adapters.runner import fill_layout
from engine.adapters.sampler import Layout, cache_drift, full_pass, predict, window_pass
from engine.contract import SampleOptions

T = TypeVar("T")
QWEN2 = dict(norm_eps=1e-6, rope_theta=1000000.0, rope_linear_factor=1.0, max_positions=32768, qkv_bias=True)
QWEN3 = QWEN2 | dict(qkv_bias=False, qk_norm=True, max_positions=40960)
SIZES: dict[str, dict] = {
    "tiny": QWEN2
    | dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, intermediate_size=128)
    | dict(vocab_size=1024, tie_embeddings=True),
    "open-dcoder-0.5b": QWEN2
    | dict(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64, intermediate_size=4864)
    | dict(vocab_size=151936, tie_embeddings=True),
    "coda-1.7b": QWEN3
    | dict(hidden_size=2048, num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, intermediate_size=6144)
    | dict(vocab_size=151936, tie_embeddings=False),
    "dream-coder-7b": QWEN2
    | dict(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128, intermediate_size=18944)
    | dict(vocab_size=152064, tie_embeddings=False, max_positions=131072),
}
SIZES["qwen2.5-0.5b"] = SIZES["open-dcoder-0.5b"]  # the name earlier tables used


def spec_for(size: str, layers: int | None) -> ArchSpec:
    dims = dict(SIZES[size])
    if layers is not None:
        dims["num_layers"] = min(layers, dims["num_layers"])
    return ArchSpec(**dims)


def timed_ms(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def median_ms(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time over `repeat` runs after a warm-up, and the last run's result."""
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        ms, out = timed_ms(fn)
        times.append(ms)
    return statistics.median(times), out


def random_layout(vocab: int, context: int, canvas: int, mask_id: int) -> Layout:
    """bos + 3/4 of the context as prefix, the canvas, 1/4 as suffix, eos (Dream's infilling layout)."""
    gen = torch.Generator().manual_seed(0)
    body = torch.randint(0, mask_id, (context,), generator=gen).tolist()
    cut = 3 * context // 4
    tokens = [mask_id + 1, *body[:cut], *[mask_id] * canvas, *body[cut:], mask_id + 2]
    return Layout(tokens=tokens, canvas_start=1 + cut, canvas_len=canvas, shift=True)


def bench_size(size: str, args: argparse.Namespace) -> dict[str, object]:
    spec = spec_for(size, args.layers)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype) if args.dtype else torch.bfloat16 if args.device.startswith("cuda") else None
    with torch.device(args.device):  # built where it runs: a 7B model in float32 on the host would need 30 GB
        model = randomize(DiffusionLM(spec, ServingLimits(args.context, args.canvas)), seed=0)
    model = model.to(dtype or torch.float32).eval()
    mask_id = spec.vocab_size - 8  # any id; banned from predictions like a real mask token
    banned = torch.tensor([mask_id, mask_id + 1], device=args.device)
    layout = random_layout(spec.vocab_size, args.context, args.canvas, mask_id)
    seq = torch.tensor([layout.tokens], device=args.device).repeat(args.candidates, 1)
    options = SampleOptions(steps=args.steps, threshold=1.0, temperature=0.0, early_exit=False)
    exact_sampling = replace(DREAM_SAMPLING, top_p=args.top_p)
    approx_sampling = replace(exact_sampling, refresh_every=args.refresh)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def fill(sampling):  # one completion, synchronised so the clock stops when the GPU does
        out = fill_layout(model, layout, args.candidates, options, sampling, banned)[0]
        sync()
        return out

    with torch.inference_mode():
        first = {
            name: timed_ms(lambda s=s: fill(s))[0]
            for name, s in (("exact", exact_sampling), ("approx", approx_sampling))
        }
        logits, ctx = full_pass(model, seq, layout, keep=True)
        full_ms, _ = median_ms(lambda: full_pass(model, seq, layout, keep=False), args.repeat)
        window_ms, _ = median_ms(lambda: window_pass(model, seq, layout, ctx), args.repeat)
        temps, gen = torch.zeros(args.candidates, 1, 1, device=args.device), torch.Generator(args.device)
        top_p_ms, _ = median_ms(lambda: predict(logits, temps, DREAM_SAMPLING, banned, gen, False), args.repeat)
        results = {}
        for name, sampling in (("exact", exact_sampling), ("approx", approx_sampling)):
            results[name] = median_ms(lambda s=sampling: fill(s), args.repeat)
        drift = [d for d in cache_drift(model, layout, options, approx_sampling, banned=banned) if not d.refreshed]
    tokens = args.canvas * args.candidates
    return {
        "size": size,
        "layers": spec.num_layers,
        "params_m": model.num_parameters() / 1e6,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "context": len(layout.tokens),
        "first_exact_ms": first["exact"],
        "first_approx_ms": first["approx"],
        "exact_fill_ms": results["exact"][0],
        "approx_fill_ms": results["approx"][0],
        "full_ms": full_ms,
        "window_ms": window_ms,
        "predict_top_p_ms": top_p_ms,
        "exact_step_ms": results["exact"][0] / args.steps,
        "approx_step_ms": results["approx"][0] / args.steps,
        "exact_tok_s": tokens / (results["exact"][0] / 1e3),
        "approx_tok_s": tokens / (results["approx"][0] / 1e3),
        "max_logit_diff": max((d.max_abs_diff for d in drift), default=0.0),
        "logit_std": statistics.mean(d.logit_std for d in drift) if drift else 0.0,
        "argmax_agree": statistics.mean(d.argmax_agreement for d in drift) if drift else 1.0,
        "final_agree": (results["exact"][1] == results["approx"][1]).float().mean().item(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "open-dcoder-0.5b"], choices=list(SIZES))
    parser.add_argument("--layers", type=int, default=None, help="run at most this many layers (CPU budgets)")
    parser.add_argument("--context", type=int, default=512, help="prompt tokens around the canvas")
    parser.add_argument("--canvas", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--refresh", type=int, default=4, help="approximate cache: full forward every N steps")
    parser.add_argument("--candidates", type=int, default=1)
    parser.add_argument("--top-p", type=float, default=None, help="top-p inside the timed fills (default: none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: bf16 on cuda, else fp32")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"context {args.context}, canvas {args.canvas}, {args.candidates} candidate(s), {args.steps} steps, "
        f"approximate cache refreshed every {args.refresh} steps, device {args.device}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(
        "| size | layers | params (M) | full fwd ms | window fwd ms | predict+top-p ms | exact ms/step "
        "| approx ms/step | exact tok/s | approx tok/s | first completion ms (exact / approx) "
        "| completion ms (exact / approx) | max |dlogit| (logit std) | argmax agree | final tokens agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        r = bench_size(size, args)
        rows.append(r)
        print(
            f"| {r['size']} | {r['layers']} | {r['params_m']:.1f} | {r['full_ms']:.1f} | {r['window_ms']:.1f} "
            f"| {r['predict_top_p_ms']:.1f} "
            f"| {r['exact_step_ms']:.1f} | {r['approx_step_ms']:.1f} | {r['exact_tok_s']:.1f} "
            f"| {r['approx_tok_s']:.1f} | {r['first_exact_ms']:.0f} / {r['first_approx_ms']:.0f} "
            f"| {r['exact_fill_ms']:.0f} / {r['approx_fill_ms']:.0f} "
            f"| {r['max_logit_diff']:.3f} ({r['logit_std']:.3f}) | {r['argmax_agree']:.3f} | {r['final_agree']:.3f} |",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
