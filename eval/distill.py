"""Distillation data: a model's own single-line completions of training examples, as the editor shows them.

``diffill distill`` cuts single-line FIM examples (rest of a line, a whole line) from a corpus (``engine.data``),
asks the model for each exactly as the editor would (``eval.editor``: many candidates, tree-sitter truncation and
validation, ranking), and writes the example with its middle replaced by the shown text nearest the real middle
(edit similarity). ``diffill train --distilled FILE`` mixes those rows into training. Asked of the diffusion model
itself, its rows teach it its own parseable lines (self-distillation: they parse more often at few steps, but are
right less often; docs/speed.md, rounds 9-10); asked of the AR twin (``--model engine/weights/default-ar``), they teach
the diffusion model the teacher's lines (sequence-level distillation: the shipped default's fine-tune, round 10).

Each row also keeps the real middle (`truth`), the similarity and the example's index in the stream, so the file can
be re-filtered later; `OUT.asked` counts the examples asked, so a stopped run continues where it stopped (the same
seed gives the same stream).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from engine.corpus import iter_corpus
from engine.data import FimExample, iter_fim_examples
from eval.editor import Asker, FimTask, GenConfig, Generation
from eval.metrics import edit_similarity
from fim.request import Mode

KINDS = ("rest_of_line", "whole_line")


def single_line_examples(corpus: Path, seed: int, rank: int = 0, world_size: int = 1) -> Iterator[FimExample]:
    """The corpus's single-line examples (a one-line middle with some text), in a fixed order for the seed."""
    for ex in iter_fim_examples(corpus, seed=seed, rank=rank, world_size=world_size):
        if ex.kind in KINDS and ex.middle.strip() and "\n" not in ex.middle:
            yield ex


def nearest(generation: Generation, truth: str) -> tuple[str, float] | None:
    """The shown text (parses, not degenerate) most similar to `truth`, and its similarity; None if none."""
    shown = [a.text for a in generation.assessed if a.rejected is None and a.text.strip()]
    if not shown:
        return None
    scored = [(edit_similarity(text, truth), -i, text) for i, text in enumerate(shown)]  # ties: the higher ranked
    similarity, _, text = max(scored)
    return text, similarity


def progress_path(out: Path) -> Path:
    """Beside `out`: how many examples of the stream have been asked (with or without a row written)."""
    return out.with_name(out.name + ".asked")


def _done(out: Path) -> int:
    """Examples already asked for `out` (its marker, or its last row's index if a stop came between the two), 0 for
    a new file."""
    if not out.exists():
        return 0
    marker = progress_path(out)
    done = int(marker.read_text()) if marker.exists() else 0
    return max([done, *(row["index"] for row in iter_corpus(out))])


def distill(
    asker: Asker, examples: Iterator[FimExample], out: Path, count: int, min_similarity: float = 0.0
) -> dict[str, int]:
    """Ask for the first `count` examples (continuing after the ones `out` holds) and append a row for each that
    has a shown text at least `min_similarity` like the real middle."""
    start = _done(out)
    written = asked = 0
    with out.open("a", encoding="utf-8") as f, tqdm(total=count, initial=start, desc="distill", file=sys.stderr) as bar:
        for index, ex in enumerate(examples, 1):
            if index > count:
                break
            if index <= start:
                continue
            task = FimTask(f"distill-{index}", ex.language, ex.prefix + ex.suffix, len(ex.prefix), ex.middle)
            found = nearest(asker.ask(task), ex.middle)
            if found is not None and found[1] >= min_similarity:
                row = {"prefix": ex.prefix, "middle": found[0], "suffix": ex.suffix, "language": ex.language}
                f.write(json.dumps(row | {"truth": ex.middle, "similarity": found[1], "index": index}) + "\n")
                f.flush()
                written += 1
            progress_path(out).write_text(f"{index}\n")
            asked += 1
            bar.update()
    return {"asked": asked, "written": written}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffill distill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="corpus directory (its train.jsonl)")
    parser.add_argument("--out", required=True, help=".jsonl to write; an existing one is continued")
    parser.add_argument("--count", type=int, required=True, help="examples to ask for (the file's total)")
    parser.add_argument("--model", help="checkpoint directory (default: the embedded diffusion model)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=16, help="candidates per request")
    parser.add_argument("--min-similarity", type=float, default=0.0, help="keep rows at least this similar")
    parser.add_argument("--seed", type=int, default=77, help="of the example stream")
    parser.add_argument("--rank", type=int, default=0, help="this process's share: every WORLD-th corpus file")
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.count < 1 or args.candidates < 1 or not 0 <= args.rank < args.world:
        parser.error("--count and --candidates must be positive and 0 <= --rank < --world")

    from engine.api import load_engine
    from engine.contract import SampleOptions

    engine = load_engine(args.model, args.device, threads=args.threads)
    config = GenConfig(SampleOptions(steps=args.steps), mode=Mode.SINGLE_LINE, candidates=args.candidates)
    examples = single_line_examples(Path(args.corpus) / "train.jsonl", args.seed, args.rank, args.world)
    stats = distill(Asker.of(engine, config), examples, Path(args.out), args.count, args.min_similarity)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
