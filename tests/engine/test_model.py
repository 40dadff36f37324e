"""Properties of the transformer and its context cache, on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from engine.cache import ContextCache, common_prefix_len
from engine.config import preset
from engine.model import DiffillModel, sequence_mask
from engine.runner import row_slices


def tiny(causal_canvas: bool = False, shift_logits: bool = False) -> DiffillModel:
    torch.manual_seed(0)
    cfg = preset("tiny", vocab_size=300, causal_canvas=causal_canvas, shift_logits=shift_logits)
    return DiffillModel(cfg).eval()


def full_forward_canvas_logits(model: DiffillModel, context: list[int], canvas: torch.Tensor) -> torch.Tensor:
    """Reference: the uncached training forward over context + canvas, one row per canvas."""
    B, L = canvas.shape
    tokens = torch.cat([torch.tensor(context).expand(B, -1), canvas], dim=1)
    logits = model(tokens, torch.zeros(B, dtype=torch.long), len(context))
    return logits[:, len(context) :]


@pytest.mark.parametrize("causal_canvas", [False, True])
def test_cached_denoise_step_equals_full_forward(causal_canvas: bool) -> None:
    model = tiny(causal_canvas)
    g = torch.Generator().manual_seed(1)
    context = torch.randint(0, 300, (57,), generator=g).tolist()
    canvas = torch.randint(0, 300, (3, 16), generator=g)
    with torch.inference_mode():
        ctx = ContextCache(model.new_cache())
        ctx.update(model, context)
        cached = model.denoise(canvas, ctx.cache)
        full = full_forward_canvas_logits(model, context, canvas)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)


def test_shifted_model_reads_each_canvas_position_from_the_one_before() -> None:
    """Shifted logits: the cached denoise of canvas position i equals the training forward's logits at i - 1
    (for i = 0, <fim_middle>'s position, the context's last), alone and packed with another request."""
    model = tiny(shift_logits=True)
    g = torch.Generator().manual_seed(3)
    context = torch.randint(0, 300, (41,), generator=g).tolist()
    canvas = torch.randint(0, 300, (3, 12), generator=g)
    C = len(context)
    with torch.inference_mode():
        ctx = ContextCache(model.new_cache())
        ctx.update(model, context[:30])
        ctx.update(model, context)  # grown incrementally, as when the user types
        cached = model.denoise(canvas, ctx.cache)
        tokens = torch.cat([torch.tensor(context).expand(3, -1), canvas], dim=1)
        full = model(tokens, torch.zeros(3, dtype=torch.long), C)
        other = ContextCache(model.new_cache())
        other.update(model, context[5:])
        packed = model.denoise_packed([canvas[:1], canvas], [other.cache, ctx.cache])
    torch.testing.assert_close(cached, full[:, C - 1 : -1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed[1], cached, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cached, full[:, C:], atol=1e-2)  # the shift is real


def test_shifted_model_refuses_a_cache_without_the_last_hidden_state() -> None:
    model = tiny(shift_logits=True)
    with torch.inference_mode():
        ctx = ContextCache(model.new_cache())
        ctx.update(model, list(range(10, 30)))
        ctx.cache.truncate(15)
        with pytest.raises(ValueError, match="last hidden state"):
            model.denoise(torch.zeros(1, 4, dtype=torch.long), ctx.cache)


def test_context_logits_do_not_depend_on_canvas() -> None:
    model = tiny()
    context = list(range(10, 40))
    a = torch.randint(0, 300, (1, 8))
    b = torch.randint(0, 300, (1, 8))
    with torch.inference_mode():
        la = model(torch.cat([torch.tensor([context]), a], 1), torch.zeros(1, dtype=torch.long), len(context))
        lb = model(torch.cat([torch.tensor([context]), b], 1), torch.zeros(1, dtype=torch.long), len(context))
    torch.testing.assert_close(la[:, : len(context)], lb[:, : len(context)])


def test_incremental_cache_extension_equals_fresh_encode() -> None:
    model = tiny()
    g = torch.Generator().manual_seed(2)
    first = torch.randint(0, 300, (80,), generator=g).tolist()
    # The user typed: same first 70 tokens, then different and more tokens.
    second = first[:70] + torch.randint(0, 300, (25,), generator=g).tolist()
    canvas = torch.randint(0, 300, (2, 12), generator=g)
    with torch.inference_mode():
        warm = ContextCache(model.new_cache())
        warm.update(model, first)
        _, computed = warm.update(model, second)
        fresh = ContextCache(model.new_cache())
        fresh.update(model, second)
        assert computed == len(second) - 70
        assert warm.cache.length == fresh.cache.length == len(second)
        for layer in range(model.config.n_layers):
            for a, b in zip(warm.cache.view(layer), fresh.cache.view(layer), strict=True):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.denoise(canvas, warm.cache), model.denoise(canvas, fresh.cache))


def test_identical_context_recomputes_only_last_token() -> None:
    model = tiny()
    tokens = list(range(5, 50))
    with torch.inference_mode():
        ctx = ContextCache(model.new_cache())
        _, first = ctx.update(model, tokens)
        _, second = ctx.update(model, tokens)
    assert (first, second) == (len(tokens), 1)


def test_left_padding_does_not_change_logits() -> None:
    model = tiny()
    context = list(range(20, 50))
    canvas = list(range(60, 70))
    with torch.inference_mode():
        plain = model(torch.tensor([context + canvas]), torch.tensor([0]), len(context))
        padded_tokens = torch.tensor([[0] * 7 + context + canvas])
        padded = model(padded_tokens, torch.tensor([7]), len(context) + 7)
    torch.testing.assert_close(plain, padded[:, 7:], atol=1e-5, rtol=1e-5)


def test_mask_canvas_sees_context_context_never_sees_canvas() -> None:
    m = sequence_mask(torch.tensor([0]), context_len=4, canvas_len=3, causal_canvas=False)[0, 0]
    assert not m[:4, 4:].any()  # context never attends to the canvas
    assert m[4:, :].all()  # canvas attends to everything
    assert torch.equal(m[:4, :4], torch.ones(4, 4, dtype=torch.bool).tril())
    causal = sequence_mask(torch.tensor([0]), 4, 3, causal_canvas=True)[0, 0]
    assert torch.equal(causal[4:, 4:], torch.ones(3, 3, dtype=torch.bool).tril())


def test_common_prefix_len() -> None:
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2


def test_packed_step_of_several_requests_equals_each_alone() -> None:
    model = tiny()
    g = torch.Generator().manual_seed(5)
    caches, canvases = [], []
    with torch.inference_mode():
        for ctx_len, n, L in [(40, 2, 8), (73, 1, 16), (12, 3, 5)]:
            ctx = ContextCache(model.new_cache())
            ctx.update(model, torch.randint(0, 300, (ctx_len,), generator=g).tolist())
            caches.append(ctx.cache)
            canvases.append(torch.randint(0, 300, (n, L), generator=g))
        packed = model.denoise_packed(canvases, caches)
        for canvas, cache, logits in zip(canvases, caches, packed, strict=True):
            torch.testing.assert_close(logits, model.denoise(canvas, cache), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal_canvas", [False, True])
def test_a_step_in_row_slices_gives_the_whole_steps_logits(causal_canvas: bool) -> None:
    """A big step run in row slices (the server's scheduler runs a bulk request's step this way between small ones')
    equals the whole step: each slice's keys go where the whole canvas's would, so even the fused attention kernel
    sums in the same order -- bit for bit here (float32 on CPU; slices of at least 12 canvas rows), alone and packed
    with another request. With only some positions' logits read, the vocabulary head's matmul has fewer rows per
    slice, and some CPUs' BLAS kernels round such a matmul differently (a unit in the last place of a few logits,
    seen on an AMD EPYC): equal to float32 rounding there."""
    model = tiny(causal_canvas, shift_logits=not causal_canvas)
    g = torch.Generator().manual_seed(8)
    canvas = torch.randint(0, 300, (7, 16), generator=g)
    some = torch.tensor([0, 3, 4, 9, 15, 16, 40, 41, 70, 100, 111])  # flat indices into the 7 x 16 canvas
    slices = row_slices(7, 3)
    assert slices == [(0, 2), (2, 4), (4, 7)]  # as even as can be
    with torch.inference_mode():
        ctx, other = ContextCache(model.new_cache()), ContextCache(model.new_cache())
        ctx.update(model, torch.randint(0, 300, (90,), generator=g).tolist())
        other.update(model, torch.randint(0, 300, (20,), generator=g).tolist())
        whole = model.denoise(canvas, ctx.cache)
        alone = [model.denoise(canvas[a:b], ctx.cache, rows=(a, 7)) for a, b in slices]
        packed = [
            model.denoise_packed([canvas[:2], canvas[a:b]], [other.cache, ctx.cache], rows=[None, (a, 7)])[1]
            for a, b in slices
        ]
        assert torch.equal(torch.cat(alone), whole) and torch.equal(torch.cat(packed), whole)
        # Only some positions' logits: each slice asks for those in its rows, as indices into its own rows.
        mine = [some[(some >= a * 16) & (some < b * 16)] - a * 16 for a, b in slices]
        picked = model.denoise(canvas, ctx.cache, some)
        assert picked.shape == (len(some), 300)
        torch.testing.assert_close(picked, whole.reshape(-1, 300)[some], rtol=0, atol=1e-6)
        alone = [
            model.denoise(canvas[a:b], ctx.cache, sel, rows=(a, 7)) for (a, b), sel in zip(slices, mine, strict=True)
        ]
        packed = [
            model.denoise_packed([canvas[:2], canvas[a:b]], [other.cache, ctx.cache], [None, sel], [None, (a, 7)])[1]
            for (a, b), sel in zip(slices, mine, strict=True)
        ]
        torch.testing.assert_close(torch.cat(alone), picked, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.cat(packed), picked, rtol=0, atol=1e-6)


def test_selected_positions_get_the_same_logits_as_the_full_forward() -> None:
    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=64)).eval()
    tokens = torch.randint(16, 64, (3, 20))
    pad = torch.tensor([0, 4, 9])
    select = torch.rand(3, 20) < 0.3
    with torch.no_grad():
        full = model(tokens, pad, 12)
        part = model(tokens, pad, 12, select)
    assert part.shape == (int(select.sum()), 64)
    assert torch.allclose(part, full[select], atol=1e-5)


def test_bf16_linear_pads_rows_to_a_few_shapes_and_gives_the_unpadded_result() -> None:
    """engine.model.Linear: oneDNN keeps a kernel per bf16 input shape; rows are bucketed, results unchanged."""
    from engine.model import Linear, bucket_rows

    assert [bucket_rows(n) for n in (1, 3, 4, 5, 33, 64, 65, 130, 2000)] == [1, 4, 4, 8, 64, 64, 128, 192, 2048]
    torch.manual_seed(0)
    layer = Linear(16, 24, bias=False).to(torch.bfloat16)
    x = torch.randn(3, 7, 16, dtype=torch.bfloat16)  # 21 rows -> 32
    with torch.inference_mode():
        out = layer(x)
        assert out.shape == (3, 7, 24)
        assert torch.equal(out, torch.stack([layer(row) for row in x.unbind()]))  # 7 rows -> 8, alone
        assert torch.equal(out, torch.nn.functional.linear(x, layer.weight))


@pytest.mark.parametrize("shift_logits", [False, True])
def test_a_step_over_some_positions_reads_the_others_from_the_last_steps_scratch(shift_logits: bool) -> None:
    """``denoise(..., queries=Q)`` (the canvas cache) runs only the positions Q and reads every other position's
    keys/values from the scratch the step before left: after a full step over the same canvas those are exactly
    the ones a full step computes, so Q's logits are the full step's (to float32 rounding); alone, packed and in
    row slices. After the canvas changed at an unqueried position, they are the old ones: an approximation."""
    model = tiny(shift_logits=shift_logits)
    g = torch.Generator().manual_seed(11)
    canvas = torch.randint(0, 300, (3, 12), generator=g)
    queries = torch.tensor([0, 1, 5, 13, 14, 20, 30, 35])  # flat row-major indices into the 3 x 12 canvas
    read = queries + 1 if shift_logits else queries  # positions whose logits come from a queried position
    read = read[read % 12 != 0] if shift_logits else read
    rows, cols = read // 12, read % 12
    with torch.inference_mode():
        ctx = ContextCache(model.new_cache())
        ctx.update(model, torch.randint(0, 300, (50,), generator=g).tolist())
        full = model.denoise(canvas, ctx.cache)
        some = model.denoise(canvas, ctx.cache, queries=queries)
        torch.testing.assert_close(some[rows, cols], full[rows, cols], atol=1e-5, rtol=1e-5)
        every = model.denoise(canvas, ctx.cache, queries=torch.arange(36))
        torch.testing.assert_close(every, full, atol=1e-5, rtol=1e-5)
        other = ContextCache(model.new_cache())
        other.update(model, list(range(20, 40)))
        packed = model.denoise_packed([canvas[:1], canvas], [other.cache, ctx.cache], queries=[None, queries])[1]
        torch.testing.assert_close(packed[rows, cols], full[rows, cols], atol=1e-5, rtol=1e-5)
        # Rows 1..2 alone, as a part of the 3-row step: their queries re-based to the part's own rows.
        mine = queries[queries >= 12] - 12
        part = model.denoise(canvas[1:], ctx.cache, rows=(1, 3), queries=mine)
        in_part = rows >= 1
        torch.testing.assert_close(
            part[rows[in_part] - 1, cols[in_part]], full[rows[in_part], cols[in_part]], atol=1e-5, rtol=1e-5
        )
        changed = canvas.clone()
        changed[0, 7] = (changed[0, 7] + 1) % 300  # not queried: its keys stay the old token's
        stale = model.denoise(changed, ctx.cache, queries=queries)
        model.denoise(canvas, ctx.cache)  # the scratch back to the old canvas
        assert torch.equal(stale[rows, cols], model.denoise(canvas, ctx.cache, queries=queries)[rows, cols])
        fresh = model.denoise(changed, ctx.cache)
        assert not torch.allclose(fresh[0], full[0], atol=1e-4)  # a full step sees the change
