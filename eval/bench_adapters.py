"""Adapter benchmark: speed of the Qwen2-layout diffusion adapter with and without the approximate cache, and
what the approximation costs in accuracy.

    python -m eval.bench_adapters [--sizes tiny qwen2.5-0.5b] [--layers N] [--context 512] [--canvas 32]
                                  [--steps 8] [--refresh 4] [--candidates 1] [--top-p P] [--repeat 3]

Random weights (speed does not depend on them; the accuracy numbers are those of a random network, a sanity
bound rather than a quality claim). ``qwen2.5-0.5b`` has Qwen2.5(-Coder)-0.5B's shapes -- the Open-dCoder
model: hidden 896, 24 layers, 14 heads over 2 KV heads, intermediate 4864, vocab 151936, tied embeddings;
``--layers`` runs fewer layers on slow machines (the table says how many ran). Dream's prompt layout, logit
shift and sampler (entropy order), threshold 1 (the reference commit counts), greedy.

Columns: one exact full forward and one window-only forward; one sampler step (``predict``) with Dream's
top-p 0.95 over the canvas logits -- random weights give flat distributions, the worst case for top-p (a full
vocabulary sort); then a whole fill of the canvas, exact (full forward every step) and approximate (refreshed
every --refresh steps), as ms per step and canvas tokens per second (top-p off in these fills unless --top-p,
so they time the network and the cache). Accuracy: along the exact trajectory, the largest |logit| difference
and the argmax agreement of the approximate logits on steps between refreshes, and the fraction of final
tokens the approximate fill shares with the exact one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import torch

from engine.adapters.families import ArchSpec
from engine.adapters.model import DiffusionLM, ServingLimits, randomize
from engine.adapters.runner import fill_layout
from engine.adapters.sampler import DREAM_SAMPLING, Layout, cache_drift, full_pass, predict, window_pass
from engine.contract import SampleOptions

T = TypeVar("T")
SIZES = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128, vocab_size=1024),
    "qwen2.5-0.5b": dict(
        hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864, vocab_size=151936
    ),
}


def spec_for(size: str, layers: int | None) -> ArchSpec:
    dims = dict(SIZES[size])
    if layers is not None:
        dims["num_layers"] = min(layers, dims["num_layers"])
    dims["head_dim"] = dims["hidden_size"] // dims["num_heads"]
    return ArchSpec(
        **dims,
        norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_linear_factor=1.0,
        max_positions=32768,
        qkv_bias=True,
        tie_embeddings=True,
    )


def median_ms(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time over `repeat` runs after a warm-up, and the last run's result."""
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
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
    model = randomize(DiffusionLM(spec, ServingLimits(args.context, args.canvas)), seed=0)
    model = model.to(device=args.device, dtype=torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    model.eval()
    mask_id = spec.vocab_size - 8  # any id; banned from predictions like a real mask token
    banned = torch.tensor([mask_id, mask_id + 1], device=args.device)
    layout = random_layout(spec.vocab_size, args.context, args.canvas, mask_id)
    seq = torch.tensor([layout.tokens], device=args.device).repeat(args.candidates, 1)
    options = SampleOptions(steps=args.steps, threshold=1.0, temperature=0.0, early_exit=False)
    exact_sampling = replace(DREAM_SAMPLING, top_p=args.top_p)
    approx_sampling = replace(exact_sampling, refresh_every=args.refresh)
    with torch.inference_mode():
        logits, ctx = full_pass(model, seq, layout, keep=True)
        full_ms, _ = median_ms(lambda: full_pass(model, seq, layout, keep=False), args.repeat)
        window_ms, _ = median_ms(lambda: window_pass(model, seq, layout, ctx), args.repeat)
        temps, gen = torch.zeros(args.candidates, 1, 1, device=args.device), torch.Generator(args.device)
        top_p_ms, _ = median_ms(lambda: predict(logits, temps, DREAM_SAMPLING, banned, gen, False), args.repeat)
        results = {}
        for name, sampling in (("exact", exact_sampling), ("approx", approx_sampling)):
            results[name] = median_ms(
                lambda s=sampling: fill_layout(model, layout, args.candidates, options, s, banned)[0], args.repeat
            )
        drift = [d for d in cache_drift(model, layout, options, approx_sampling, banned=banned) if not d.refreshed]
    tokens = args.canvas * args.candidates
    return {
        "size": size,
        "layers": spec.num_layers,
        "params_m": model.num_parameters() / 1e6,
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
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--layers", type=int, default=None, help="run at most this many layers (CPU budgets)")
    parser.add_argument("--context", type=int, default=512, help="prompt tokens around the canvas")
    parser.add_argument("--canvas", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--refresh", type=int, default=4, help="approximate cache: full forward every N steps")
    parser.add_argument("--candidates", type=int, default=1)
    parser.add_argument("--top-p", type=float, default=None, help="top-p inside the timed fills (default: none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
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
        "| approx ms/step | exact tok/s | approx tok/s | max |dlogit| (logit std) | argmax agree | final tokens agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        r = bench_size(size, args)
        print(
            f"| {r['size']} | {r['layers']} | {r['params_m']:.1f} | {r['full_ms']:.1f} | {r['window_ms']:.1f} "
            f"| {r['predict_top_p_ms']:.1f} "
            f"| {r['exact_step_ms']:.1f} | {r['approx_step_ms']:.1f} | {r['exact_tok_s']:.1f} "
            f"| {r['approx_tok_s']:.1f} | {r['max_logit_diff']:.3f} ({r['logit_std']:.3f}) | {r['argmax_agree']:.3f} "
            f"| {r['final_agree']:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
