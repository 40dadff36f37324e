"""Token layout of a FIM sequence, shared by training and inference so the two can never disagree.

    context = [<lang:X>, chunks..., <fim_suffix>, suffix..., <fim_prefix>, prefix..., <fim_middle>]
    canvas  = L positions at the cursor: middle tokens, then <eos> up to L (training target)

Suffix first, prefix last: typing at the cursor only appends to the prefix, so consecutive requests share a long
token prefix of the context and the cache is extended rather than rebuilt. When a context is over budget the far
end of the suffix goes first, then the far start of the prefix (the text nearest the cursor matters most).

Cross-file chunks (text from other files of the project, docs/context.md) come before the current file, each as
plain text under a path comment (``# path: pkg/mod.py``): no new special tokens, so the tokenizer and weights of a
model trained without chunks stay valid. Placed first, unchanged chunks stay a common token prefix of consecutive
requests -- moving the cursor elsewhere in the file reuses their cached keys/values. At inference they get the room
the text leaves (``fim`` sized the window to leave it; over budget whole chunks go first, from the front: the last
are the most relevant, as with llama.cpp's ``input_extra``); in training they get a share of the row first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.contract import ContextChunk
from engine.tokenizer import CodeTokenizer

# Tags around the text: lang, fim_suffix, fim_prefix, fim_middle.
N_CONTEXT_TAGS = 4
# Canvas lengths used in training, so every length an editor asks for (short single-line, long multi-line) has
# been seen; the target is padded with <eos> to the drawn length.
TRAIN_CANVAS_LENGTHS = (16, 24, 32, 48, 64)


def fit_context(prefix: Sequence[int], suffix: Sequence[int], room: int) -> tuple[list[int], list[int]]:
    """Trim prefix/suffix token lists to `room` tokens together: the far end of the suffix goes first, then the far
    start of the prefix. The engines' safety net for a context over their model's limit (every family uses it;
    ``fim`` decides the window around the cursor, so inside the editor path nothing is cut here)."""
    if room < 1:
        raise ValueError(f"context room {room} leaves no room for text")
    # Keep at least half the room for the prefix when both are long: it is the stronger signal.
    suffix_room = max(room - len(prefix), room // 2)
    suffix = list(suffix[: max(suffix_room, 0)])
    prefix_room = room - len(suffix)
    prefix = list(prefix[len(prefix) - prefix_room :]) if len(prefix) > prefix_room else list(prefix)
    return prefix, suffix


# Languages whose line comment is "//" (the path header of a chunk is a comment of the request's language).
_SLASH_COMMENT = frozenset({"javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp"})
# Share of a training row's context the chunks may take (the text gets the rest): at inference the language server
# reserves ``crossFile.maxTokens`` (512) of the embedded model's 2,044 text tokens, about a quarter.
TRAIN_CHUNK_SHARE = 1 / 3


def chunk_text(path: str, text: str, language: str) -> str:
    """One chunk as our model reads it: a path comment in the request's language, then the text, ending a line."""
    marker = "//" if language in _SLASH_COMMENT else "#"
    return f"{marker} path: {path}\n{text}" + ("" if text.endswith("\n") else "\n")


def encode_chunks(encode: Callable[[str], list[int]], chunks: Iterable[ContextChunk], language: str) -> list[list[int]]:
    return [encode(chunk_text(c.path, c.text, language)) for c in chunks]


def fit_chunks(chunks: Sequence[Sequence[int]], room: int) -> list[int]:
    """The chunks (least relevant first) that fit in `room` tokens, concatenated in order: whole chunks are kept from
    the last (most relevant) backwards, so a window that grows by a token changes the kept set only at a chunk's
    boundary (the cached prefix survives typing). When not even the last fits, its head is kept (path and
    signature come first)."""
    room = max(room, 0)
    kept: list[Sequence[int]] = []
    used = 0
    for chunk in reversed(chunks):
        if used + len(chunk) > room:
            break
        kept.append(chunk)
        used += len(chunk)
    if not kept and chunks:
        return list(chunks[-1][:room])
    return [t for chunk in reversed(kept) for t in chunk]


