"""Adapters for external open diffusion code models: Dream / Dream-Coder / DiffuCoder, Open-dCoder, CoDA, Tiny-A2D,
LLaDA.

``load_adapter_runner(path)`` reads a Hugging Face-style checkpoint directory (``config.json``, safetensors
shards, ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) without ``transformers``, runs the network natively
in PyTorch (``engine.adapters.model``) and plugs it into the engine's one request path (``engine.runner``) with
each family's infilling prompt and sampling preset (``engine.adapters.presets``), optionally with a
Fast-dLLM-style approximate context cache. ``engine.api.load_engine`` wraps it in a ``LocalEngine``; the server's
batch scheduler drives the same runner. Facts and sources: ``docs/external-models.md``.
"""

from engine.adapters.families import FAMILIES, ArchSpec, Family, detect_family
from engine.adapters.presets import DREAM_SAMPLING, LLADA_SAMPLING, Preset, family_preset
from engine.adapters.runner import AdapterRunner, is_external, load_adapter_runner
from engine.adapters.sampler import AdapterSampling

__all__ = [
    "DREAM_SAMPLING",
    "FAMILIES",
    "LLADA_SAMPLING",
    "AdapterRunner",
    "AdapterSampling",
    "ArchSpec",
    "Family",
    "Preset",
    "detect_family",
    "family_preset",
    "is_external",
    "load_adapter_runner",
]
