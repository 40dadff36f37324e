"""Errors the engine raises on bad input, each naming the file or value at fault."""

from __future__ import annotations


class DiffillError(Exception):
    """Base class for errors that are the user's input, not a bug."""


class CheckpointError(DiffillError):
    """A checkpoint directory, weight file, config or tokenizer is missing, truncated or corrupt."""
