"""Sampling presets, the samplers they select, the mask-token lookup and the limits each family was trained with.

A preset is chosen in one place (``load_runner(path, preset=...)``) and applied by the runner's ``prepare``, so the
in-process engine and the server's scheduler run the same options."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.adapters import load_adapter_runner
from engine.adapters.families import CODA, DREAM, FAMILIES, LLADA, OPEN_DCODER
from engine.adapters.model import ServingLimits, default_limits
from engine.adapters.presets import family_preset
from engine.adapters.sampler import filter_logits, p2_commit
from engine.api import LocalEngine, load_runner
from engine.contract import CompletionRequest, SampleOptions
from tests.engine.adapter_fixtures import tiny_checkpoint as family_tiny_checkpoint

PREFIX, SUFFIX = "def add(a, b):\n    return ", "\n"


def test_reference_presets_follow_the_published_evaluation_settings() -> None:
    typing = SampleOptions(steps=8, threshold=0.9, temperature=0.8, seed=3)
    dream = family_preset(DREAM, "reference").options(typing, canvas=40)
    assert (dream.steps, dream.threshold, dream.temperature, dream.seed) == (40, 1.0, 0.2, 3)  # one token a step
    dcoder = family_preset(OPEN_DCODER, "reference")
    assert dcoder.sampling.schedule == "p2" and dcoder.sampling.top_p == 0.95
    assert (dcoder.options(typing, 40).steps, dcoder.options(typing, 40).temperature) == (64, 0.6)
    assert family_preset(CODA, "reference").options(typing, 41).steps == 21  # two tokens a step
    llada = family_preset(LLADA, "reference")
    assert llada.sampling.block_length == 32 and llada.sampling.order == "low_confidence"
    for family in FAMILIES:
        assert family_preset(family, "fast").options(typing, 40) == typing  # the editor's settings, unchanged
    with pytest.raises(ValueError, match="preset must be one of fast, reference"):
        family_preset(DREAM, "slow")


def test_the_preset_reaches_every_request_through_load_runner(tmp_path: Path, tiny_checkpoint: Path) -> None:
    path = family_tiny_checkpoint(tmp_path / "dream", DREAM, seed=2)
    request = CompletionRequest(PREFIX, SUFFIX, "python", 12, 2, SampleOptions(steps=4))
    reference = load_runner(path, device="cpu", preset="reference")
    fast = load_runner(path, device="cpu")
    assert reference.prepare(request).request.options.steps == 12 and fast.prepare(request).request.options.steps == 4
    assert reference.describe()["preset"] == "reference" and fast.describe()["preset"] == "fast"
    load_runner(tiny_checkpoint, device="cpu", preset="reference")  # Diffill's own model accepts and ignores it
    with pytest.raises(ValueError, match="preset"):
        load_runner(path, device="cpu", preset="exact")


def test_context_and_canvas_stay_within_the_context_each_release_was_trained_on(tmp_path: Path) -> None:
    dream = load_adapter_runner(family_tiny_checkpoint(tmp_path / "d", DREAM), device="cpu", progress=False)
    assert dream.max_context + dream.max_canvas == 1024  # the tiny config's 1,024 positions bind first
    released = replace(dream.model.spec, max_positions=131072)  # Dream-7B's config: trained on 2,048 all the same
    assert default_limits(released, DREAM.trained_context) == ServingLimits(max_context=1792, max_canvas=256)
    assert default_limits(released, CODA.trained_context).max_context + 256 == 4096  # not published: capped


def test_an_open_dcoder_tokenizer_with_only_its_training_mask_token_loads(tmp_path: Path) -> None:
    """Open-dLLM's tasks/train_torch.py adds "<M>" when the tokenizer has no mask token."""
    directory = family_tiny_checkpoint(tmp_path / "m", OPEN_DCODER)
    data = json.loads((directory / "tokenizer.json").read_text())
    for token in data["added_tokens"]:
        if token["content"] == "<|mask|>":
            token["content"] = "<M>"
    (directory / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    del config["mask_token"]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    runner = load_adapter_runner(directory, device="cpu", progress=False)
    assert runner.tokenizer.mask_id == runner.tokenizer.backend.token_to_id("<M>")
    assert runner.tokenizer.backend.token_to_id("<|mask|>") is None


def dream_sample_filters(logits: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Transcription of Dream's generation_utils.sample_tokens filters: top_p_logits, then top_k_logits."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    remove = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1) > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    logits = logits.masked_fill(torch.zeros_like(remove).scatter_(-1, sorted_indices, remove), -math.inf)
    return logits.masked_fill(logits < torch.topk(logits, top_k)[0][..., -1, None], -math.inf)


def test_top_p_is_applied_before_top_k_as_dream_does() -> None:
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()  # top-k first would renormalise to .625/.375 and keep one token
    assert filter_logits(logits, top_k=2, top_p=0.55).isfinite().tolist() == [[True, True, False]]
    gen = torch.Generator().manual_seed(0)
    for scale in (0.5, 4.0):
        logits = torch.randn(4, 6, 300, generator=gen) * scale
        for p, k in ((0.5, 3), (0.9, 20), (0.95, 200)):
            want = dream_sample_filters(logits, p, k).isinf()
            assert torch.equal(filter_logits(logits, top_k=k, top_p=p).isinf(), want)


def open_dllm_p2_step(x: torch.Tensor, fix: torch.Tensor, tokens: torch.Tensor, conf: torch.Tensor, i: int,
                      steps: int, mask_id: int) -> torch.Tensor:  # fmt: skip
    """Transcription of Open-dLLM generation_utils._mdm_sample's p2 branch (one step, given x0 and confidence)."""
    mask_index = x == mask_id
    confidence = conf.clone()
    confidence[fix] = float("inf")
    num_to_mask = ((~fix).sum(dim=1, keepdim=True).float() * (1 - (i + 1) / steps)).long()
    sorted_idx = torch.argsort(confidence, dim=-1, descending=False)
    to_mask = torch.zeros_like(x, dtype=torch.bool)
    for row in range(x.shape[0]):
        to_mask[row, sorted_idx[row, : int(num_to_mask[row])]] = True
    x = x.clone()
    x[to_mask] = mask_id
    unmask = mask_index & ~to_mask
    x[unmask] = tokens[unmask]
    return x


def test_p2_keeps_a_growing_fraction_and_remasks_the_rest_like_open_dllm() -> None:
    gen, mask_id, steps, L = torch.Generator().manual_seed(0), 99, 6, 10
    canvas = torch.full((2, L), mask_id)
    masked, logp = torch.ones(2, L, dtype=torch.bool), torch.zeros(2, L)
    x = torch.cat([torch.ones(2, 3, dtype=torch.long), canvas.clone(), torch.ones(2, 2, dtype=torch.long)], dim=1)
    fix = x != mask_id
    remasked_a_committed_token = False
    for i in range(steps):
        tokens = torch.randint(0, 50, (2, L), generator=gen)
        prob = torch.rand(2, L, generator=gen)
        before = ~masked.clone()
        p2_commit(canvas, masked, logp, (tokens, prob, prob), i, steps, mask_id)
        full_tokens = torch.cat([torch.zeros(2, 3, dtype=torch.long), tokens, torch.zeros(2, 2, dtype=torch.long)], 1)
        full_conf = torch.cat([torch.zeros(2, 3), prob, torch.zeros(2, 2)], dim=1)
        x = open_dllm_p2_step(x, fix, full_tokens, full_conf, i, steps, mask_id)
        assert torch.equal(canvas, x[:, 3:-2]) and torch.equal(masked, canvas == mask_id)
        assert int(masked[0].sum()) == int(L * (1 - (i + 1) / steps))
        remasked_a_committed_token |= bool((before & masked).any())
    assert not masked.any() and remasked_a_committed_token


def test_reference_presets_fill_the_canvas_for_every_family(family_checkpoint) -> None:
    runner = load_adapter_runner(family_checkpoint[1], device="cpu", preset="reference", progress=False)
    engine = LocalEngine(runner)
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=6, num_candidates=2)
    assert len(out) == 2 and all(math.isfinite(c.score) and c.tokens <= 6 for c in out)
    budget = runner.prepare(CompletionRequest(PREFIX, SUFFIX, "python", 6, 2)).request.options.steps
    assert engine.last_stats is not None and 1 <= engine.last_stats.steps <= budget  # early exit once all is filled


def test_every_command_line_takes_the_preset() -> None:
    from engine.cli import build_parser
    from engine.serve.cli import build_parser as serve_parser
    from eval.cli import backend_spec
    from eval.cli import build_parser as eval_parser

    assert build_parser().parse_args(["complete", "a.py:1:1", "--preset", "reference"]).preset == "reference"
    assert build_parser().parse_args(["complete", "a.py:1:1"]).preset == "fast"
    assert serve_parser().parse_args(["--preset", "reference"]).preset == "reference"
    args = eval_parser().parse_args(["humaneval-infilling", "--preset", "reference"])
    assert backend_spec(args).preset == "reference" and backend_spec(args).identity()["preset"] == "reference"
    with pytest.raises(SystemExit):
        serve_parser().parse_args(["--preset", "slow"])
