"""Which external diffusion coder a checkpoint directory holds, and its architecture in one frozen spec.

Detection reads ``config.json``: ``model_type`` and ``architectures`` as the reference implementations write
them (see ``docs/external-models.md`` for sources):

* ``"Dream"`` / ``DreamModel``: Dream-v0, Dream-Coder-v0, DiffuCoder (Qwen2 layout, Dream's ``modeling_dream.py``);
* ``"qwen2"`` / ``Qwen2ForCausalLM``: Open-dCoder (a Qwen2.5-Coder checkpoint trained as a masked diffusion model
  and run non-causally);
* ``"CoDA"`` / ``CoDALanguageModel``: Salesforce CoDA-1.7B (Qwen3 layout: per-head q/k RMSNorm, no biases);
* ``"a2d-qwen2"`` / ``"a2d-qwen3"`` (``A2DQwen2LMHeadModel`` / ``A2DQwen3LMHeadModel``): dllm-hub's Tiny-A2D
  (Qwen2.5-Coder-0.5B / Qwen3-0.6B adapted to masked diffusion, LLaDA-style sampler, no logit shift);
* ``"llada"`` / ``LLaDAModelLM``: LLaDA-8B (``modeling_llada.py``, OLMo-style tensor names).

All are the same computation: pre-norm blocks, RMSNorm, rotary positions (rotate-half), SwiGLU, grouped-query
attention with full bidirectional attention (no mask), Qwen3 adding an RMSNorm over each head's queries and keys
before the rotation. They differ in tensor names, q/k/v biases, tied embeddings, rotary base, and whether logits
are *shifted*: Dream, Open-dCoder and CoDA keep the alignment of the autoregressive model they were adapted from,
so the token at position i is read from the logits at i - 1. ``ArchSpec`` carries the numbers; ``Family`` carries
the rest (names, shift, prompt format, context as trained); ``engine.adapters.presets`` the sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.checkpoint import CONFIG_NAME
from engine.errors import CheckpointError

# Module parameter name (our blocks) -> checkpoint tensor name, per layer ("{}" = layer index) and global.
QWEN2_LAYER = {
    "attn_norm.weight": "model.layers.{}.input_layernorm.weight",
    "attn.q.weight": "model.layers.{}.self_attn.q_proj.weight",
    "attn.q.bias": "model.layers.{}.self_attn.q_proj.bias",
    "attn.k.weight": "model.layers.{}.self_attn.k_proj.weight",
    "attn.k.bias": "model.layers.{}.self_attn.k_proj.bias",
    "attn.v.weight": "model.layers.{}.self_attn.v_proj.weight",
    "attn.v.bias": "model.layers.{}.self_attn.v_proj.bias",
    "attn.o.weight": "model.layers.{}.self_attn.o_proj.weight",
    "mlp_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "mlp.gate.weight": "model.layers.{}.mlp.gate_proj.weight",
    "mlp.up.weight": "model.layers.{}.mlp.up_proj.weight",
    "mlp.down.weight": "model.layers.{}.mlp.down_proj.weight",
}
QWEN2_GLOBAL = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
QWEN2_HEAD = "lm_head.weight"
# Qwen3 = Qwen2's names, no biases, plus an RMSNorm over head_dim for queries and keys (modeling_qwen3.py).
QWEN3_LAYER = QWEN2_LAYER | {
    "attn.q_norm.weight": "model.layers.{}.self_attn.q_norm.weight",
    "attn.k_norm.weight": "model.layers.{}.self_attn.k_norm.weight",
}

# LLaDA's "llama" block: ff_proj is the gated branch (act(ff_proj(x)) * up_proj(x)), ff_out the down projection.
LLADA_LAYER = {
    "attn_norm.weight": "model.transformer.blocks.{}.attn_norm.weight",
    "attn.q.weight": "model.transformer.blocks.{}.q_proj.weight",
    "attn.q.bias": "model.transformer.blocks.{}.q_proj.bias",
    "attn.k.weight": "model.transformer.blocks.{}.k_proj.weight",
    "attn.k.bias": "model.transformer.blocks.{}.k_proj.bias",
    "attn.v.weight": "model.transformer.blocks.{}.v_proj.weight",
    "attn.v.bias": "model.transformer.blocks.{}.v_proj.bias",
    "attn.o.weight": "model.transformer.blocks.{}.attn_out.weight",
    "mlp_norm.weight": "model.transformer.blocks.{}.ff_norm.weight",
    "mlp.gate.weight": "model.transformer.blocks.{}.ff_proj.weight",
    "mlp.up.weight": "model.transformer.blocks.{}.up_proj.weight",
    "mlp.down.weight": "model.transformer.blocks.{}.ff_out.weight",
}
LLADA_GLOBAL = {"embed.weight": "model.transformer.wte.weight", "norm.weight": "model.transformer.ln_f.weight"}
LLADA_HEAD = "model.transformer.ff_out.weight"


@dataclass(frozen=True)
class ArchSpec:
    """The numbers that define the network; identical meaning across families."""

    vocab_size: int  # rows of the embedding and of the output head
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float
    rope_linear_factor: float  # positions are divided by it ("linear" rope_scaling); 1.0 = none
    max_positions: int
    qkv_bias: bool
    tie_embeddings: bool
    embed_scale: float = 1.0  # LLaDA input_emb_norm multiplies embeddings by sqrt(d_model)
    logit_scale: float = 1.0  # LLaDA scale_logits multiplies logits by 1/sqrt(d_model)
    qk_norm: bool = False  # Qwen3: RMSNorm over each head's queries and keys before the rotation

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim ({self.head_dim}) must be even for rotary embeddings")


@dataclass(frozen=True)
class Family:
    name: str  # "dream", "open-dcoder", "coda", "a2d-qwen2", "a2d-qwen3", "llada"
    model_types: frozenset[str]  # lower-cased config.json model_type values
    architectures: frozenset[str]  # config.json architectures entries
    shift_logits: bool  # token i is predicted by the logits at position i - 1 (Dream, Open-dCoder, CoDA)
    layer_names: dict[str, str]
    global_names: dict[str, str]
    head_name: str
    mask_names: tuple[str, ...]  # mask token strings to try when tokenizer_config.json names none
    end_names: tuple[str, ...]  # tokens that end a middle (eos and padding the model fills a canvas with)
    bos_in_prompt: bool  # the infilling prompt starts with the tokenizer's bos token
    eos_after_suffix: bool  # the infilling prompt ends with eos (DreamOn's format)
    # Prompt + canvas tokens the release was trained on (its context as trained); None: the config's positions.
    trained_context: int | None = None
    layout: str = "qwen2"  # how config.json reads: "qwen2", "qwen3" (q/k norms, no biases) or "llada"
    # The output head is lm_head.weight when the weight files hold it, the embedding only otherwise (CoDA's
    # config says tie_word_embeddings but CoDALanguageModel builds and saves its own lm_head).
    head_from_weights: bool = False

    def tensor_names(self, spec: ArchSpec) -> dict[str, str]:
        """Our module parameter name -> checkpoint tensor name, for every parameter the model owns."""
        layer = {k: v for k, v in self.layer_names.items() if spec.qkv_bias or not k.endswith(".bias")}
        names = dict(self.global_names)
        for i in range(spec.num_layers):
            names.update({f"layers.{i}.{ours}": theirs.format(i) for ours, theirs in layer.items()})
        if not spec.tie_embeddings:  # tied: the head is the embedding, stored once
            names["lm_head.weight"] = self.head_name
        return names


DREAM = Family(
    name="dream",
    model_types=frozenset({"dream"}),
    architectures=frozenset({"DreamModel"}),
    shift_logits=True,
    layer_names=QWEN2_LAYER,
    global_names=QWEN2_GLOBAL,
    head_name=QWEN2_HEAD,
    mask_names=("<|mask|>",),
    end_names=("<|endoftext|>", "<|dlm_pad|>", "<|im_end|>"),
    bos_in_prompt=True,
    eos_after_suffix=True,
    trained_context=2048,  # Dream README: 2,048 tokens, input and output together
)
OPEN_DCODER = Family(
    name="open-dcoder",
    model_types=frozenset({"qwen2"}),
    architectures=frozenset({"Qwen2ForCausalLM"}),
    shift_logits=True,
    layer_names=QWEN2_LAYER,
    global_names=QWEN2_GLOBAL,
    head_name=QWEN2_HEAD,
    # Open-dLLM tasks/train_torch.py adds "<M>" when the tokenizer has no mask token; the others are fallbacks.
    mask_names=("<M>", "<|mask|>", "[MASK]"),
    end_names=("<|endoftext|>", "<|im_end|>"),
    bos_in_prompt=False,
    eos_after_suffix=False,
    trained_context=4096,  # configs/pretrain/qwen2_5_coder_500M.yaml: max_seq_len 4096
)
CODA = Family(
    name="coda",
    model_types=frozenset({"coda"}),
    architectures=frozenset({"CoDALanguageModel"}),
    shift_logits=True,  # trained with logits[..., :-1] against input_ids[..., 1:]; sampled with Dream's mixin
    layer_names=QWEN3_LAYER,
    global_names=QWEN2_GLOBAL,
    head_name=QWEN2_HEAD,
    mask_names=("<|mask|>",),
    end_names=("<|endoftext|>", "<|im_end|>"),
    bos_in_prompt=False,
    eos_after_suffix=False,
    layout="qwen3",
    head_from_weights=True,
)
A2D_QWEN2 = Family(
    name="a2d-qwen2",
    model_types=frozenset({"a2d-qwen2"}),
    architectures=frozenset({"A2DQwen2LMHeadModel"}),
    shift_logits=False,  # dllm's MDLM sampler runs with right_shift_logits=False
    layer_names=QWEN2_LAYER,
    global_names=QWEN2_GLOBAL,
    head_name=QWEN2_HEAD,
    mask_names=("<|mdm_mask|>", "<|mask|>"),
    end_names=("<|endoftext|>", "<|im_end|>"),
    bos_in_prompt=False,
    eos_after_suffix=False,
)
A2D_QWEN3 = Family(
    name="a2d-qwen3",
    model_types=frozenset({"a2d-qwen3"}),
    architectures=frozenset({"A2DQwen3LMHeadModel"}),
    shift_logits=False,
    layer_names=QWEN3_LAYER,
    global_names=QWEN2_GLOBAL,
    head_name=QWEN2_HEAD,
    mask_names=("<|mdm_mask|>", "<|mask|>"),
    end_names=("<|endoftext|>", "<|im_end|>"),
    bos_in_prompt=False,
    eos_after_suffix=False,
    layout="qwen3",
)
LLADA = Family(
    name="llada",
    model_types=frozenset({"llada"}),
    architectures=frozenset({"LLaDAModelLM"}),
    shift_logits=False,
    layer_names=LLADA_LAYER,
    global_names=LLADA_GLOBAL,
    head_name=LLADA_HEAD,
    mask_names=("<|mdm_mask|>",),
    end_names=("<|endoftext|>", "<|eot_id|>"),
    bos_in_prompt=True,
    eos_after_suffix=False,
    trained_context=4096,  # LLaDA paper: pre-trained with a fixed length of 4,096 tokens
    layout="llada",
)
FAMILIES: tuple[Family, ...] = (DREAM, OPEN_DCODER, CODA, A2D_QWEN2, A2D_QWEN3, LLADA)


def detect_family(config: dict[str, Any], path: Path | str = CONFIG_NAME) -> Family:
    """The family named by model_type or architectures; CheckpointError naming the file and value otherwise."""
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    for family in FAMILIES:
        if model_type in family.model_types or family.architectures.intersection(architectures):
            return family
    supported = ", ".join(f"{sorted(f.model_types)[0]!r}" for f in FAMILIES)
    raise CheckpointError(
        f"unsupported architecture in {path}: model_type={config.get('model_type')!r}, "
        f"architectures={config.get('architectures')!r}; supported model types: 'diffill', {supported}"
    )


def _require(config: dict[str, Any], key: str, path: Path) -> Any:
    if config.get(key) is None:
        raise CheckpointError(f"{path} lacks the field {key!r}")
    return config[key]


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """transformers >= 5 writes the rotary settings under "rope_parameters"; earlier releases at the top level."""
    return config.get("rope_parameters") or {}


def _rope_theta(config: dict[str, Any]) -> float:
    return float(config.get("rope_theta") or _rope(config).get("rope_theta") or 10000.0)


def _rope_linear_factor(config: dict[str, Any], path: Path) -> float:
    scaling = config.get("rope_scaling") or _rope(config)
    if not scaling:
        return 1.0
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return 1.0
    if kind == "linear":
        return float(scaling["factor"])
    raise CheckpointError(f"{path}: rope_scaling type {kind!r} is not supported (only none and 'linear')")


def qwen2_spec(config: dict[str, Any], path: Path, qwen3: bool = False) -> ArchSpec:
    """Qwen2Config / Qwen3Config field names. Qwen2 always has q/k/v biases (no o_proj bias); Qwen3 has q/k norms
    and biases only with attention_bias, which no release sets (and which would add an o_proj bias)."""
    if config.get("use_sliding_window"):
        raise CheckpointError(f"{path}: use_sliding_window=true is not supported (full attention only)")
    if qwen3 and config.get("attention_bias"):
        raise CheckpointError(f"{path}: attention_bias=true is not supported for the Qwen3 layout")
    hidden, heads = int(_require(config, "hidden_size", path)), int(_require(config, "num_attention_heads", path))
    return ArchSpec(
        vocab_size=int(_require(config, "vocab_size", path)),
        hidden_size=hidden,
        num_layers=int(_require(config, "num_hidden_layers", path)),
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate_size=int(_require(config, "intermediate_size", path)),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_theta=_rope_theta(config),
        rope_linear_factor=_rope_linear_factor(config, path),
        max_positions=int(config.get("max_position_embeddings", 32768)),
        qkv_bias=not qwen3 and bool(config.get("attention_bias", True)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        qk_norm=qwen3,
    )


def llada_spec(config: dict[str, Any], path: Path) -> ArchSpec:
    """LLaDA: OLMo-style field names (d_model, n_layers, mlp_hidden_size, weight_tying ...)."""
    checks = {
        "block_type": ("llama",),
        "layer_norm_type": ("rms",),
        "activation_type": ("silu",),
        "alibi": (False, None),
        "rope": (True, None),
        "include_bias": (False, None),
        "attention_layer_norm": (False, None),
    }
    for key, allowed in checks.items():
        if config.get(key, allowed[0]) not in allowed:
            raise CheckpointError(f"{path}: {key}={config.get(key)!r} is not supported (expected {allowed[0]!r})")
    d_model, heads = int(_require(config, "d_model", path)), int(_require(config, "n_heads", path))
    kv_heads = 1 if config.get("multi_query_attention") else int(config.get("n_kv_heads") or heads)
    hidden = config.get("mlp_hidden_size") or int(config.get("mlp_ratio", 4)) * d_model
    return ArchSpec(
        vocab_size=int(config.get("embedding_size") or _require(config, "vocab_size", path)),
        hidden_size=d_model,
        num_layers=int(_require(config, "n_layers", path)),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=d_model // heads,
        intermediate_size=int(hidden),
        norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        rope_linear_factor=1.0,
        max_positions=int(config.get("max_sequence_length", 4096)),
        qkv_bias=bool(config.get("include_qkv_bias", False)),
        tie_embeddings=bool(config.get("weight_tying", False)),
        embed_scale=math.sqrt(d_model) if config.get("input_emb_norm") else 1.0,
        logit_scale=1.0 / math.sqrt(d_model) if config.get("scale_logits") else 1.0,
    )


def arch_spec(family: Family, config: dict[str, Any], path: Path) -> ArchSpec:
    try:
        if family.layout == "llada":
            return llada_spec(config, path)
        return qwen2_spec(config, path, qwen3=family.layout == "qwen3")
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"invalid model config {path}: {e}") from e
