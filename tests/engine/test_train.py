"""Training: a few hundred CPU steps on a small real corpus lower the held-out loss clearly, for both objectives;
checkpoints written by training load back and complete; an interrupted run resumes from its saved step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.api import LocalEngine
from engine.checkpoint import load_checkpoint
from engine.layout import collate
from engine.runner import DiffillRunner
from engine.train import TrainConfig, autoregressive_loss, diffusion_loss, low_discrepancy_times, train
from tests.conftest import STDLIB

TRAIN_FILES = ["textwrap.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "glob.py", "shlex.py"]
HELDOUT_FILES = ["keyword.py", "genericpath.py"]


def write_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, names in [("train", TRAIN_FILES), ("heldout", HELDOUT_FILES)]:
        with (directory / f"{split}.jsonl").open("w") as f:
            for name in names:
                text = (STDLIB / name).read_text(encoding="utf-8")
                f.write(json.dumps({"path": name, "language": "python", "text": text}) + "\n")
    return directory


def small_run(tmp_path: Path, tokenizer_path: Path, **overrides) -> TrainConfig:
    settings = dict(
        corpus=str(write_corpus(tmp_path / "corpus")),
        out=str(tmp_path / "run"),
        preset="tiny",
        tokenizer=str(tokenizer_path),
        steps=300,
        batch_size=8,
        context_tokens=128,
        lr=3e-3,
        warmup=20,
        eval_every=1000,
        eval_batches=4,
        save_every=1000,
        log_every=50,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory, small_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    small_tokenizer.save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("autoregressive", [False, True], ids=["diffusion", "autoregressive"])
def test_few_hundred_cpu_steps_lower_heldout_loss_clearly(tmp_path, tokenizer_path, autoregressive) -> None:
    torch.set_num_threads(2)
    metrics = train(small_run(tmp_path, tokenizer_path, autoregressive=autoregressive))
    assert metrics["heldout_loss"] < 0.85 * metrics["initial_heldout_loss"], metrics
    # The exported checkpoint is a real one: it loads and completes.
    model, tok = load_checkpoint(tmp_path / "run" / "model", device="cpu")
    assert model.config.causal_canvas is autoregressive
    engine = LocalEngine(DiffillRunner(model, tok))
    out = engine.complete("import os\n", "", language="python", canvas_length=8, num_candidates=2)
    assert len(out) == 2


@pytest.mark.parametrize("data_workers", [0, pytest.param(2, marks=pytest.mark.slow)], ids=["in-process", "2-workers"])
def test_run_stopped_and_resumed_ends_exactly_as_an_uninterrupted_run(tmp_path, tokenizer_path, data_workers) -> None:
    """Stop at a periodic checkpoint, re-run the same command: same weights, same losses, same token count."""
    torch.set_num_threads(1)
    settings = dict(
        steps=12,
        save_every=4,
        log_every=1,
        save_dtype="float32",
        precision="bf16",
        batch_size=4,
        data_workers=data_workers,
    )
    whole = train(small_run(tmp_path / "a", tokenizer_path, **settings))
    stopped = train(small_run(tmp_path / "b", tokenizer_path, stop_after=8, **settings))
    assert stopped["stopped_at_step"] == 8
    resumed = train(small_run(tmp_path / "b", tokenizer_path, **settings))
    assert resumed["tokens_seen"] == whole["tokens_seen"]
    a, _ = load_checkpoint(tmp_path / "a" / "run" / "model", device="cpu")
    b, _ = load_checkpoint(tmp_path / "b" / "run" / "model", device="cpu")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name

    def losses(run: Path) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (run / "run" / "log.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_interrupted_run_resumes_from_saved_step(tmp_path, tokenizer_path) -> None:
    first = small_run(tmp_path, tokenizer_path, steps=20, save_every=10)
    train(first)
    state = json.loads((tmp_path / "run" / "train_state" / "step.json").read_text())
    assert state["step"] == 20
    resumed = train(small_run(tmp_path, tokenizer_path, steps=30, save_every=10))
    assert json.loads((tmp_path / "run" / "train_state" / "step.json").read_text())["step"] == 30
    assert "initial_heldout_loss" not in resumed  # it did not start over
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r][-1] == 29
    assert log[-1] == {"step": 30, "heldout_loss": resumed["heldout_loss"], "tokens": resumed["tokens_seen"]}


def test_diffusion_loss_weights_masked_tokens_by_inverse_t(small_tokenizer) -> None:
    tok = small_tokenizer
    batch = collate(tok, [(tok.encode("x = 1\n"), tok.encode("y = 2"), tok.encode("\n"), "python")], 8, 64)

    class Uniform(torch.nn.Module):
        """Equal logits everywhere: cross-entropy is log V at every position."""

        def forward(self, tokens, pad, context_len, select=None):
            logits = torch.zeros(*tokens.shape, tok.vocab_size)
            return logits if select is None else logits[select]

    g = torch.Generator().manual_seed(0)
    # t = 1 masks everything: loss = log V exactly.
    full = diffusion_loss(Uniform(), batch, tok.mask_id, torch.tensor([1.0]), g)
    assert full.item() == pytest.approx(torch.log(torch.tensor(float(tok.vocab_size))).item(), rel=1e-5)
    # Any t: E[masked / t] = 1, so the weighted loss is unbiased; with 8 positions check it is within range.
    ar = autoregressive_loss(Uniform(), batch, tok.eos_id)
    assert ar.item() == pytest.approx(full.item(), rel=1e-5)


def test_low_discrepancy_times_cover_the_unit_interval() -> None:
    t = low_discrepancy_times(8, torch.Generator().manual_seed(3))
    assert t.min() >= 1e-3 and t.max() <= 1.0
    gaps = torch.sort(t).values.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, 1 / 8), atol=1e-5)


def test_second_stage_starts_from_the_first_stages_weights(tmp_path, tokenizer_path) -> None:
    torch.set_num_threads(2)
    first = train(small_run(tmp_path, tokenizer_path, steps=40, save_dtype="float32"))
    stage1 = tmp_path / "run" / "model"
    second = small_run(
        tmp_path,
        tokenizer_path,
        out=str(tmp_path / "stage2"),
        init_from=str(stage1),
        steps=20,
        seed=1,
        precision="bf16",
        preset="small-20m",  # the preset is ignored: the architecture comes from stage 1
    )
    metrics = train(second)
    # Same fixed held-out batches: stage 2 starts exactly where stage 1 ended, not from a random init (~9).
    assert metrics["initial_heldout_loss"] == pytest.approx(first["heldout_loss"], rel=1e-4)
    assert torch.isfinite(torch.tensor(metrics["heldout_loss"]))
    before, _ = load_checkpoint(stage1, device="cpu")
    after, _ = load_checkpoint(tmp_path / "stage2" / "model", device="cpu")
    assert after.config == before.config
    assert not torch.equal(after.embed.weight, before.embed.weight)  # the bf16 steps did update the weights


@pytest.mark.parametrize("shift", [False, True], ids=["unshifted", "shifted"])
def test_diffusion_run_adapts_an_autoregressive_checkpoint(tmp_path, tokenizer_path, shift) -> None:
    torch.set_num_threads(1)
    train(small_run(tmp_path, tokenizer_path, autoregressive=True, steps=6, save_dtype="float32"))
    base, _ = load_checkpoint(tmp_path / "run" / "model", device="cpu")
    adapted_run = small_run(
        tmp_path,
        tokenizer_path,
        out=str(tmp_path / "diff"),
        init_from=str(tmp_path / "run" / "model"),
        steps=3,
        shift_logits=shift,
        save_dtype="float32",
        lr=1e-9,
        warmup=1,
    )
    metrics = train(adapted_run)
    assert torch.isfinite(torch.tensor(metrics["heldout_loss"]))
    model, tok = load_checkpoint(tmp_path / "diff" / "model", device="cpu")
    assert model.config.causal_canvas is False and model.config.shift_logits is shift
    assert model.config.d_model == base.config.d_model  # the AR base's architecture, not the preset's
    # Both runs trained on 128-token contexts: that is the longest the checkpoints claim, so editors fit it.
    assert model.config.max_context == base.config.max_context == 128
    torch.testing.assert_close(model.embed.weight, base.embed.weight, atol=1e-6, rtol=1e-5)  # lr ~0: same weights
    # The engine serves it as it is: the shift is inside the model's denoise.
    engine = LocalEngine(DiffillRunner(model, tok))
    assert engine.describe()["max_text_tokens"] < 128
    for prefix in ("import os\n", "import os\nimport sys\n"):  # the second request extends the cached context
        assert len(engine.complete(prefix, "", language="python", canvas_length=8, num_candidates=2)) == 2


def test_shifted_diffusion_loss_scores_canvas_tokens_where_the_ar_loss_does(small_tokenizer) -> None:
    """With t = 1 every canvas token is masked; a model that only sees position indices shows where each
    canvas token is scored: one position earlier with the shift."""
    tok = small_tokenizer
    batch = collate(tok, [(tok.encode("x = 1\n"), tok.encode("y = 2"), tok.encode("\n"), "python")], 8, 64)

    class Oracle(torch.nn.Module):
        """Logits that put all mass on the token `offset` positions after each position."""

        def __init__(self, offset: int) -> None:
            super().__init__()
            self.offset = offset

        def forward(self, tokens, pad, context_len, select=None):
            clean = batch.tokens
            ahead = torch.cat([clean[:, self.offset :], clean[:, : self.offset]], dim=1)
            logits = torch.nn.functional.one_hot(ahead, tok.vocab_size).float() * 100
            return logits if select is None else logits[select]

    g = torch.Generator().manual_seed(0)
    one = torch.tensor([1.0])
    assert diffusion_loss(Oracle(0), batch, tok.mask_id, one, g).item() < 1e-3
    assert diffusion_loss(Oracle(1), batch, tok.mask_id, one, g, shift=True).item() < 1e-3
    assert diffusion_loss(Oracle(0), batch, tok.mask_id, one, g, shift=True).item() > 1.0


def test_second_stage_refuses_the_other_objective(tmp_path, tokenizer_path) -> None:
    train(small_run(tmp_path, tokenizer_path, steps=2))
    with pytest.raises(ValueError, match="diffusion checkpoint"):
        train(
            small_run(
                tmp_path,
                tokenizer_path,
                out=str(tmp_path / "ar"),
                autoregressive=True,
                init_from=str(tmp_path / "run" / "model"),
                steps=2,
            )
        )
