"""Work the sampler skips: the line limit (every family), the growing canvas and late branching (Diffill's own).

Real tiny models with random weights (their canvases are full of line breaks, which is what these tests need),
the real request path (``LocalEngine``), and the native protocol carrying the limit to ``diffill serve``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.api import load_engine
from engine.checkpoint import save_checkpoint
from engine.config import preset
from engine.contract import SampleOptions
from engine.model import DiffillModel
from engine.sample import end_at_line_limit
from engine.serve.protocol import Limits, native_request, parse_native

PREFIX = "def mean(values):\n    total = sum(values)\n    return "
SUFFIX = "\n\n\nprint(mean([1, 2, 3]))\n"


def complete(engine, max_lines: int, n: int = 4, seed: int = 0) -> list[str]:
    options = SampleOptions(max_lines=max_lines, seed=seed, temperature=2.0)  # sampled rows wander over lines
    return [c.text for c in engine.complete(PREFIX, SUFFIX, language="python", canvas_length=32,
                                            num_candidates=n, options=options)]  # fmt: skip


def past_limit(text: str, max_lines: int) -> str:
    """What a candidate holds after its `max_lines`-th line break, besides whitespace (the token that reaches the
    limit may hold more than one break, e.g. a blank line, or the next line's indentation)."""
    return "\n".join(text.split("\n")[max_lines:]).strip()


def multiline_seed(engine, n: int = 4) -> int:
    """A seed whose unlimited candidates hold more than one line break (random weights: found within a few)."""
    seed = next((s for s in range(50) if any(past_limit(t, 1) for t in complete(engine, 0, n, s))), None)
    assert seed is not None, "no seed gave a multi-line candidate"
    return seed


def test_end_at_line_limit_ends_rows_after_the_break_that_reaches_the_limit() -> None:
    breaks = torch.tensor([0, 1, 0, 2, 0])  # token 1 holds one line break, token 3 two; 4 is the mask
    canvas = torch.tensor([[2, 1, 2, 2, 2], [4, 1, 2, 1, 2], [3, 2, 2, 2, 2], [2, 2, 2, 2, 2]])
    masked = canvas == 4
    logp = torch.full(canvas.shape, -0.5)
    end_at_line_limit(canvas, masked, logp, breaks, 1, 0)
    assert canvas.tolist() == [[2, 1, 0, 0, 0], [4, 1, 0, 0, 0], [3, 0, 0, 0, 0], [2, 2, 2, 2, 2]]
    # A masked position before the break stays open (it may still hold a break itself: the limit only moves left).
    assert masked.tolist()[1] == [True, False, False, False, False]
    assert logp[0, 2:].eq(0).all() and logp[0, :2].eq(-0.5).all()
    # Two lines allowed: row 2's double break reaches it at once; row 1 needs its second single break.
    canvas = torch.tensor([[2, 1, 2, 1, 2], [3, 2, 2, 2, 2]])
    end_at_line_limit(canvas, torch.zeros_like(canvas, dtype=torch.bool), torch.zeros(2, 5), breaks, 2, 0)
    assert canvas.tolist() == [[2, 1, 2, 1, 0], [3, 0, 0, 0, 0]]


def line_loving_checkpoint(directory: Path, tokenizer, causal: bool) -> Path:
    """A tiny random model whose favourite tokens are line breaks: the rows of the tokens it writes most are
    swapped with those of tokens holding a line break (tied embeddings: a relabelling of its vocabulary), so its
    candidates span many lines -- what a line limit needs to be tested against."""
    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=tokenizer.vocab_size, causal_canvas=causal))
    save_checkpoint(directory, model, tokenizer)
    written = Counter(t for text in complete(load_engine(directory, device="cpu"), 0) for t in tokenizer.encode(text))
    breaks = [i for i in range(tokenizer.vocab_size) if "\n" in tokenizer.decode([i])]
    favourites = [t for t, _ in written.most_common(len(breaks)) if t not in breaks]
    with torch.no_grad():
        for a, b in zip(favourites, breaks, strict=False):
            model.embed.weight[[a, b]] = model.embed.weight[[b, a]]
    return save_checkpoint(directory, model, tokenizer)


@pytest.fixture(scope="module")
def diffusion_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_tokenizer) -> Path:
    return line_loving_checkpoint(tmp_path_factory.mktemp("lines") / "model", small_tokenizer, causal=False)


