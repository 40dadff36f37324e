"""Tokenizers of external checkpoints, read with the ``tokenizers`` library alone (no ``transformers``).

A checkpoint ships either ``tokenizer.json`` (LLaDA, most Qwen2 exports) or the slow-tokenizer pair
``vocab.json`` + ``merges.txt`` (Dream's ``tokenization_dream.py`` is a Qwen2 byte-level BPE). For the pair we
rebuild the Qwen2 pipeline: NFC normalisation, Qwen2's split regex, byte-level BPE, byte-level decoding; added
tokens come from ``tokenizer_config.json``'s ``added_tokens_decoder`` (or ``added_tokens.json``) and must land
on their stated ids.

Special roles come from ``tokenizer_config.json`` (``mask_token``, ``bos_token``, ``eos_token``, ``pad_token``,
strings or ``{"content": ...}`` objects), then ``config.json`` (``mask_token_id``, ``bos_token_id``,
``eos_token_id``), then the family's known names (``<|mask|>`` for Dream, ``<|mdm_mask|>`` for LLaDA).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from engine.adapters.families import Family
from engine.errors import CheckpointError

TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
# The split pattern of Qwen2's tokenizer.json (tiktoken cl100k style, single digits).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt tokenizer file {path}: {e}") from e


def _content(token: Any) -> str | None:
    """A special token entry of tokenizer_config.json: a string, or an AddedToken dict with "content"."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def qwen2_pipeline(tok: Tokenizer) -> Tokenizer:
    """Qwen2's stages around a BPE model: NFC, the split regex, byte-level mapping and decoding."""
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def qwen2_bpe(directory: Path) -> Tokenizer:
    """The Qwen2 byte-level BPE from vocab.json + merges.txt, as its tokenizer.json would describe it."""
    return qwen2_pipeline(Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt"))))


def added_tokens(directory: Path, config: dict[str, Any]) -> dict[int, tuple[str, bool]]:
    """id -> (content, special) from tokenizer_config.json's added_tokens_decoder, else added_tokens.json."""
    decoder = config.get("added_tokens_decoder") or {}
    out = {int(i): (entry["content"], bool(entry.get("special", True))) for i, entry in decoder.items()}
    extra = directory / "added_tokens.json"
    if not out and extra.exists():
        out = {int(i): (content, True) for content, i in _read_json(extra).items()}
    return out


def load_backend(directory: Path, config: dict[str, Any]) -> Tokenizer:
    path = directory / TOKENIZER_NAME
    if path.exists():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as e:  # the tokenizers library raises a plain Exception on malformed files
            raise CheckpointError(f"corrupt tokenizer file {path}: {e}") from e
    if not (directory / "vocab.json").exists() or not (directory / "merges.txt").exists():
        raise CheckpointError(f"no tokenizer in {directory}: expected {TOKENIZER_NAME} or vocab.json + merges.txt")
    tok = qwen2_bpe(directory)
    for token_id, (content, special) in sorted(added_tokens(directory, config).items()):
        if tok.token_to_id(content) is None:
            tok.add_tokens([AddedToken(content, special=special, normalized=False)])
        if tok.token_to_id(content) != token_id:
            raise CheckpointError(
                f"added token {content!r} should have id {token_id} ({directory / TOKENIZER_CONFIG_NAME}) but "
                f"vocab.json + added tokens give it id {tok.token_to_id(content)}"
            )
    return tok


@dataclass
class AdapterTokenizer:
    """encode/decode plus the ids the sampler needs. Plain text is encoded without adding special tokens."""

    backend: Tokenizer
    mask_id: int
    eos_id: int
    bos_id: int | None
    end_ids: frozenset[int]  # a middle ends at the first of these
    special_ids: frozenset[int]  # never predicted inside a middle (end ids excepted)
    source: str = "<memory>"

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True)

    @classmethod
    def load(cls, directory: str | Path, family: Family, model_config: dict[str, Any]) -> AdapterTokenizer:
        directory = Path(directory)
        config_path = directory / TOKENIZER_CONFIG_NAME
        config = _read_json(config_path) if config_path.exists() else {}
        backend = load_backend(directory, config)
        where = f"{config_path.name} / config.json in {directory}"

        def role(key: str, config_key: str, fallbacks: Sequence[str]) -> int | None:
            content = _content(config.get(key))
            if content is not None and backend.token_to_id(content) is not None:
                return backend.token_to_id(content)
            if isinstance(model_config.get(config_key), int):
                return int(model_config[config_key])
            return next((backend.token_to_id(n) for n in fallbacks if backend.token_to_id(n) is not None), None)

        mask_id = role("mask_token", "mask_token_id", family.mask_names)
        if mask_id is None:
            raise CheckpointError(f"no mask token in {where}: tried mask_token, mask_token_id, {family.mask_names}")
        eos_id = role("eos_token", "eos_token_id", ("<|endoftext|>",))
        if eos_id is None:
            raise CheckpointError(f"no eos token in {where}")
        bos_id = role("bos_token", "bos_token_id", ()) if family.bos_in_prompt else None
        ends = {eos_id} | {i for n in family.end_names if (i := backend.token_to_id(n)) is not None}
        pad = _content(config.get("pad_token"))
        if pad is not None and backend.token_to_id(pad) is not None:
            ends.add(backend.token_to_id(pad))
        special = {i for i, t in backend.get_added_tokens_decoder().items() if t.special}
        special |= {i for i, (_, is_special) in added_tokens(directory, config).items() if is_special}
        special |= {mask_id} | ({bos_id} if bos_id is not None else set())
        return cls(backend, mask_id, eos_id, bos_id, frozenset(ends), frozenset(special - ends), str(directory))
