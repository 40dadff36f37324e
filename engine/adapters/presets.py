"""Per-family sampling presets: the reference sampling each release was evaluated with, and a fast one for typing.

A preset is the one place that decides how a released coder samples a request. ``fast`` keeps the request's step
budget, threshold and temperature (the editor's settings: a few steps, committing every confident position) with
the family's own ordering; ``reference`` replaces them with what the authors evaluated with:

* Dream / Dream-Coder / DiffuCoder: one token per step (steps = canvas length), ``alg="entropy"``, top-p 0.95,
  temperature 0.2 (Dream README's example; DiffuCoder's card uses 0.4 and Dream-Coder's 0.1 -- one family, one
  value; the first candidate is greedy either way);
* Open-dCoder: ``p2`` path planning, 64 steps, temperature 0.6, top-p 0.95 (Open-dLLM ``eval/eval_infill/run_eval.sh``,
  the command behind its HumanEval-Infilling and SantaCoder-FIM numbers);
* CoDA: Dream's sampler as its serving stack runs it (``serving/fast-api``: STEPS 128 for MAX_TOKENS 256, i.e. two
  tokens per step, ``ALG=entropy``, ``ALG_TEMP=0.1``, temperature 0);
* Tiny-A2D: dllm's MDLM sampler as its ``examples/a2d/mdlm/eval.sh`` runs it (steps = tokens, one block, low-confidence
  remasking, temperature 0);
* LLaDA: ``generate.py``'s defaults (steps = tokens, blocks of 32, low-confidence remasking, temperature 0).

``threshold=1`` in every reference preset: a step commits exactly the reference count. Sources and numbers:
``docs/external-models.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from engine.adapters.families import A2D_QWEN2, A2D_QWEN3, CODA, DREAM, LLADA, OPEN_DCODER, Family
from engine.adapters.sampler import AdapterSampling
from engine.contract import DEFAULT_PRESET, SampleOptions, check_preset


@dataclass(frozen=True)
class Preset:
    """The sampler settings (``sampling``) and what replaces the request's ``SampleOptions`` (None: keep it)."""

    name: str
    sampling: AdapterSampling
    tokens_per_step: int | None = None  # steps = ceil(canvas / tokens_per_step)
    steps: int | None = None  # a fixed step budget (Open-dCoder's 64)
    threshold: float | None = None
    temperature: float | None = None

    def options(self, requested: SampleOptions, canvas: int) -> SampleOptions:
        """The options a request of `canvas` positions runs with under this preset (seed and early exit kept)."""
        steps = self.steps or requested.steps
        if self.tokens_per_step is not None:
            steps = math.ceil(canvas / self.tokens_per_step)
        threshold = requested.threshold if self.threshold is None else self.threshold
        temperature = requested.temperature if self.temperature is None else self.temperature
        return replace(requested, steps=max(1, steps), threshold=threshold, temperature=temperature)


DREAM_SAMPLING = AdapterSampling(order="entropy", schedule="dream", top_p=0.95)
LLADA_SAMPLING = AdapterSampling(order="low_confidence", schedule="llada", block_length=32)
MDLM_SAMPLING = AdapterSampling(order="low_confidence", schedule="llada")  # dllm's MDLM: one block

_FAST = {
    "dream": DREAM_SAMPLING,
    "open-dcoder": DREAM_SAMPLING,
    "coda": DREAM_SAMPLING,
    "a2d-qwen2": MDLM_SAMPLING,
    "a2d-qwen3": MDLM_SAMPLING,
    "llada": LLADA_SAMPLING,
}
_REFERENCE = {
    DREAM.name: Preset("reference", DREAM_SAMPLING, tokens_per_step=1, threshold=1.0, temperature=0.2),
    OPEN_DCODER.name: Preset(
        "reference",
        AdapterSampling(order="maskgit_plus", schedule="p2", top_p=0.95),
        steps=64,
        threshold=1.0,
        temperature=0.6,
    ),
    CODA.name: Preset(
        "reference", AdapterSampling(order="entropy", alg_temp=0.1), tokens_per_step=2, threshold=1.0, temperature=0.0
    ),
    A2D_QWEN2.name: Preset("reference", MDLM_SAMPLING, tokens_per_step=1, threshold=1.0, temperature=0.0),
    A2D_QWEN3.name: Preset("reference", MDLM_SAMPLING, tokens_per_step=1, threshold=1.0, temperature=0.0),
    LLADA.name: Preset("reference", LLADA_SAMPLING, tokens_per_step=1, threshold=1.0, temperature=0.0),
}


def family_preset(family: Family, name: str = DEFAULT_PRESET) -> Preset:
    """The family's preset called `name` ("fast" or "reference"); ValueError for any other name."""
    if check_preset(name) == "reference":
        return _REFERENCE[family.name]
    return Preset("fast", _FAST[family.name])
