"""External diffusion coders load from their real on-disk formats, fill the middle the way their reference samplers
do, and fail with errors that name the file at fault. LLaDA's forward is checked against a transcription of its
modeling code here; the Qwen-layout families against transformers itself in test_adapters_reference.py."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from engine.adapters import AdapterRunner, load_adapter_runner
from engine.adapters.families import (
    A2D_QWEN2,
    A2D_QWEN3,
    CODA,
    DREAM,
    FAMILIES,
    LLADA,
    OPEN_DCODER,
    Family,
    detect_family,
)
from engine.adapters.model import DiffusionLM, randomize
from engine.adapters.runner import build_layout, fill_layout
from engine.adapters.sampler import (
    AdapterSampling,
    Layout,
    blocks,
    cache_drift,
    commit,
    commit_count,
    filter_logits,
    full_pass,
    window_pass,
)
from engine.api import LocalEngine, load_engine
from engine.contract import CompletionEngine, SampleOptions
from engine.errors import CheckpointError
from engine.layout import fit_context
from tests.engine.adapter_fixtures import (
    MASKS,
    ROLES,
    save_external_checkpoint,
    tiny_checkpoint,
    tiny_spec,
    train_code_bpe,
)

PREFIX = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n    return "
SUFFIX = "\n\n\nprint(mean([1, 2, 3]))\n"
IDS = [f.name for f in FAMILIES]


@pytest.fixture(scope="module")
def checkpoint(family_checkpoint: tuple[Family, Path]) -> tuple[Family, Path]:
    return family_checkpoint


@pytest.fixture(scope="module")
def engine(checkpoint: tuple[Family, Path]) -> LocalEngine:
    return LocalEngine(load_adapter_runner(checkpoint[1], device="cpu", progress=False))


# --- detection and loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"model_type": "Dream", "architectures": ["DreamModel"]}, DREAM),
        ({"architectures": ["DreamModel"]}, DREAM),
        ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}, OPEN_DCODER),
        ({"model_type": "llada", "architectures": ["LLaDAModelLM"]}, LLADA),
        ({"model_type": "CoDA", "architectures": ["CoDALanguageModel"]}, CODA),
        ({"model_type": "a2d-qwen2", "architectures": ["A2DQwen2LMHeadModel"]}, A2D_QWEN2),
        ({"model_type": "a2d-qwen3"}, A2D_QWEN3),
    ],
)
def test_family_is_detected_from_model_type_or_architectures(config: dict, family: Family) -> None:
    assert detect_family(config) is family


def test_unknown_architecture_is_an_error_naming_config_json_and_the_value(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "architectures": ["MambaForCausalLM"]}))
    with pytest.raises(CheckpointError, match=r"config\.json.*'mamba'"):
        load_engine(tmp_path, device="cpu")


def test_load_engine_dispatches_external_checkpoints_and_keeps_diffill_ones(
    checkpoint: tuple[Family, Path], tiny_checkpoint: Path
) -> None:
    external = load_engine(checkpoint[1], device="cpu")
    assert isinstance(external.runner, AdapterRunner) and external.runner.family is checkpoint[0]
    assert isinstance(external, CompletionEngine) and external.ready
    assert isinstance(load_engine(tiny_checkpoint, device="cpu"), LocalEngine)


def test_loads_float32_on_cpu_and_bf16_when_asked(checkpoint: tuple[Family, Path]) -> None:
    e32 = load_adapter_runner(checkpoint[1], device="cpu", progress=False)
    e16 = load_adapter_runner(checkpoint[1], device="cpu", dtype=torch.bfloat16, progress=False)
    assert e32.model.embed.weight.dtype == torch.float32 and e16.model.embed.weight.dtype == torch.bfloat16
    assert e32.describe()["family"] == checkpoint[0].name


def test_special_tokens_use_the_real_names(engine: LocalEngine) -> None:
    tok, backend = engine.runner.tokenizer, engine.runner.tokenizer.backend
    mask = MASKS[engine.runner.family.name]
    assert tok.mask_id == backend.token_to_id(mask)
    assert tok.eos_id == backend.token_to_id(ROLES[engine.runner.family.name]["eos_token"])
    assert backend.token_to_id("<|endoftext|>") in tok.end_ids
    if engine.runner.family is DREAM:
        assert tok.bos_id == backend.token_to_id("<|beginoftext|>")
        assert backend.token_to_id("<|dlm_pad|>") in tok.end_ids
    if engine.runner.family is LLADA:
        assert tok.bos_id == backend.token_to_id("<|startoftext|>")
    assert tok.decode(tok.encode(PREFIX)) == PREFIX


def test_dream_slow_tokenizer_files_encode_like_tokenizer_json(tmp_path: Path) -> None:
    fast = load_adapter_runner(tiny_checkpoint(tmp_path / "fast", DREAM), device="cpu", progress=False)
    slow_dir = tiny_checkpoint(tmp_path / "slow", DREAM, slow_tokenizer_files=True)
    assert not (slow_dir / "tokenizer.json").exists() and (slow_dir / "merges.txt").exists()
    slow = load_adapter_runner(slow_dir, device="cpu", progress=False)
    assert slow.tokenizer.encode(PREFIX + SUFFIX) == fast.tokenizer.encode(PREFIX + SUFFIX)
    assert slow.tokenizer.mask_id == fast.tokenizer.mask_id


def test_a_qwen2_checkpoint_without_a_mask_token_is_refused(tmp_path: Path) -> None:
    directory = tiny_checkpoint(tmp_path / "m", OPEN_DCODER)  # e.g. plain autoregressive Qwen2.5-Coder
    data = json.loads((directory / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|mask|>"]
    (directory / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    del config["mask_token"]
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no mask token"):
        load_adapter_runner(directory, device="cpu", progress=False)


# --- the network -----------------------------------------------------------------------------------------------


def llada_reference_logits(config: dict, sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """A float64 transcription of LLaDA's ``modeling_llada.py`` (as shipped with GSAI-ML/LLaDA-8B-Base; copy read:
    YoungNoOne/dLLMs @ a40e1eb7fa2689442fca19943f5deb034b6b4341): ``LLaDALlamaBlock`` (attn_norm, q/k/v_proj,
    RotaryEmbedding's rotate-half, SDPA with ``is_causal=False``, attn_out; ff_norm, ``act(ff_proj(x)) * up_proj(x)``,
    ff_out), ``RMSLayerNorm`` and ``ln_f``, by tensor name. LLaDA ships no transformers class to run instead."""
    sd = {k: v.double() for k, v in sd.items()}
    d, heads, kv_heads, layers = config["d_model"], config["n_heads"], config["n_kv_heads"], config["n_layers"]
    eps, theta, hd = config["rms_norm_eps"], config["rope_theta"], d // heads
    p = "model.transformer."

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ sd[name + ".weight"].T + (sd[name + ".bias"] if name + ".bias" in sd else 0)

    inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    emb = torch.cat([torch.outer(torch.arange(ids.shape[1], dtype=torch.float64), inv_freq)] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rope(x: torch.Tensor) -> torch.Tensor:  # rotate_half
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    x = sd[p + "wte.weight"][ids]
    B, T = ids.shape
    for i in range(layers):
        b = f"{p}blocks.{i}."
        h = rms(x, sd[b + "attn_norm.weight"])
        q = rope(linear(h, b + "q_proj").view(B, T, heads, hd).transpose(1, 2))
        k = rope(linear(h, b + "k_proj").view(B, T, kv_heads, hd).transpose(1, 2))
        v = linear(h, b + "v_proj").view(B, T, kv_heads, hd).transpose(1, 2)
        k, v = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v  # no mask: bidirectional
        x = x + linear(att.transpose(1, 2).reshape(B, T, d), b + "attn_out")
        h = rms(x, sd[b + "ff_norm.weight"])
        x = x + linear(F.silu(linear(h, b + "ff_proj")) * linear(h, b + "up_proj"), b + "ff_out")
    x = rms(x, sd[p + "ln_f.weight"])
    return x @ sd.get(p + "ff_out.weight", sd[p + "wte.weight"]).T


def test_llada_forward_matches_a_transcription_of_its_modeling_code(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path / "llada", LLADA, seed=1)
    runner = load_adapter_runner(path, device="cpu", progress=False)
    config = json.loads((path / "config.json").read_text())
    ids = torch.randint(0, runner.tokenizer.vocab_size, (2, 23), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = runner.model(ids).double()
    ref = llada_reference_logits(config, load_file(str(path / "model.safetensors")), ids)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_save_load_round_trip_gives_the_same_logits_through_shards(tmp_path: Path, family: Family) -> None:
    tok = train_code_bpe(family)
    model = randomize(DiffusionLM(tiny_spec(family, 576, num_layers=3)), seed=7).eval()
    save_external_checkpoint(tmp_path, model, family, tok, max_shard_bytes=40_000)
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1 and (tmp_path / "model.safetensors.index.json").exists()
    loaded = load_adapter_runner(tmp_path, device="cpu", progress=False).model
    assert (loaded.lm_head.weight is loaded.embed.weight) == model.spec.tie_embeddings  # tied as saved
    ids = torch.randint(0, 576, (2, 17))
    with torch.inference_mode():
        assert torch.equal(loaded(ids), model(ids))


def test_missing_shard_is_an_error_naming_the_shard(tmp_path: Path) -> None:
    tok = train_code_bpe(LLADA)
    save_external_checkpoint(
        tmp_path, randomize(DiffusionLM(tiny_spec(LLADA, 576)), 0), LLADA, tok, max_shard_bytes=40_000
    )
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"missing weight shard .*{shard.name}"):
        load_adapter_runner(tmp_path, device="cpu", progress=False)


def test_missing_tensor_and_wrong_shape_are_errors_naming_the_tensor(tmp_path: Path) -> None:
    directory = tiny_checkpoint(tmp_path / "m", DREAM)
    state = load_file(str(directory / "model.safetensors"))
    from safetensors.torch import save_file

    name = "model.layers.1.mlp.up_proj.weight"
    save_file({k: v for k, v in state.items() if k != name}, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"tensor {name} .*config\.json"):
        load_adapter_runner(directory, device="cpu", progress=False)
    save_file({**state, name: state[name][:, :-1].contiguous()}, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"tensor {name} in .*model\.safetensors has shape"):
        load_adapter_runner(directory, device="cpu", progress=False)


# --- fill in the middle ----------------------------------------------------------------------------------------


def test_complete_returns_n_candidates_within_the_canvas(engine: LocalEngine) -> None:
    options = SampleOptions(steps=6, temperature=0.8, seed=3)
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=10, num_candidates=4, options=options)
    assert len(out) == 4
    assert all(0 <= c.tokens <= 10 and math.isfinite(c.score) and c.score <= 0 for c in out)
    assert all("<|mask|>" not in c.text and "<|mdm_mask|>" not in c.text for c in out)
    again = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=10, num_candidates=4, options=options)
    assert again == out  # same seed, same output


def test_a_canvas_longer_than_the_model_supports_is_clamped_like_local_engines(engine: LocalEngine) -> None:
    longest = engine.runner.max_canvas
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=longest + 50, num_candidates=2)
    assert len(out) == 2 and all(c.tokens <= longest for c in out)


def test_denoise_leaves_no_mask_and_never_proposes_special_tokens(engine: LocalEngine) -> None:
    runner = engine.runner
    tok = runner.tokenizer
    layout = build_layout(runner.family, tok, tok.encode(PREFIX), tok.encode(SUFFIX), 12)
    for steps in (1, 12):
        options = SampleOptions(steps=steps, threshold=1.0)
        tokens, logp = fill_layout(runner.model, layout, 3, options, runner.sampling, runner._banned)
        assert tokens.shape == (3, 12) and not (tokens == tok.mask_id).any()
        assert not torch.isin(tokens, engine.runner._banned).any() and (logp <= 0).all()


def test_different_seeds_give_different_sampled_candidates(engine: LocalEngine) -> None:
    def run(seed: int) -> list[str]:
        opts = SampleOptions(steps=4, temperature=1.0, seed=seed)
        return [c.text for c in engine.complete(PREFIX, SUFFIX, language="python", canvas_length=8,
                                                num_candidates=3, options=opts)]  # fmt: skip

    a, b = run(0), run(1)
    assert a[0] == b[0]  # the first candidate is greedy
    assert a[1:] != b[1:]


def test_prompt_formats_follow_each_family(engine: LocalEngine) -> None:
    tok = engine.runner.tokenizer
    pre, suf = tok.encode("a = 1\n"), tok.encode("\nb = 2\n")
    layout = build_layout(engine.runner.family, tok, pre, suf, 3)
    head = [tok.bos_id] if engine.runner.family in (DREAM, LLADA) else []
    tail = [tok.eos_id] if engine.runner.family is DREAM else []
    assert layout.tokens == [*head, *pre, *[tok.mask_id] * 3, *suf, *tail]
    assert layout.canvas_start == len(head) + len(pre)
    assert layout.shift == (engine.runner.family in (DREAM, OPEN_DCODER, CODA))


def test_shifted_logits_read_each_position_from_the_one_before() -> None:
    shifted = Layout(tokens=[0] * 10, canvas_start=4, canvas_len=3, shift=True)
    assert shifted.window == (3, 7) and [r + 3 for r in shifted.logit_rows()] == [3, 4, 5]
    at_start = Layout(tokens=[0] * 10, canvas_start=0, canvas_len=3, shift=True)  # Dream: position 0 keeps its own
    assert at_start.window == (0, 3) and at_start.logit_rows() == [0, 0, 1]
    plain = Layout(tokens=[0] * 10, canvas_start=4, canvas_len=3, shift=False)
    assert plain.window == (4, 7) and plain.logit_rows() == [0, 1, 2]


def test_context_budget_keeps_the_code_nearest_the_cursor() -> None:
    pre, suf = fit_context(list(range(100)), list(range(100, 160)), 60)  # the far ends go; half the room each
    assert pre == list(range(70, 100)) and suf == list(range(100, 130))
    assert fit_context(list(range(100)), [100, 101], 60) == (list(range(42, 100)), [100, 101])
    assert fit_context([1, 2], [3], 10) == ([1, 2], [3])


# --- reference samplers ----------------------------------------------------------------------------------------


def test_llada_schedule_matches_get_num_transfer_tokens() -> None:
    llada = AdapterSampling(schedule="llada", order="low_confidence")
    for masked, steps in [(10, 4), (32, 32), (7, 3), (5, 8)]:
        remaining, counts = torch.tensor([[masked]]), []
        for step in range(steps):
            k = int(commit_count(remaining, step, steps, llada))
            counts.append(k)
            remaining -= k
        base, rem = divmod(masked, steps)
        assert counts == [base + 1] * rem + [base] * (steps - rem)


def test_dream_schedule_matches_its_linspace_timesteps() -> None:
    dream, steps, masked = AdapterSampling(), 8, 32
    timesteps = torch.linspace(1, dream.eps, steps + 1)
    remaining = torch.tensor([[masked]])
    for i in range(steps):
        t, s = timesteps[i], timesteps[i + 1]
        expected = int(remaining.item() * (1 - s / t)) if i < steps - 1 else int(remaining.item())
        k = commit_count(remaining, i, steps, dream)
        assert int(k) in (expected, expected - 1, expected + 1)  # float32 linspace vs our float64 formula
        remaining -= k
    assert int(remaining) == 0


def test_commit_takes_the_best_scores_and_threshold_passers_only_where_allowed() -> None:
    canvas, masked, logp = torch.full((1, 5), -1), torch.ones(1, 5, dtype=torch.bool), torch.zeros(1, 5)
    tokens = torch.tensor([[10, 11, 12, 13, 14]])
    prob = torch.tensor([[0.2, 0.95, 0.3, 0.5, 0.99]])
    score = torch.tensor([[0.1, 0.0, 0.9, 0.5, 0.2]])
    allowed = torch.tensor([True, True, True, True, False])
    commit(canvas, masked, logp, (tokens, prob, score), torch.tensor([[1]]), 0.9, allowed)
    assert canvas.tolist() == [[-1, 11, 12, -1, -1]]  # best score (2) + above threshold (1); 4 not allowed
    assert masked.tolist() == [[True, False, False, True, True]]


def dream_top_p_logits(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Transcription of Dream's generation_utils.top_p_logits."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    remove = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1) > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_indices, remove)
    return logits.masked_fill(mask, -math.inf)


def test_top_p_keeps_dreams_nucleus_on_peaked_and_flat_distributions() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).log_softmax(-1)  # probs ~ .64 .24 .09 .03
    assert filter_logits(logits, None, 0.7).isfinite().tolist() == [[True, True, False, False]]
    assert filter_logits(logits, 1, None).isfinite().tolist() == [[True, False, False, False]]
    gen = torch.Generator().manual_seed(0)
    for scale in (0.3, 3.0, 12.0):  # flat (full sort path) to peaked (top-k probe path)
        logits = torch.randn(3, 5, 3000, generator=gen) * scale
        for p in (0.3, 0.9, 0.95):
            assert torch.equal(filter_logits(logits, None, p).isinf(), dream_top_p_logits(logits, p).isinf())


def test_llada_blocks_fill_left_to_right(engine: LocalEngine) -> None:
    assert blocks(10, 4, 6) == [(0, 4, 2), (4, 8, 2), (8, 10, 2)]
    if engine.runner.family is not LLADA:
        return
    tok = engine.runner.tokenizer
    layout = build_layout(LLADA, tok, tok.encode(PREFIX), tok.encode(SUFFIX), 8)
    one_step = replace(engine.runner.sampling, block_length=4)
    opts = SampleOptions(steps=2, threshold=1.0, early_exit=False)
    tokens, _ = fill_layout(engine.runner.model, layout, 1, opts, one_step, engine.runner._banned)
    assert not (tokens == tok.mask_id).any()


# --- approximate cache -----------------------------------------------------------------------------------------


def test_window_pass_against_a_fresh_cache_equals_the_full_forward(engine: LocalEngine) -> None:
    tok = engine.runner.tokenizer
    layout = build_layout(engine.runner.family, tok, tok.encode(PREFIX), tok.encode(SUFFIX), 9)
    seq = torch.tensor([layout.tokens])
    with torch.inference_mode():
        exact, ctx = full_pass(engine.runner.model, seq, layout, keep=True)
        torch.testing.assert_close(window_pass(engine.runner.model, seq, layout, ctx), exact, atol=1e-4, rtol=1e-4)


def test_approximate_cache_is_exact_at_refresh_steps_and_bounded_between(engine: LocalEngine) -> None:
    tok = engine.runner.tokenizer
    layout = build_layout(engine.runner.family, tok, tok.encode(PREFIX * 3), tok.encode(SUFFIX), 12)
    sampling = replace(engine.runner.sampling, refresh_every=3, block_length=None)
    drift = cache_drift(
        engine.runner.model, layout, SampleOptions(steps=9, threshold=1.0), sampling, banned=engine.runner._banned
    )
    refreshed = [d for d in drift if d.refreshed]
    stale = [d for d in drift if not d.refreshed]
    assert [d.step for d in refreshed] == [0, 3, 6]
    assert all(d.max_abs_diff == 0.0 and d.argmax_agreement == 1.0 for d in refreshed)
    assert max(d.max_abs_diff for d in stale) < min(d.logit_std for d in stale)  # under one logit std
    assert sum(d.argmax_agreement for d in stale) / len(stale) > 0.8


def test_refreshing_every_step_is_the_exact_sampler(engine: LocalEngine) -> None:
    tok = engine.runner.tokenizer
    layout = build_layout(engine.runner.family, tok, tok.encode(PREFIX), tok.encode(SUFFIX), 10)
    opts = SampleOptions(steps=5, temperature=0.7, seed=2)
    runner = engine.runner
    exact = fill_layout(runner.model, layout, 2, opts, replace(runner.sampling, refresh_every=0), runner._banned)
    every = fill_layout(runner.model, layout, 2, opts, replace(runner.sampling, refresh_every=1), runner._banned)
    assert torch.equal(exact[0], every[0])
