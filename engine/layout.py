"""Token layout of a FIM sequence, shared by training and inference so the two can never disagree.

    context = [<lang:X>, <fim_suffix>, suffix..., <fim_prefix>, prefix..., <fim_middle>]
    canvas  = L positions at the cursor: middle tokens, then <eos> up to L (training target)

Suffix first, prefix last: typing at the cursor only appends to the prefix, so consecutive requests share a long
token prefix of the context and the cache is extended rather than rebuilt. When a context is over budget the far
end of the suffix goes first, then the far start of the prefix (the text nearest the cursor matters most).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

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


def context_tokens(
    tok: CodeTokenizer, prefix: Sequence[int], suffix: Sequence[int], language: str, budget: int
) -> list[int]:
    prefix, suffix = fit_context(prefix, suffix, budget - N_CONTEXT_TAGS)
    return [tok.language_id(language), tok.fim_suffix_id, *suffix, tok.fim_prefix_id, *prefix, tok.fim_middle_id]


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
    rows: Sequence[tuple[list[int], list[int], list[int], str]],
    canvas_len: int,
    context_budget: int,
) -> Batch:
    """rows of (prefix_ids, middle_ids, suffix_ids, language) -> a left-padded batch with clean canvas targets."""
    contexts, canvases = [], []
    for prefix, middle, suffix, language in rows:
        middle, suffix = split_middle(middle, suffix, canvas_len)
        contexts.append(context_tokens(tok, prefix, suffix, language, context_budget))
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
