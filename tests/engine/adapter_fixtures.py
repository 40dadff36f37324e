"""Checkpoint directories in the exact on-disk formats of the external families, for tests and benchmarks.

``save_external_checkpoint`` writes a ``DiffusionLM`` the way the real releases are laid out: ``config.json``
with the family's field names (``model_type``/``architectures`` as their reference code writes them), weights
under the family's tensor names (sharded with ``model.safetensors.index.json`` above a size limit), a
``tokenizer.json`` (or Dream's slow-tokenizer pair ``vocab.json`` + ``merges.txt``) and a
``tokenizer_config.json`` naming the special tokens with their real strings (``<|mask|>``, ``<|dlm_pad|>``,
``<|beginoftext|>``, ``<|endoftext|>`` for Dream; ``<|mdm_mask|>``, ``<|startoftext|>`` for LLaDA; ``<|mask|>``
after Qwen3's ``<think>`` tokens for CoDA).

``tiny_checkpoint`` adds a byte-level BPE trained on a few standard-library files and random weights, so a test
can load, complete and compare logits in well under a second per call.
"""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

from engine.adapters.families import CODA, DREAM, LLADA, OPEN_DCODER, ArchSpec, Family
from engine.adapters.model import DiffusionLM, randomize
from engine.adapters.tokenizer import qwen2_pipeline
from engine.adapters.weights import save_tensors