@pytest.fixture(scope="module")
def ar_checkpoint(tmp_path_factory: pytest.TempPathFactory, small_tokenizer) -> Path:
    return line_loving_checkpoint(tmp_path_factory.mktemp("lines-ar") / "model", small_tokenizer, causal=True)


def test_ar_twin_stops_each_candidate_at_its_first_line_break(ar_checkpoint: Path) -> None:
    engine = load_engine(ar_checkpoint, device="cpu")
    seed = multiline_seed(engine)
    free = complete(engine, 0, seed=seed)
    free_steps = engine.last_stats.steps
    limited = complete(engine, 1, seed=seed)
    for whole, cut in zip(free, limited, strict=True):
        assert whole.startswith(cut)  # the same draws, stopped early
        assert not past_limit(cut, 1) and cut.count("\n") >= min(1, whole.count("\n"))
    if all(text.count("\n") for text in free):
        assert engine.last_stats.steps < free_steps  # decoding stopped when every row had its line


def test_diffusion_candidates_hold_at_most_the_allowed_lines(diffusion_checkpoint: Path) -> None:
    engine = load_engine(diffusion_checkpoint, device="cpu")
    seed = multiline_seed(engine)
    for max_lines in (1, 2):
        texts = complete(engine, max_lines, seed=seed)
        assert not any(past_limit(text, max_lines) for text in texts), texts
        assert any(text.count("\n") >= max_lines for text in texts), texts


def test_released_families_honour_the_line_limit(family_checkpoint) -> None:
    family, directory = family_checkpoint
    engine = load_engine(directory, device="cpu")
    seed = multiline_seed(engine, n=2)
    complete(engine, 0, n=2, seed=seed)
    free_steps = engine.last_stats.steps
    limited = complete(engine, 1, n=2, seed=seed)
    assert not any(past_limit(text, 1) for text in limited), (family.name, limited)
    assert any("\n" in text for text in limited), (family.name, limited)
    assert engine.last_stats.steps <= free_steps  # blocks the limit filled are skipped


def test_the_native_protocol_carries_the_limit() -> None:
    limits = Limits(max_context=2048, max_canvas=64)
    sent = native_request("a", "b", language="python", canvas_length=8, num_candidates=1,
                          options=SampleOptions(max_lines=1))  # fmt: skip
    assert parse_native(sent, limits).options.max_lines == 1
    unlimited = native_request("a", "b", language="python", canvas_length=8, num_candidates=1, options=SampleOptions())
    assert "max_lines" not in unlimited and parse_native(unlimited, limits).options.max_lines == 0
    with pytest.raises(ValueError):
        SampleOptions(max_lines=-1)


def test_a_growing_canvas_spends_the_full_canvas_rate_per_segment(diffusion_checkpoint: Path) -> None:
    """16 of 32 positions get 4 of 8 steps: a middle that ends inside them costs half, one that does not the same
    as the full canvas."""
    engine = load_engine(diffusion_checkpoint, device="cpu")

    def run(**options) -> tuple[list, int]:
        out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=32, num_candidates=2,
                              options=SampleOptions(steps=8, threshold=1.0, **options))  # fmt: skip
        return out, engine.last_stats.steps

    _, full = run()
    ended, ended_steps = run(initial_canvas=16, max_lines=1)  # the line-loving model ends its line early
    grown, grown_steps = run(initial_canvas=16)  # random text never ends: the canvas grows to 32
    assert full == 8 and grown_steps == 8
    assert ended_steps <= 4 and not past_limit(ended[0].text, 1)
    assert max(c.tokens for c in grown) > 16  # the second segment was filled


def forward_rows(engine) -> list[int]:
    """The canvas rows of every forward the engine's model runs from now on (a spy on the real model)."""
    model, rows = engine.runner.model, []
    denoise = model.denoise

    def counted(canvas, *args, **kwargs):
        rows.append(canvas.shape[0])
        return denoise(canvas, *args, **kwargs)

    model.denoise = counted
    return rows


