"""Fill-in-the-middle training examples sampled from a corpus (``engine.corpus``).

The span is chosen the way an editor asks (design.md), with the kinds and weights of `FIM_KIND_WEIGHTS`;
prefix + middle + suffix is always one contiguous slice of the file, trimmed at line boundaries to
`max_context_chars` of context, nearer text kept. `iter_fim_examples` streams them from a corpus file,
deterministically per seed; with `cross_file_rate` > 0 that fraction of examples carries chunks of related files
of the same package (``engine.related``), as the language server sends them.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from engine.corpus import iter_corpus
from engine.related import PackageIndex, related_chunks
from fim.spans import syntax_spans

# --- fill-in-the-middle examples ---
FIM_KIND_WEIGHTS: dict[str, float] = {
    "rest_of_line": 0.24,  # the most common request: finish the line being typed
    "whole_line": 0.16,  # cursor on a fresh line, after its indentation
    "statement": 0.16,  # the next statement (tree-sitter), often several lines
    "block_body": 0.14,  # a function/loop/branch body: the multi-line mode's main case
    "random_span": 0.14,  # starts and ends anywhere, even mid-token: robustness to odd cursors
    "end_of_file": 0.14,  # writing new code at the end: empty suffix
    "empty": 0.02,  # cursor at the end of a finished line: the answer is <eos> at once
}
# A kind with no candidate span in a file falls back along this chain; random_span always has one.
_FALLBACK = {"statement": "whole_line", "block_body": "whole_line", "whole_line": "random_span"}
EOF_MAX_LINES = 8  # an end-of-file middle is the next 1..8 lines


@dataclass(frozen=True)
class FimExample:
    """One training example: `prefix + middle + suffix` is a contiguous slice of a source file."""

    prefix: str
    middle: str
    suffix: str
    language: str
    kind: str
    chunks: tuple[tuple[str, str], ...] = ()  # cross-file context: (path, text), least relevant first


class _Line(NamedTuple):
    """A non-blank line's content: from after its indentation to its last non-blank character."""

    indent_end: int
    content_end: int


_CODE_LINE = re.compile(r"[ \t]*(\S(?:[^\r\n]*\S)?)")  # group 1: a line's content, from \S to \S


@functools.lru_cache(maxsize=4)  # several examples are drawn from one file in a row
def _code_lines(text: str) -> tuple[_Line, ...]:
    return tuple(_Line(*match.span(1)) for match in _CODE_LINE.finditer(text))


@functools.lru_cache(maxsize=4)
def _syntax_spans(text: str, language: str) -> dict[str, list[tuple[int, int]]]:
    spans: dict[str, list[tuple[int, int]]] = {"statement": [], "block_body": []}
    for span in syntax_spans(text, language):
        spans[span.kind].append((span.start, span.end))
    return spans


_Pick = tuple[int, int] | None  # [start, end) of the middle, or None when the file has no such span


def _rest_of_line(text: str, language: str, rng: random.Random, max_middle: int) -> _Pick:
    """Cursor after at least one typed character of a line; the middle is the rest of that line."""
    lines = [line for line in _code_lines(text) if line.content_end - line.indent_end >= 2]
    if not lines:
        return None
    line = rng.choice(lines)
    cursor = rng.randint(max(line.indent_end + 1, line.content_end - max_middle), line.content_end - 1)
    return cursor, line.content_end


def _whole_line(text: str, language: str, rng: random.Random, max_middle: int) -> _Pick:
    """Cursor after the indentation of a line; the middle is the line without its line break."""
    lines = [line for line in _code_lines(text) if line.content_end - line.indent_end <= max_middle]
    if not lines:
        return None
    line = rng.choice(lines)
    return line.indent_end, line.content_end


def _syntax_span(kind: str, text: str, language: str, rng: random.Random, max_middle: int) -> _Pick:
    spans = [s for s in _syntax_spans(text, language)[kind] if s[1] - s[0] <= max_middle]
    return rng.choice(spans) if spans else None


