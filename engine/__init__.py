"""Diffill engine: tokenizer, masked-diffusion transformer, exact context cache, sampler, training, serving.

Import the submodules directly (``engine.model``, ``engine.sample``...); this package init stays empty so that
torch-free parts (``engine.tokenizer``, ``engine.errors``) import without loading torch.
"""
