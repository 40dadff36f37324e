"""Adapters for external open diffusion code models: Dream / Dream-Coder / DiffuCoder, Open-dCoder, LLaDA.

``load_adapter_engine(path)`` reads a Hugging Face-style checkpoint directory (``config.json``, safetensors
shards, ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) without ``transformers``, runs the network natively
in PyTorch (``engine.adapters.model``) and serves fill-in-the-middle requests through the CompletionEngine
protocol with each family's infilling prompt and reference sampler (``engine.adapters.sampler``), optionally with
a Fast-dLLM-style approximate context cache. Facts and sources: ``docs/external-models.md``.
"""

from engine.adapters.engine import AdapterEngine, is_external, load_adapter_engine
from engine.adapters.families import FAMILIES, ArchSpec, Family, detect_family
from engine.adapters.sampler import DREAM_SAMPLING, LLADA_SAMPLING, AdapterSampling

__all__ = [
    "DREAM_SAMPLING",
    "FAMILIES",
    "LLADA_SAMPLING",
    "AdapterEngine",
    "AdapterSampling",
    "ArchSpec",
    "Family",
    "detect_family",
    "is_external",
    "load_adapter_engine",
]
