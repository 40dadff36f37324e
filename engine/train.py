"""Training: the masked-diffusion objective (MDLM / MD4) and the autoregressive twin, on one `accelerate` loop.

Diffusion loss (Sahoo et al. 2024, MDLM eq. 10; Shi et al. 2024, MD4): for each row draw t ~ U(0, 1) --
low-discrepancy over the batch, t_i = (u + i / B) mod 1 -- mask each canvas token with probability t, and take
the cross-entropy of the clean token at masked positions weighted by 1/t (the ELBO weight of the linear
schedule alpha_t = 1 - t), averaged over canvas positions. The context is never masked: it is the condition.

AR twin: the same model with a causal canvas and teacher forcing; logits at position j predict token j + 1, so
the context's last position (<fim_middle>) predicts the first middle token. Loss over the middle through its
first <eos>. Same data, batch and steps as the diffusion model: tokens seen match.

The loop reads top to bottom like nanoGPT's: data -> forward -> loss -> backward -> clip -> step -> log ->
evaluate / checkpoint. It runs unchanged on CPU, one GPU, or several (``accelerate launch``).

Resuming: a run directory's ``train_state`` holds model, optimizer, RNG states, step and tokens seen, written every
``save_every`` steps. The data stream and the noise generator are reseeded from (seed, step) at every one of those
steps, so their state is a function of the step: a run stopped at any moment and resumed from its last periodic
checkpoint continues exactly as the uninterrupted run would have (a ``--max-minutes`` / ``--stop-after`` stop
between them saves too; resumed from there, the run draws fresh examples rather than replaying).

Stages (issue 15): an autoregressive base, then the diffusion model adapted from it (``--init-from`` an AR
checkpoint: same weights, bidirectional canvas, masked-diffusion loss, optionally ``--shift-logits``) and the AR
twin continued from it with the same number of extra tokens. ``--schedule constant`` keeps the base's learning rate
flat after warm-up (the "stable" phase of a warmup-stable-decay schedule), so any of its checkpoints can start the
decaying second stages.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.config import ModelConfig, preset
from engine.contract import ContextChunk
from engine.corpus import iter_corpus
from engine.data import FimExample, iter_distilled, iter_fim_examples, mix
from engine.layout import Batch, collate, draw_canvas_len, encode_chunks
from engine.model import DiffillModel
from engine.tokenizer import CodeTokenizer, train_tokenizer

T_MIN = 1e-3  # lower bound on t: the 1/t weight is unbounded at 0


@dataclass(frozen=True)
class TrainConfig:
    corpus: str  # directory with train.jsonl / heldout.jsonl (engine.corpus.build_corpus)
    out: str  # run directory: checkpoints, tokenizer, logs
    preset: str = "small-20m"
    autoregressive: bool = False  # train the AR twin instead of the diffusion model
    tokenizer: str | None = None  # tokenizer.json to use; None = out/tokenizer.json, trained if missing
    vocab_size: int = 12288
    tokenizer_chars: int = 40_000_000  # text sampled for tokenizer training (BPE merges stabilise well before)
    steps: int = 2000
    batch_size: int = 16
    context_tokens: int = 768  # context budget per training row (the model supports up to max_context)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"  # "cosine": warmup then cosine decay to min_lr_ratio; "constant": warmup then flat
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 250
    eval_batches: int = 8
    save_every: int = 500
    max_minutes: float | None = None  # stop (with a checkpoint) once this much wall time has passed
    stop_after: int | None = None  # stop (with a checkpoint) at this step; the schedule still spans `steps`
    log_every: int = 10
    # Weight of the next-token loss on context positions (both objectives; 0 = canvas loss only).
    context_lm_weight: float = 0.0
    save_dtype: str = "bfloat16"  # dtype of exported inference checkpoints
    resume: bool = True
    # Start from this checkpoint's weights (its config and tokenizer; fresh optimizer and schedule) instead of a
    # random init: a second training stage. The run directory's own train_state still wins when resuming.
    # A diffusion run may start from an AR checkpoint (adaptation); the reverse is refused.
    init_from: str | None = None
    # Diffusion from scratch or adapted from AR: read canvas position i from the logits at i - 1 (ModelConfig).
    shift_logits: bool = False
    # Processes that cut and tokenize examples (torch DataLoader workers; 0 = in the training process). A GPU
    # needs several: one process makes ~100k tokens/s on a busy 2-core VM.
    data_workers: int = 0
    # "bf16": autocast matmuls to bfloat16 (the loss stays float32); "fp32"; "auto": bf16 on CUDA, fp32 on CPU.
    # On a CPU with AVX512-BF16, bf16 doubles the step rate of the cpu-8m preset (measured, see MODEL_CARD.md).
    precision: str = "auto"
    # Fraction of training examples that carry cross-file chunks of related files of their package (engine.related,
    # docs/context.md); 0 = off. Costs data-pipeline time (measured in docs/context.md), not model time per row.
    cross_file_rate: float = 0.0
    # Distillation (``diffill distill``): .jsonl files of FIM examples whose middles a model wrote (its own lines or a
    # teacher's), their rows pooled and mixed into the stream at `distilled_rate` (the rest are the corpus's own
    # examples); empty = the corpus alone.
    distilled: tuple[str, ...] = ()
    distilled_rate: float = 0.5

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.data_workers < 0:
            raise ValueError("steps and batch_size must be positive, data_workers not negative")
        if self.save_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"save_dtype must be float32, bfloat16 or float16, got {self.save_dtype}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be cosine or constant, got {self.schedule}")
        if self.shift_logits and self.autoregressive:
            raise ValueError("--shift-logits is for the diffusion model")
        one = isinstance(self.distilled, str)  # one file given as such; the CLI gives a list
        object.__setattr__(self, "distilled", (self.distilled,) if one else tuple(self.distilled))
        if not 0.0 <= self.distilled_rate <= 1.0:
            raise ValueError(f"distilled_rate must be in [0, 1], got {self.distilled_rate}")


# ---- objectives -------------------------------------------------------------------------------------------


def low_discrepancy_times(batch: int, generator: torch.Generator) -> Tensor:
    """t_i = (u + i/B) mod 1, clamped to [T_MIN, 1]: stratified, so every batch covers the whole noise range."""
    u = torch.rand((), generator=generator)
    return ((u + torch.arange(batch) / batch) % 1.0).clamp(min=T_MIN)


def next_tokens(tokens: Tensor) -> Tensor:
    """(B, T): what position j predicts, token j + 1 (the last position repeats its own; no loss uses it)."""
    return torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)


def _context_positions(batch: Batch) -> Tensor:
    """(B, T) bool: context positions whose next token is real context (pad and the last position excluded)."""
    j = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)[None]
    return (j >= batch.pad[:, None]) & (j < batch.context_len - 1)


def weighted_cross_entropy(
    model: torch.nn.Module, batch: Batch, targets: Tensor, weight: Tensor, inputs: Tensor | None = None
) -> Tensor:
    """sum(weight * CE(logits, targets)) over the positions with weight > 0; targets/weight (B, T).

    Only those positions are projected onto the vocabulary (the model's `select`), and the softmax runs over the
    contiguous last dimension in float32.
    """
    select = weight > 0
    logits = model(batch.tokens if inputs is None else inputs, batch.pad, batch.context_len, select)  # (N, V)
    ce = F.cross_entropy(logits.float(), targets[select], reduction="none")
    return (ce * weight[select]).sum()


def _with_context_lm(batch: Batch, targets: Tensor, weight: Tensor, context_weight: float) -> tuple[Tensor, Tensor]:
    """Add the context's next-token loss, averaged over its real positions and scaled by context_weight.

    The context is processed causally by both objectives, so its positions can learn next-token prediction for
    free: a dense signal on every context token instead of only the <= 64 canvas tokens of a row.
    """
    if not context_weight:
        return targets, weight
    ctx = _context_positions(batch)
    ctx_weight = ctx.float() * (context_weight / ctx.sum().clamp(min=1))
    return torch.where(ctx, next_tokens(batch.tokens), targets), torch.where(ctx, ctx_weight, weight)


def diffusion_loss(
    model: torch.nn.Module,
    batch: Batch,
    mask_id: int,
    t: Tensor,
    generator: torch.Generator,
    context_weight: float = 0.0,
    shift: bool = False,
) -> Tensor:
    """With `shift`, canvas token i is scored at position C + i - 1 (the logits one position earlier), exactly
    where the AR loss scores it; the inputs (what is masked) are the same."""
    C = batch.context_len
    tokens = batch.tokens
    target = tokens[:, C:]  # (B, L)
    t = t.to(tokens.device)
    masked = torch.rand(target.shape, generator=generator).to(tokens.device) < t[:, None]
    noisy = tokens.clone()
    noisy[:, C:] = torch.where(masked, mask_id, target)
    weight = torch.zeros(tokens.shape, device=tokens.device)
    at = slice(C - 1, -1) if shift else slice(C, None)
    weight[:, at] = masked.float() / t[:, None] / target.numel()  # the 1/t ELBO weight, mean over canvas positions
    targets, weight = _with_context_lm(batch, next_tokens(tokens) if shift else tokens, weight, context_weight)
    return weighted_cross_entropy(model, batch, targets, weight, inputs=noisy)


def autoregressive_loss(model: torch.nn.Module, batch: Batch, eos_id: int, context_weight: float = 0.0) -> Tensor:
    """Teacher-forced next-token loss on the middle through its first <eos>: position j predicts token j + 1,
    so the context's last position (<fim_middle>) predicts the first middle token."""
    C = batch.context_len
    tokens = batch.tokens
    target = tokens[:, C:]  # (B, L)
    is_eos = target == eos_id
    keep = (is_eos.long().cumsum(dim=1) - is_eos.long()) == 0  # through the first <eos>; the padding after is not
    weight = torch.zeros(tokens.shape, device=tokens.device)
    weight[:, C - 1 : -1] = keep.float() / keep.sum()
    targets, weight = _with_context_lm(batch, next_tokens(tokens), weight, context_weight)
    return weighted_cross_entropy(model, batch, targets, weight)


# ---- data ---------------------------------------------------------------------------------------------------


def tokenize_example(tok: CodeTokenizer, ex: FimExample) -> tuple:
    row = (tok.encode(ex.prefix), tok.encode(ex.middle), tok.encode(ex.suffix), ex.language)
    if not ex.chunks:
        return row
    return (*row, encode_chunks(tok.encode, [ContextChunk(p, t) for p, t in ex.chunks], ex.language))


def batches(
    examples: Iterator[FimExample], tok: CodeTokenizer, batch_size: int, context_tokens: int, max_canvas: int, seed: int
) -> Iterator[Batch]:
    rng = random.Random(seed)
    while True:
        rows = [tokenize_example(tok, next(examples)) for _ in range(batch_size)]
        yield collate(tok, rows, draw_canvas_len(rng, max_canvas), context_tokens)


def fixed_eval_batches(cfg: TrainConfig, tok: CodeTokenizer, max_canvas: int) -> list[Batch]:
    """Held-out batches drawn once with a fixed seed, so evaluations along a run are comparable."""
    path = Path(cfg.corpus) / "heldout.jsonl"
    examples = iter_fim_examples(path, seed=1234, epochs=None)
    stream = batches(examples, tok, cfg.batch_size, cfg.context_tokens, max_canvas, seed=1234)
    return [next(stream) for _ in range(cfg.eval_batches)]


def to_device(batch: Batch, device: torch.device) -> Batch:
    return Batch(tokens=batch.tokens.to(device), pad=batch.pad.to(device), context_len=batch.context_len)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, eval_set: list[Batch], tok: CodeTokenizer, autoregressive: bool, shift: bool = False
) -> float:
    """Mean held-out loss; diffusion uses a fixed grid of t so the estimate is low-variance and repeatable."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    losses = []
    for batch in eval_set:
        batch = to_device(batch, device)
        if autoregressive:
            losses.append(autoregressive_loss(model, batch, tok.eos_id).item())
        else:
            t = ((torch.arange(len(batch.pad)) + 0.5) / len(batch.pad)).clamp(min=T_MIN)
            losses.append(diffusion_loss(model, batch, tok.mask_id, t, generator, shift=shift).item())
    model.train()
    return sum(losses) / len(losses)


# ---- the loop ---------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr (or flat, with schedule "constant")."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def corpus_sample(path: Path, max_chars: int) -> Iterator[str]:
    """Every k-th corpus file, k chosen so about max_chars of text are yielded (spread over the whole corpus)."""
    rows = list(iter_corpus(path))
    total = sum(len(r["text"]) for r in rows)
    stride = max(1, round(total / max_chars))
    for row in rows[::stride]:
        yield row["text"]


def load_or_train_tokenizer(cfg: TrainConfig, out: Path) -> CodeTokenizer:
    path = Path(cfg.tokenizer) if cfg.tokenizer else out / "tokenizer.json"
    if path.exists():
        return CodeTokenizer.load(path)
    print(f"training tokenizer (vocab {cfg.vocab_size}) on {cfg.corpus}/train.jsonl", file=sys.stderr)
    tok = train_tokenizer(corpus_sample(Path(cfg.corpus) / "train.jsonl", cfg.tokenizer_chars), cfg.vocab_size)
    tok.save(out / "tokenizer.json")
    return tok


def trained_context(model_cfg: ModelConfig, context_tokens: int) -> ModelConfig:
    """The config a run saves: `max_context` no longer than the contexts it trains on. Engines fit the editor's
    window to a checkpoint's `max_context`, and a model never trained on longer contexts does worse on them (the
    embedded default on fim-dev: docs/speed.md, round 4), besides paying for tokens it cannot use."""
    return replace(model_cfg, max_context=min(model_cfg.max_context, context_tokens))


def initial_model(cfg: TrainConfig) -> tuple[DiffillModel, CodeTokenizer]:
    """The weights and tokenizer of `cfg.init_from`, in float32 for training.

    An AR checkpoint may start a diffusion run (adaptation, as Dream / DiffuCoder adapted Qwen2.5): the same
    weights with the canvas made bidirectional, and `cfg.shift_logits` deciding where canvas tokens are read.
    A diffusion checkpoint cannot start an AR run.
    """
    model, tok = load_checkpoint(cfg.init_from, device="cpu", dtype=torch.float32)
    if cfg.autoregressive and not model.config.causal_canvas:
        raise ValueError(f"--init-from {cfg.init_from} is a diffusion checkpoint; it cannot start an AR run")
    if not cfg.autoregressive and model.config.causal_canvas:
        adapted = DiffillModel(replace(model.config, causal_canvas=False, shift_logits=cfg.shift_logits))
        adapted.load_state_dict(model.state_dict())
        print(f"adapting the AR checkpoint {cfg.init_from} to diffusion (shift {cfg.shift_logits})", file=sys.stderr)
        model = adapted
    if cfg.tokenizer and CodeTokenizer.load(cfg.tokenizer).to_json() != tok.to_json():
        raise ValueError(f"--tokenizer {cfg.tokenizer} differs from the tokenizer of --init-from {cfg.init_from}")
    print(f"starting from the weights of {cfg.init_from}", file=sys.stderr)
    return model.train(), tok


class _FimBatches(torch.utils.data.IterableDataset):
    """The batch stream of one process, split over DataLoader workers: worker i of n reads every (world * n)-th
    file from rank * n + i and draws its own canvas lengths; the DataLoader interleaves them in a fixed order, so
    the stream is still a function of the seed. With no workers it is exactly ``batches`` in this process."""

    def __init__(self, cfg: TrainConfig, tok: CodeTokenizer, max_canvas: int, seed: int, rank: int, world: int) -> None:
        super().__init__()
        self.cfg, self.tok, self.max_canvas, self.seed, self.rank, self.world = cfg, tok, max_canvas, seed, rank, world

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        n, i = (info.num_workers, info.id) if info else (1, 0)
        if info:
            torch.set_num_threads(1)
        examples = iter_fim_examples(
            Path(self.cfg.corpus) / "train.jsonl",
            seed=self.seed,
            rank=self.rank * n + i,
            world_size=self.world * n,
            cross_file_rate=self.cfg.cross_file_rate,
        )
        if self.cfg.distilled:
            rank = self.rank * n + i
            distilled = iter_distilled(self.cfg.distilled, seed=self.seed, rank=rank, world_size=self.world * n)
            examples = mix(examples, distilled, self.cfg.distilled_rate, random.Random(f"mix-{self.seed}-{rank}"))
        yield from batches(
            examples, self.tok, self.cfg.batch_size, self.cfg.context_tokens, self.max_canvas, self.seed + i
        )


def _stream(
    cfg: TrainConfig, tok: CodeTokenizer, max_canvas: int, step: int, rank: int, world: int
) -> tuple[Iterator[Batch], torch.Generator]:
    """Batches and noise generator for the segment starting at `step`: a function of (seed, step) only."""
    data_seed = cfg.seed * 1_000_003 + step * 7919
    dataset = _FimBatches(cfg, tok, max_canvas, data_seed, rank, world)
    if cfg.data_workers:
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=cfg.data_workers, prefetch_factor=4)
        stream: Iterator[Batch] = iter(loader)
    else:
        stream = iter(dataset)
    return stream, torch.Generator().manual_seed(data_seed)


def _resume_dir(state_dir: Path) -> Path | None:
    """The last complete training state: `state_dir`, or the previous one if a save was cut between renames."""
    for path in (state_dir, state_dir.with_name(state_dir.name + ".old")):
        if (path / "step.json").exists():
            return path
    return None


def train(cfg: TrainConfig) -> dict[str, float]:
    from accelerate import Accelerator

    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_available())
    # Autocast is ours rather than accelerate's mixed_precision: accelerate's is a process-wide setting that a
    # second train() in the same process (a second stage, a test) cannot change.
    accelerator = Accelerator()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        model, tok = initial_model(cfg)
        model_cfg = model.config
    else:
        tok = load_or_train_tokenizer(cfg, out)
        model_cfg = preset(
            cfg.preset, vocab_size=tok.vocab_size, causal_canvas=cfg.autoregressive, shift_logits=cfg.shift_logits
        )
        model = DiffillModel(model_cfg)
    model.config = model_cfg = trained_context(model_cfg, cfg.context_tokens)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    model, optimizer = accelerator.prepare(model, optimizer)

    state_dir = out / "train_state"
    start, tokens_before = 0, 0
    resume_dir = _resume_dir(state_dir) if cfg.resume else None
    if resume_dir is not None:
        accelerator.load_state(str(resume_dir))
        saved = json.loads((resume_dir / "step.json").read_text())
        start, tokens_before = saved["step"], saved.get("tokens", 0)
        accelerator.print(f"resumed from {resume_dir} at step {start} ({tokens_before:,} tokens)")

    rank, world = accelerator.process_index, accelerator.num_processes
    stream, generator = _stream(cfg, tok, model_cfg.max_canvas, start, rank, world)
    eval_set = fixed_eval_batches(cfg, tok, model_cfg.max_canvas)
    shift = model_cfg.shift_logits
    metrics: dict[str, float] = {}
    log_path = out / "log.jsonl"

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def checkpoint(step: int, tokens: int) -> None:
        """Write the state beside the old one, then swap: a kill at any moment leaves one complete state."""
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            new, old = state_dir.with_name("train_state.new"), state_dir.with_name("train_state.old")
            shutil.rmtree(new, ignore_errors=True)
            accelerator.save_state(str(new))
            (new / "step.json").write_text(json.dumps({"step": step, "tokens": tokens}) + "\n")
            shutil.rmtree(old, ignore_errors=True)
            if state_dir.exists():
                state_dir.rename(old)
            new.rename(state_dir)
            shutil.rmtree(old, ignore_errors=True)
            raw = accelerator.unwrap_model(model)
            save_checkpoint(out / "model", raw, tok, dtype=getattr(torch, cfg.save_dtype))

    def held_out(step: int, tokens: int) -> float:
        loss = evaluate(model, eval_set, tok, cfg.autoregressive, shift)
        accelerator.print(f"step {step}: held-out loss {loss:.4f}")
        log({"step": step, "heldout_loss": loss, "tokens": tokens})
        return loss

    n_params = accelerator.unwrap_model(model).num_parameters()
    kind = "AR twin" if cfg.autoregressive else f"diffusion{' (shifted logits)' if shift else ''}"
    accelerator.print(f"model: {n_params / 1e6:.2f}M parameters, {kind}")
    if start == 0:
        metrics["initial_heldout_loss"] = held_out(0, 0)
    model.train()
    tokens_seen = 0
    t_start = time.perf_counter()
    end = min(cfg.steps, cfg.stop_after or cfg.steps)
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, disable=not accelerator.is_main_process)
    for step in bar:
        if step != start and step % cfg.save_every == 0:  # a new segment, exactly as a resume here would start
            stream, generator = _stream(cfg, tok, model_cfg.max_canvas, step, rank, world)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = to_device(next(stream), accelerator.device)
        with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=bf16):
            if cfg.autoregressive:
                loss = autoregressive_loss(model, batch, tok.eos_id, cfg.context_lm_weight)
            else:
                t = low_discrepancy_times(len(batch.pad), generator)
                loss = diffusion_loss(model, batch, tok.mask_id, t, generator, cfg.context_lm_weight, shift)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += batch.tokens.numel() * world
        tokens = tokens_before + tokens_seen
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            loss_value = loss.item()  # host sync, only on logging steps
            elapsed = time.perf_counter() - t_start
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_seen / elapsed:.0f}")
            log({"step": step, "loss": loss_value, "lr": lr_at(step, cfg), "tokens": tokens})
            metrics["train_loss"] = loss_value
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            metrics["heldout_loss"] = held_out(step + 1, tokens)
        out_of_time = cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes
        stop = out_of_time or step + 1 == cfg.stop_after
        if (step + 1) % cfg.save_every == 0 or step == cfg.steps - 1 or stop:
            checkpoint(step + 1, tokens)
        if stop:
            accelerator.print(f"stopping at step {step + 1} of {cfg.steps}; re-run the same command to resume")
            metrics["stopped_at_step"] = step + 1
            break
    metrics["tokens_seen_this_run"] = tokens_seen
    metrics["tokens_seen"] = tokens_before + tokens_seen
    metrics["wall_s"] = time.perf_counter() - t_start
    if accelerator.is_main_process:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``--batch-size 32``, ``--autoregressive``, ``--no-resume``)."""
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.name in ("corpus", "out"):
            parser.add_argument(flag, required=True)
        elif str(f.type) == "tuple[str, ...]":
            parser.add_argument(flag, nargs="+", default=f.default, metavar=f.name.upper())
        else:
            kind = {"int": int, "float": float, "float | None": float, "int | None": int}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=f.default)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
