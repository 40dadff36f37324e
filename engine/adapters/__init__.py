"""Adapters for external open diffusion code models: Dream / Dream-Coder / DiffuCoder, Open-dCoder, LLaDA.

``load_adapter_runner(path)`` reads a Hugging Face-style checkpoint directory (``config.json``, safetensors
shards, ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) without ``transformers``, runs the network natively
in PyTorch (``engine.adapters.model``) and plugs it into the engine's one request path (``engine.runner``) with
each family's infilling prompt and reference sampler (``engine.adapters.sampler``), optionally with a
Fast-dLLM-style approximate context cache. ``engine.api.load_engine`` wraps it in a ``LocalEngine``; the server's
batch scheduler drives the same runner. Facts and sources: ``docs/external-models.md``.
"""

from engine.adapters.families import FAMILIES, ArchSpec, Family, detect_family
from engine.adapters.runner import AdapterRunner, is_external, load_adapter_runner
from engine.adapters.sampler import DREAM_SAMPLING, LLADA_SAMPLING, AdapterSampling

__all__ = [
    "DREAM_SAMPLING",
    "FAMILIES",
    "LLADA_SAMPLING",
    "AdapterRunner",
    "AdapterSampling",
    "ArchSpec",
    "Family",
    "detect_family",
    "is_external",
    "load_adapter_runner",
]
