"""Every Qwen-layout family's forward equals transformers' own Qwen2/Qwen3 forward with full bidirectional attention.

Each release is a Qwen2 or Qwen3 network run without the causal mask (Dream's ``modeling_dream.py`` and Open-dLLM's
``modeling_qwen2.py`` pass ``is_causal=False``; CoDA's ``modeling_coda.py`` is "adapted from ... qwen3"; dllm's
A2D models are ``transformers.Qwen2Model`` / ``Qwen3Model`` with a padding-only mask). So the reference is the
implementation itself: a tiny random ``Qwen2ForCausalLM`` / ``Qwen3ForCausalLM`` saved with ``save_pretrained``
(safetensors), laid out as the release is (config.json ``model_type`` / ``architectures`` and fields, tokenizer
files), loaded through our adapter, and compared with transformers' forward given an additive 4D mask of zeros
(attend everywhere), to 1e-4 in float32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from engine.adapters import load_adapter_runner
from engine.adapters.families import A2D_QWEN2, A2D_QWEN3, CODA, DREAM, OPEN_DCODER, Family
from tests.engine.adapter_fixtures import MASKS, QWEN_NAMES, train_code_bpe, write_tokenizer

transformers = pytest.importorskip("transformers")

# (family, tied embeddings as saved, slow tokenizer files): one case per release layout.
CASES = {
    "dream": (DREAM, False, False),
    "diffucoder": (DREAM, False, True),  # DiffuCoder / Dream-Coder ship vocab.json + merges.txt
    "open-dcoder": (OPEN_DCODER, True, False),
    "coda": (CODA, False, False),  # config says tied, the weights carry lm_head
    "a2d-qwen2": (A2D_QWEN2, False, False),
    "a2d-qwen3": (A2D_QWEN3, True, False),
}


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Every tensor matters (norm weights and biases too), activations stay in range."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def hf_release(directory: Path, family: Family, tied: bool, slow_tokenizer: bool) -> torch.nn.Module:
    """A tiny random transformers model saved as `family`'s release lays it out; returns the model."""
    tok = train_code_bpe(family)
    qwen3 = family.layout == "qwen3"
    config_cls = transformers.Qwen3Config if qwen3 else transformers.Qwen2Config
    model_cls = transformers.Qwen3ForCausalLM if qwen3 else transformers.Qwen2ForCausalLM
    config = config_cls(
        vocab_size=64 * math.ceil(tok.get_vocab_size() / 64),  # releases pad the embedding past the tokenizer
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=tied,
        attn_implementation="eager",
    )
    model = model_cls(config).eval()
    randomize_(model, seed=len(family.name))
    model.save_pretrained(directory, safe_serialization=True)
    saved = json.loads((directory / "config.json").read_text())
    saved["architectures"], saved["model_type"] = QWEN_NAMES[family.name]
    if family in (DREAM, CODA):
        saved["mask_token_id"] = tok.token_to_id(MASKS[family.name])
    if family.head_from_weights:
        saved["tie_word_embeddings"] = True  # CoDAConfig's default, though CoDALanguageModel saves lm_head
    (directory / "config.json").write_text(json.dumps(saved, indent=2))
    write_tokenizer(directory, family, tok, slow_files=slow_tokenizer)
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_transformers_with_full_attention(tmp_path: Path, case: str) -> None:
    family, tied, slow = CASES[case]
    reference = hf_release(tmp_path, family, tied, slow)
    runner = load_adapter_runner(tmp_path, device="cpu", progress=False)
    assert runner.family is family and runner.model.spec.qk_norm == (family.layout == "qwen3")
    assert (runner.model.lm_head.weight is runner.model.embed.weight) == tied  # CoDA: its own head, as saved
    ids = torch.randint(0, runner.tokenizer.vocab_size, (2, 21), generator=torch.Generator().manual_seed(0))
    everywhere = torch.zeros(2, 1, ids.shape[1], ids.shape[1])  # additive 4D mask: every position attends to all
    with torch.inference_mode():
        want = reference(ids, attention_mask=everywhere).logits
        causal = reference(ids).logits
        got = runner.model(ids)
    assert not torch.allclose(want, causal, atol=1e-3)  # the reference really is bidirectional
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