def context_tokens(
    tok: CodeTokenizer,
    prefix: Sequence[int],
    suffix: Sequence[int],
    language: str,
    budget: int,
    chunks: Sequence[Sequence[int]] = (),
    chunk_room: int | None = None,
) -> list[int]:
    """The context of `budget` tokens at most. `chunks`: encoded cross-file chunks (``encode_chunks``), least
    relevant first. Inference (`chunk_room` None): the text first, the chunks the room it leaves. Training: the
    chunks first, up to `chunk_room`, the text the rest."""
    room = budget - N_CONTEXT_TAGS
    if chunk_room is None:
        prefix, suffix = fit_context(prefix, suffix, room)
        extra = fit_chunks(chunks, room - len(prefix) - len(suffix))
    else:
        extra = fit_chunks(chunks, min(chunk_room, room - 1))
        prefix, suffix = fit_context(prefix, suffix, room - len(extra))
    return [
        tok.language_id(language),
        *extra,
        tok.fim_suffix_id,
        *suffix,
        tok.fim_prefix_id,
        *prefix,
        tok.fim_middle_id,
    ]


def canvas_target(tok: CodeTokenizer, middle: Sequence[int], length: int) -> list[int]:
    """Middle tokens then <eos> up to `length`; a middle longer than the canvas is cut (the caller moves the rest
    into the suffix, see ``split_middle``)."""
    middle = list(middle[:length])
    return middle + [tok.eos_id] * (length - len(middle))


def split_middle(middle: Sequence[int], suffix: Sequence[int], length: int) -> tuple[list[int], list[int]]:
    """A middle that does not fit the canvas keeps its first `length` tokens; the rest joins the suffix, so the
    example stays a true FIM triple of the same file."""
    return list(middle[:length]), list(middle[length:]) + list(suffix)


@dataclass(frozen=True)
class Batch:
    tokens: Tensor  # (B, C + L) left-padded context then canvas target
    pad: Tensor  # (B,) pad tokens at the start of each row
    context_len: int  # C, context width of the batch including padding


def collate(
    tok: CodeTokenizer,
    rows: Sequence[tuple],
    canvas_len: int,
    context_budget: int,
) -> Batch:
    """rows of (prefix_ids, middle_ids, suffix_ids, language[, chunk_ids]) -> a left-padded batch with clean canvas
    targets; a row's encoded cross-file chunks (``encode_chunks``) take up to ``TRAIN_CHUNK_SHARE`` of its context."""
    contexts, canvases = [], []
    chunk_room = int(context_budget * TRAIN_CHUNK_SHARE)
    for row in rows:
        prefix, middle, suffix, language = row[:4]
        chunks = row[4] if len(row) > 4 else ()
        middle, suffix = split_middle(middle, suffix, canvas_len)
        room = chunk_room if chunks else None
        contexts.append(context_tokens(tok, prefix, suffix, language, context_budget, chunks, room))
        canvases.append(canvas_target(tok, middle, canvas_len))
    width = max(len(c) for c in contexts)
    tokens = torch.full((len(rows), width + canvas_len), tok.pad_id, dtype=torch.long)
    pad = torch.empty(len(rows), dtype=torch.long)
    for i, (ctx, canvas) in enumerate(zip(contexts, canvases, strict=True)):
        pad[i] = width - len(ctx)
        tokens[i, width - len(ctx) : width] = torch.tensor(ctx)
        tokens[i, width:] = torch.tensor(canvas)
    return Batch(tokens=tokens, pad=pad, context_len=width)


def draw_canvas_len(rng: random.Random, max_canvas: int) -> int:
    lengths = [n for n in TRAIN_CANVAS_LENGTHS if n <= max_canvas] or [max_canvas]
    return rng.choice(lengths)