def _random_span(text: str, language: str, rng: random.Random, max_middle: int) -> _Pick:
    start = rng.randrange(len(text))
    return start, min(len(text), start + rng.randint(1, max_middle))


def _end_of_file(text: str, language: str, rng: random.Random, max_middle: int) -> _Pick:
    """Cursor after the indentation of a line; the middle is the next 1..8 non-blank lines (what fits)."""
    lines = _code_lines(text)
    if not lines:
        return None
    first = rng.randrange(len(lines))
    chunk = lines[first : first + rng.randint(1, EOF_MAX_LINES)]
    start = chunk[0].indent_end
    ends = [line.content_end for line in chunk if line.content_end - start <= max_middle]
    return (start, ends[-1]) if ends else None


def _empty(text: str, language: str, rng: random.Random, max_middle: int) -> _Pick:
    """Cursor at the end of a finished line: nothing to insert."""
    lines = _code_lines(text)
    end = rng.choice(lines).content_end if lines else len(text)
    return end, end


_PICKERS = {
    "rest_of_line": _rest_of_line,
    "whole_line": _whole_line,
    "statement": functools.partial(_syntax_span, "statement"),
    "block_body": functools.partial(_syntax_span, "block_body"),
    "random_span": _random_span,
    "end_of_file": _end_of_file,
    "empty": _empty,
}


def pick_span(kind: str, text: str, language: str, rng: random.Random, max_middle: int) -> tuple[int, int] | None:
    """[start, end) of a middle of one of `FIM_KIND_WEIGHTS`' kinds in `text`, chosen as training chooses it, or
    None when the file has no span of that kind (no fallback: callers that cut evaluation tasks want the kind)."""
    return _PICKERS[kind](text, language, rng, max_middle)