def test_rows_fan_out_where_their_draws_first_differ(diffusion_checkpoint: Path) -> None:
    engine = load_engine(diffusion_checkpoint, device="cpu")
    options = SampleOptions(steps=6, threshold=1.0, trunk=2, branch_after=3, temperature=2.0)
    alone = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=1, options=options)
    rows = forward_rows(engine)
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=5, options=options)
    # Every canvas starts fully masked: one row's forward serves all. The trunk (greedy + one sampled row) runs
    # until three steps are done; the fourth step's draws fan out from the trunk's logits, so the first forward
    # over all five rows is the fifth.
    assert len(out) == 5 and engine.last_stats.steps == 6
    assert rows == [1, 2, 2, 2, 5, 5]
    assert out[0].text == alone[0].text  # the greedy row is the same whether or not others branch off it
    assert len({c.text for c in out}) > 2  # copies of both trunk rows sampled their own continuations
    plain = forward_rows(engine)
    engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=4,
                    options=SampleOptions(steps=6, threshold=1.0, temperature=2.0))  # fmt: skip
    assert plain == [1, 4, 4, 4, 4, 4]  # no trunk: the candidates fan out at the first step's draws
    with pytest.raises(ValueError, match="trunk must be >= 1"):
        SampleOptions(trunk=0)


def test_late_branching_candidates_share_the_greedy_rows_first_commits(diffusion_checkpoint: Path) -> None:
    engine = load_engine(diffusion_checkpoint, device="cpu")
    options = SampleOptions(steps=8, threshold=1.0, branch_after=4, temperature=2.0)
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=3, options=options)
    assert len(out) == 3 and engine.last_stats.steps == 8
    alone = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=1, options=options)
    assert out[0].text == alone[0].text  # the greedy row is the same whether or not others branch off it
    assert len({c.text for c in out}) > 1  # the branches sampled their own continuations


def test_the_canvas_cache_runs_what_is_masked_or_just_committed(diffusion_checkpoint: Path) -> None:
    """``SampleOptions.canvas_cache``: the first step runs one row (every row is the same), the second every
    position of every row (their keys/values so far came from masks), and each later step the positions masked
    when the step before began (still masked, or committed by it), plus the one before each masked position (a
    shifted-logits model reads a position's logits there); the rest are read from the scratch."""
    for shifted in (False, True):
        if shifted:
            diffusion_checkpoint = shifted_checkpoint(diffusion_checkpoint)
        check_canvas_cache_work(load_engine(diffusion_checkpoint, device="cpu"), shifted)


def shifted_checkpoint(checkpoint: Path) -> Path:
    """The same tiny model's weights as a shifted-logits checkpoint (a sibling directory)."""
    out = checkpoint.parent / f"{checkpoint.name}-shifted"
    if not out.exists():
        engine = load_engine(checkpoint, device="cpu")
        model = engine.runner.model
        config = replace(model.config, shift_logits=True)
        shifted = DiffillModel(config)
        shifted.load_state_dict(model.state_dict())
        save_checkpoint(out, shifted, engine.runner.tokenizer)
    return out


def check_canvas_cache_work(engine, shifted: bool) -> None:
    model, mask_id = engine.runner.model, engine.runner.tokenizer.mask_id
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    denoise = model.denoise

    def spy(canvas, cache, select=None, rows=None, queries=None):
        seen.append((canvas.clone(), None if queries is None else queries.clone()))
        return denoise(canvas, cache, select, rows, queries)

    model.denoise = spy
    options = SampleOptions(steps=6, threshold=1.0, temperature=2.0)  # the canvas cache is on by default
    assert options.canvas_cache
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=4, options=options)
    assert len(out) == 4 and engine.last_stats.steps == len(seen) == 6
    assert seen[0][0].shape == (1, 16) and seen[0][1] is None
    assert seen[1][0].shape == (4, 16) and seen[1][1] is None
    for (before, _), (canvas, queries) in zip(seen[1:], seen[2:], strict=False):
        masked = canvas == mask_id
        run = before == mask_id
        if shifted:
            run[:, :-1] |= masked[:, 1:]
        assert queries is not None and torch.equal(queries, run.reshape(-1).nonzero().squeeze(1))
        assert len(queries) < canvas.numel()
    seen.clear()
    off = SampleOptions(steps=6, threshold=1.0, temperature=2.0, canvas_cache=False)
    plain = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=4, options=off)
    assert len(plain) == 4 and all(queries is None for _, queries in seen)  # off: every position, every step