# Special tokens in id order after the learned vocabulary, as in the real tokenizers (names from their
# tokenizer_config.json files; the real ids are larger, only the order and strings matter here).
SPECIALS: dict[str, list[str]] = {
    "dream": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
    + ["<|beginoftext|>", "<|mask|>", "<|dlm_pad|>"],
    "open-dcoder": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>"]
    + ["<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|mask|>"],
    "llada": ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    + ["<|mdm_mask|>"],
    "coda": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
    + ["<think>", "</think>", "<|mask|>"],
    "a2d-qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>"]
    + ["<|fim_suffix|>", "<|mdm_mask|>"],
    "a2d-qwen3": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|mdm_mask|>"],
}
ROLES: dict[str, dict[str, str]] = {
    "dream": {"bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|dlm_pad|>"}
    | {"mask_token": "<|mask|>"},
    "open-dcoder": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<|mask|>"},
    "llada": {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    "coda": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "mask_token": "<|mask|>"},
    "a2d-qwen2": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<|mdm_mask|>"},
    "a2d-qwen3": {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<|mdm_mask|>"},
}
MASKS = {
    "dream": "<|mask|>",
    "open-dcoder": "<|mask|>",
    "llada": "<|mdm_mask|>",
    "coda": "<|mask|>",
    "a2d-qwen2": "<|mdm_mask|>",
    "a2d-qwen3": "<|mdm_mask|>",
}
# config.json's architectures and model_type as each release's code writes them.
QWEN_NAMES = {
    "dream": (["DreamModel"], "Dream"),
    "open-dcoder": (["Qwen2ForCausalLM"], "qwen2"),
    "coda": (["CoDALanguageModel"], "CoDA"),
    "a2d-qwen2": (["A2DQwen2LMHeadModel"], "a2d-qwen2"),
    "a2d-qwen3": (["A2DQwen3LMHeadModel"], "a2d-qwen3"),
}
CORPUS_FILES = ("textwrap.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py")


def train_code_bpe(family: Family, vocab_size: int = 512) -> Tokenizer:
    """A Qwen2-pipeline byte-level BPE trained on stdlib code, with the family's special tokens appended."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in CORPUS_FILES]
    tok = qwen2_pipeline(Tokenizer(models.BPE()))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, initial_alphabet=alphabet)
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS[family.name]])
    return tok


def tokenizer_config(family: Family, tok: Tokenizer) -> dict[str, Any]:
    decoder = {
        str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False}
        | {"single_word": False, "special": True}
        for t in SPECIALS[family.name]
    }
    return {"added_tokens_decoder": decoder, **ROLES[family.name], "model_max_length": 4096}


def config_json(family: Family, spec: ArchSpec, ids: dict[str, int | None]) -> dict[str, Any]:
    """config.json with the family's own field names."""
    if family is LLADA:
        return {
            "architectures": ["LLaDAModelLM"],
            "model_type": "llada",
            "activation_type": "silu",
            "alibi": False,
            "attention_layer_norm": False,
            "block_group_size": 1,
            "block_type": "llama",
            "d_model": spec.hidden_size,
            "embedding_size": spec.vocab_size,
            "eos_token_id": ids["eos"],
            "pad_token_id": ids["eos"],
            "include_bias": False,
            "include_qkv_bias": spec.qkv_bias,
            "input_emb_norm": spec.embed_scale != 1.0,
            "layer_norm_type": "rms",
            "mask_token_id": ids["mask"],
            "max_sequence_length": spec.max_positions,
            "mlp_hidden_size": spec.intermediate_size,
            "mlp_ratio": 4,
            "n_heads": spec.num_heads,
            "n_kv_heads": spec.num_kv_heads,
            "n_layers": spec.num_layers,
            "rms_norm_eps": spec.norm_eps,
            "rope": True,
            "rope_full_precision": True,
            "rope_theta": spec.rope_theta,
            "scale_logits": spec.logit_scale != 1.0,
            "vocab_size": spec.vocab_size,
            "weight_tying": spec.tie_embeddings,
            "torch_dtype": "bfloat16",
        }
    names = QWEN_NAMES[family.name]
    out = {
        "architectures": names[0],
        "model_type": names[1],
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_positions,
        "max_window_layers": spec.num_layers,
        "rms_norm_eps": spec.norm_eps,
        "rope_theta": spec.rope_theta,
        "rope_scaling": None,
        "sliding_window": None,
        "use_sliding_window": False,
        # CoDA's config says tied (CoDAConfig's default) while its weights carry their own lm_head.
        "tie_word_embeddings": spec.tie_embeddings or family.head_from_weights,
        "vocab_size": spec.vocab_size,
        "attention_dropout": 0.0,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "torch_dtype": "bfloat16",
    }
    if family.layout == "qwen3":
        out |= {"head_dim": spec.head_dim, "attention_bias": False}
    if family in (DREAM, CODA):
        out["mask_token_id"] = ids["mask"]
    return out


def write_tokenizer(directory: Path, family: Family, tok: Tokenizer, slow_files: bool) -> None:
    """tokenizer.json, or (slow_files) Dream's vocab.json + merges.txt; always tokenizer_config.json."""
    config = tokenizer_config(family, tok)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if not slow_files:
        tok.save(str(directory / "tokenizer.json"))
        return
    model = json.loads(tok.to_str())["model"]
    (directory / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def save_external_checkpoint(
    directory: str | Path,
    model: DiffusionLM,
    family: Family,
    tok: Tokenizer,
    *,
    slow_tokenizer_files: bool = False,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 15 * 2**20,
) -> Path:
    """Write model + tokenizer as the family's real releases lay them out."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    roles = ROLES[family.name]
    ids = {
        "bos": tok.token_to_id(roles.get("bos_token", "")),
        "eos": tok.token_to_id(roles["eos_token"]),
        "pad": tok.token_to_id(roles["pad_token"]),
        "mask": tok.token_to_id(MASKS[family.name]),
    }
    config = config_json(family, model.spec, ids)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_tokenizer(directory, family, tok, slow_tokenizer_files)
    names = family.tensor_names(model.spec)
    save_tensors(model, directory, names, dtype=dtype, max_shard_bytes=max_shard_bytes)
    return directory


def tiny_spec(family: Family, vocab_rows: int, **overrides: Any) -> ArchSpec:
    """Two layers, GQA (4 query heads over 2 kv heads), head_dim 16; Qwen2 biases or Qwen3 q/k norms; Open-dCoder and
    Tiny-A2D-Qwen3 tie embeddings; CoDA has its own head (its config says tied; see config_json)."""
    base = dict(
        vocab_size=vocab_rows,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        intermediate_size=128,
        norm_eps=1e-5 if family is LLADA else 1e-6,
        rope_theta=500000.0 if family is LLADA else 1000000.0,
        rope_linear_factor=1.0,
        max_positions=1024,
        qkv_bias=family.layout == "qwen2",
        tie_embeddings=family is OPEN_DCODER or (family.layout == "qwen3" and not family.head_from_weights),
        qk_norm=family.layout == "qwen3",
    )
    return ArchSpec(**(base | overrides))


@torch.no_grad()
def tiny_checkpoint(
    directory: str | Path, family: Family, *, seed: int = 0, slow_tokenizer_files: bool = False, **save: Any
) -> Path:
    """A tiny random model of `family` with a trained code tokenizer, saved in the family's real format."""
    tok = train_code_bpe(family)
    rows = 64 * math.ceil(tok.get_vocab_size() / 64)  # real releases pad the embedding past the tokenizer
    model = randomize(DiffusionLM(tiny_spec(family, rows)), seed)
    return save_external_checkpoint(directory, model, family, tok, slow_tokenizer_files=slow_tokenizer_files, **save)