def _trim_context(prefix: str, suffix: str, max_context: int) -> tuple[str, str]:
    """Keep at most `max_context` characters, nearest the middle first, cutting at line boundaries.

    The suffix gets at least a quarter of the budget when it needs it, the prefix the rest (the prefix
    matters more to what comes next); whichever side is short leaves its share to the other.
    """
    if len(prefix) + len(suffix) <= max_context:
        return prefix, suffix
    suffix_keep = min(len(suffix), max(max_context // 4, max_context - len(prefix)))
    prefix_keep = min(len(prefix), max_context - suffix_keep)
    if prefix_keep < len(prefix):
        cut = len(prefix) - prefix_keep  # keep prefix[cut:], from the first line start at or after cut
        newline = prefix.find("\n", cut - 1)
        prefix = prefix[newline + 1 :] if newline >= 0 else ""
    if suffix_keep < len(suffix):
        newline = suffix.rfind("\n", 0, suffix_keep)
        suffix = suffix[: newline + 1]
    return prefix, suffix


def sample_fim_example(
    text: str,
    language: str,
    rng: random.Random,
    *,
    max_middle_chars: int = 400,
    max_context_chars: int = 8000,
    weights: Mapping[str, float] = FIM_KIND_WEIGHTS,
) -> FimExample:
    """One FIM example from a source file: a kind drawn by `weights`, a span of that kind, trimmed context."""
    if not text:
        return FimExample("", "", "", language, "empty")
    kinds = list(weights)
    kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    span = _PICKERS[kind](text, language, rng, max_middle_chars)
    while span is None:
        kind = _FALLBACK.get(kind, "random_span")
        span = _PICKERS[kind](text, language, rng, max_middle_chars)
    start, end = span
    suffix = "" if kind == "end_of_file" else text[end:]
    prefix, suffix = _trim_context(text[:start], suffix, max_context_chars)
    return FimExample(prefix, text[start:end], suffix, language, kind)


def _record_offsets(path: Path) -> list[int]:
    """Byte offset of every non-empty line of a .jsonl file, so records can be read in any order."""
    offsets, position = [], 0
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return offsets


def iter_fim_examples(
    corpus_path: str | Path,
    seed: int,
    *,
    epochs: int | None = None,
    chars_per_example: int = 2000,
    shuffle_buffer: int = 1024,
    max_middle_chars: int = 400,
    max_context_chars: int = 8000,
    rank: int = 0,
    world_size: int = 1,
    cross_file_rate: float = 0.0,
    cross_file_tokens: int = 256,
) -> Iterator[FimExample]:
    """FIM examples from a corpus file: endless when `epochs` is None, the same stream for the same seed.

    Each epoch visits the files in a new order, the same for every rank: rank r of `world_size` (processes,
    or DataLoader workers numbered globally) takes every world_size-th file. A file yields
    len(text) / chars_per_example examples in expectation (stochastically rounded, so a short file yields
    one now and then). A shuffle buffer mixes examples of neighbouring files so a batch is not one file.
    `cross_file_rate`: the fraction of examples given chunks of related files (``engine.related``), estimated at
    most `cross_file_tokens` tokens (the batch's collate cuts them to their share of the row).
    """
    path = Path(corpus_path)
    offsets = _record_offsets(path)
    if not offsets:
        raise ValueError(f"{path} holds no corpus records")
    order_rng = random.Random(f"order-{seed}")
    rng = random.Random(f"examples-{seed}-{rank}")
    sample = functools.partial(
        sample_fim_example, max_middle_chars=max_middle_chars, max_context_chars=max_context_chars
    )
    if not 0.0 <= cross_file_rate <= 1.0:
        raise ValueError(f"cross_file_rate must be in [0, 1], got {cross_file_rate}")
    buffer: list[FimExample] = []
    epoch = 0
    with path.open("rb") as corpus, path.open("rb") as related_file:
        index = PackageIndex(related_file) if cross_file_rate > 0 else None
        while epochs is None or epoch < epochs:
            order = offsets.copy()
            order_rng.shuffle(order)
            chars = 0
            for offset in order[rank::world_size]:
                corpus.seek(offset)
                record = json.loads(corpus.readline())
                chars += len(record["text"])
                for _ in range(math.floor(len(record["text"]) / chars_per_example + rng.random())):
                    example = sample(record["text"], record["language"], rng)
                    if index is not None and rng.random() < cross_file_rate:
                        chunks = related_chunks(
                            index,
                            record["path"],
                            example.prefix,
                            example.suffix,
                            example.language,
                            rng,
                            cross_file_tokens,
                        )
                        example = replace(example, chunks=chunks)
                    if len(buffer) < shuffle_buffer:
                        buffer.append(example)
                        continue
                    slot = rng.randrange(shuffle_buffer)
                    yield buffer[slot]
                    buffer[slot] = example
            if chars == 0:  # would loop forever without yielding
                raise ValueError(f"{path} holds no text for rank {rank} of {world_size}")
            epoch += 1
    rng.shuffle(buffer)
    yield from buffer


def iter_distilled(
    paths: Sequence[str | Path], seed: int, *, rank: int = 0, world_size: int = 1
) -> Iterator[FimExample]:
    """The examples of distillation files (``diffill distill``: rows with prefix, middle, suffix, language), pooled
    in the order given, endless and reshuffled every epoch, the same for the same seed; rank r of `world_size` takes
    every world_size-th row."""
    rows = [row for path in paths for row in iter_corpus(path)][rank::world_size]
    if not rows:
        raise ValueError(f"{', '.join(map(str, paths))} hold no examples for rank {rank} of {world_size}")
    examples = [FimExample(r["prefix"], r["middle"], r["suffix"], r["language"], "distilled") for r in rows]
    rng = random.Random(f"distilled-{seed}-{rank}")
    while True:
        rng.shuffle(examples)
        yield from examples


def mix(
    first: Iterator[FimExample], second: Iterator[FimExample], rate: float, rng: random.Random
) -> Iterator[FimExample]:
    """Each example from `second` with probability `rate`, else from `first`."""
    while True:
        yield next(second) if rng.random() < rate else next(first)
