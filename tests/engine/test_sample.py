"""Sampler properties: no mask left, canvas length respected, <eos> tail rule, determinism, batching."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.api import LocalEngine
from engine.checkpoint import load_checkpoint
from engine.config import DEFAULT_TOP_K
from engine.contract import DEFAULT_TEMPERATURE, CompletionRequest, SampleOptions
from engine.runner import DiffillRunner, run_to_end
from engine.sample import Prediction, candidate_scores, confidence_peaks, denoise_step, predict

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> LocalEngine:
    return LocalEngine(DiffillRunner(*load_checkpoint(tiny_checkpoint, device="cpu")))


@torch.inference_mode()
def run_fill(engine: LocalEngine, options: SampleOptions, canvas_len: int = 16, n: int = 3):
    """One request's state driven to the end on a fresh context cache: canvas tokens and log-probs (n, L)."""
    runner = engine.runner
    prompt = runner.prepare(CompletionRequest(PREFIX, SUFFIX, "python", canvas_len, n, options))
    state, _ = runner.start(prompt, runner.new_cache())
    run_to_end(state, runner.forward)
    return state.tokens()


@pytest.mark.parametrize("steps,threshold", [(1, 0.9), (4, 0.9), (16, 1.0), (3, 0.0)])
def test_sampler_never_leaves_a_mask_and_respects_canvas_length(engine, steps: int, threshold: float) -> None:
    tokens, logp = run_fill(engine, SampleOptions(steps=steps, threshold=threshold), canvas_len=16)
    assert tokens.shape == logp.shape == (3, 16)
    assert not (tokens == engine.runner.tokenizer.mask_id).any()
    banned = set(engine.runner._banned.tolist())
    assert not banned & set(tokens.flatten().tolist())


def test_same_seed_same_output_other_seed_differs(engine) -> None:
    a, _ = run_fill(engine, SampleOptions(seed=7, temperature=1.5), n=4)
    b, _ = run_fill(engine, SampleOptions(seed=7, temperature=1.5), n=4)
    c, _ = run_fill(engine, SampleOptions(seed=8, temperature=1.5), n=4)
    assert torch.equal(a, b)
    assert not torch.equal(a[1:], c[1:])
    assert torch.equal(a[0], c[0])  # the first candidate is greedy whatever the seed


def test_a_request_that_leaves_the_temperature_to_the_model_gets_its_checkpoints(tiny_checkpoint, tmp_path) -> None:
    """SampleOptions.temperature None: the checkpoint's `temperature` (config.json), applied by the runner."""
    warm = with_config(tiny_checkpoint, tmp_path / "warm", temperature=3.0)
    engine = LocalEngine(DiffillRunner(*load_checkpoint(warm, device="cpu")))
    assert engine.describe()["temperature"] == 3.0
    own, _ = run_fill(engine, SampleOptions(seed=5), n=4)
    assert torch.equal(own, run_fill(engine, SampleOptions(seed=5, temperature=3.0), n=4)[0])
    assert not torch.equal(own[1:], run_fill(engine, SampleOptions(seed=5, temperature=0.3), n=4)[0][1:])
    default = LocalEngine(DiffillRunner(*load_checkpoint(tiny_checkpoint, device="cpu")))  # names none: 0.8
    assert default.describe()["temperature"] == DEFAULT_TEMPERATURE == 0.8
    same = run_fill(default, SampleOptions(seed=5, temperature=DEFAULT_TEMPERATURE), n=4)[0]
    assert torch.equal(run_fill(default, SampleOptions(seed=5), n=4)[0], same)


def with_config(checkpoint, dst, **fields):
    """A copy of `checkpoint` whose config.json has `fields` changed."""
    shutil.copytree(checkpoint, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, **fields}))
    return dst


@pytest.mark.parametrize("twin", ["diffusion", "autoregressive"])
def test_the_alternatives_draw_from_the_models_own_top_k(tiny_checkpoint, small_tokenizer, tmp_path, twin) -> None:
    """config.json `top_k`: with 1 every sampled candidate takes the likeliest token, as the greedy one does; the
    default (16) lets them differ. Both twins' states read it."""
    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel

    checkpoint = tiny_checkpoint
    if twin == "autoregressive":
        torch.manual_seed(0)
        model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size, causal_canvas=True)).eval()
        checkpoint = save_checkpoint(tmp_path / "ar", model, small_tokenizer)
    options = SampleOptions(seed=5, temperature=3.0)
    default = LocalEngine(DiffillRunner(*load_checkpoint(checkpoint, device="cpu")))
    assert default.describe()["top_k"] == DEFAULT_TOP_K == 16
    spread, _ = run_fill(default, options, n=4)
    assert not all(torch.equal(spread[0], row) for row in spread[1:])
    narrow = LocalEngine(DiffillRunner(*load_checkpoint(with_config(checkpoint, tmp_path / "k1", top_k=1))))
    assert narrow.describe()["top_k"] == 1
    one, _ = run_fill(narrow, options, n=4)
    assert all(torch.equal(one[0], row) for row in one[1:])
    assert torch.equal(one[0], spread[0])  # the greedy candidate does not depend on top_k


def test_a_negative_temperature_is_refused() -> None:
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SampleOptions(temperature=-0.1)


def prediction(tokens: list[list[int]], conf: list[list[float]], content=None, content_conf=None) -> Prediction:
    tokens_t, conf_t = torch.tensor(tokens), torch.tensor(conf)
    content_t = tokens_t if content is None else torch.tensor(content)
    return Prediction(tokens_t, conf_t, content_t, conf_t if content_conf is None else torch.tensor(content_conf))


def test_eos_tail_grows_from_the_right_and_fills_the_rest() -> None:
    eos, mask = 2, 1
    canvas = torch.full((2, 6), mask)
    masked = torch.ones(2, 6, dtype=torch.bool)
    logp = torch.zeros(2, 6)
    pred = prediction(
        [[10, eos, 11, eos, eos, eos], [20, 21, 22, 23, 24, 25]],
        [[0.95, 0.99, 0.3, 0.97, 0.5, 0.2], [0.1] * 6],
        content=[[10, 31, 11, 33, 34, 35], [20, 21, 22, 23, 24, 25]],
        content_conf=[[0.95, 0.4, 0.3, 0.01, 0.3, 0.5], [0.1] * 6],
    )
    denoise_step(canvas, masked, logp, pred, steps_left=6, threshold=0.9, eos_id=eos)
    # Row 0: the sure <eos> at 1 may not end the middle before 11 at 2, so position 1 takes its content token
    # (0.4: not committed); <eos> at 3 starts the tail and fills 4, 5; 10 at 0 passes the threshold.
    assert canvas[0].tolist() == [10, mask, mask, eos, eos, eos]
    assert masked[0].tolist() == [False, True, True, False, False, False]
    assert logp[0, 4:].eq(0).all()
    # Row 1: nothing passes; ceil(6 / 6) = 1 position committed, the most confident (first on ties).
    assert masked[1].sum() == 5


def test_committed_content_keeps_eos_out_of_earlier_positions() -> None:
    eos, mask = 2, 1
    canvas = torch.tensor([[mask, mask, 7, mask]])
    masked = torch.tensor([[True, True, False, True]])
    pred = prediction([[eos, eos, eos, eos]], [[0.99] * 4], content=[[40, 41, 42, 43]], content_conf=[[0.5] * 4])
    denoise_step(canvas, masked, torch.zeros(1, 4), pred, steps_left=3, threshold=0.9, eos_id=eos)
    assert canvas.tolist() == [[mask, mask, 7, eos]]  # 40/41 are not sure enough; only the tail took <eos>


def test_every_row_ends_the_middle_where_eos_is_the_likeliest_token() -> None:
    eos = 2
    vocab = 10
    # Position 0: <eos> 0.3 is the likeliest single token (five content tokens share the rest).
    # Position 1: <eos> 0.35, one content token 0.45: content.
    probs = torch.full((1, 2, vocab), 1e-6)
    probs[0, 0, eos], probs[0, 0, 4:9] = 0.3, torch.tensor([0.2, 0.15, 0.15, 0.1, 0.1])
    probs[0, 1, eos], probs[0, 1, 5], probs[0, 1, 6] = 0.35, 0.45, 0.2
    greedy = torch.zeros(1, 1, 1)
    pred = predict(probs.log(), greedy, torch.tensor([0, 1]), torch.Generator().manual_seed(0), eos, DEFAULT_TOP_K)
    assert pred.tokens.tolist() == [[eos, 5]]
    assert pred.content.tolist() == [[4, 5]]  # where <eos> may not go yet, the best content token
    assert pred.conf[0, 0].item() == pytest.approx(0.3, rel=1e-4)
    # Sampled rows end where <eos> is the likeliest token, whatever they draw, and elsewhere draw <eos> as often
    # as the model says.
    hot = torch.ones(1, 1, 1)
    logits = probs.log().expand(4000, 2, vocab)
    draws = predict(
        logits, hot.expand(4000, 1, 1), torch.tensor([0, 1]), torch.Generator().manual_seed(0), eos, DEFAULT_TOP_K
    )
    assert (draws.tokens[:, 0] == eos).all()
    assert (draws.tokens[:, 1] == eos).float().mean().item() == pytest.approx(0.35, abs=0.03)


def test_step_budget_commits_at_least_remaining_over_steps_left() -> None:
    canvas = torch.full((1, 10), 1)
    masked = torch.ones(1, 10, dtype=torch.bool)
    logp = torch.zeros(1, 10)
    pred = prediction([list(range(10, 20))], [torch.linspace(0.1, 0.5, 10).tolist()])
    denoise_step(canvas, masked, logp, pred, steps_left=3, threshold=0.9, eos_id=2)
    assert int((~masked).sum()) == 4  # ceil(10 / 3)
    assert (~masked)[0, 6:].all()  # the four most confident


def test_committed_tokens_are_never_resampled() -> None:
    canvas = torch.tensor([[5, 1, 1]])
    masked = torch.tensor([[False, True, True]])
    logp = torch.tensor([[-0.5, 0.0, 0.0]])
    pred = prediction([[9, 9, 9]], [[1.0, 1.0, 1.0]])
    denoise_step(canvas, masked, logp, pred, steps_left=1, threshold=0.5, eos_id=2)
    assert canvas.tolist() == [[5, 9, 9]]
    assert logp[0, 0] == -0.5


def test_candidate_score_counts_tokens_through_first_eos() -> None:
    tokens = torch.tensor([[7, 8, 2, 2], [7, 8, 9, 10]])
    logp = torch.tensor([[-1.0, -3.0, -2.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    assert candidate_scores(tokens, logp, eos_id=2).tolist() == [-2.0, -1.0]


def test_autoregressive_twin_decodes_with_same_interface(tmp_path, small_tokenizer) -> None:
    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel

    torch.manual_seed(0)
    model = DiffillModel(preset("tiny", vocab_size=small_tokenizer.vocab_size, causal_canvas=True)).eval()
    runner = DiffillRunner(*load_checkpoint(save_checkpoint(tmp_path / "ar", model, small_tokenizer), device="cpu"))
    engine = LocalEngine(runner)
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=12, num_candidates=2)
    assert len(out) == 2 and all(c.tokens <= 12 for c in out)
    # Left-to-right decoding with the cache equals greedy decoding by full forwards.
    tok = runner.tokenizer
    greedy = SampleOptions(temperature=0.0, early_exit=False)
    tokens, _ = run_fill(engine, greedy, canvas_len=6, n=1)
    context = runner.prepare(CompletionRequest(PREFIX, SUFFIX, "python", 6, 1, greedy)).tokens
    seq = list(context)
    with torch.inference_mode():
        for _ in range(6):
            logits = runner.model(torch.tensor([seq]), torch.tensor([0]), len(seq))[0, -1].float()
            logits[runner._banned] = -float("inf")
            probs = logits.softmax(-1)
            seq.append(int(probs.argmax()))  # greedy: the likeliest token, <eos> included
    expected = seq[len(context) :]
    got = tokens[0].tolist()
    if tok.eos_id in expected:  # after <eos> the sampler pads with <eos>
        cut = expected.index(tok.eos_id) + 1
        expected = expected[:cut] + [tok.eos_id] * (6 - cut)
    assert got == expected


def test_engine_returns_n_candidates_with_finite_scores(engine) -> None:
    out = engine.complete(PREFIX, SUFFIX, language="python", canvas_length=16, num_candidates=3, session_id="a")
    assert len(out) == 3
    assert all(c.tokens <= 16 and c.score <= 0.0 for c in out)
    again = engine.complete(PREFIX + "a", SUFFIX, language="python", canvas_length=16, num_candidates=3, session_id="a")
    assert len(again) == 3
    assert engine.last_stats.computed_tokens < engine.last_stats.context_tokens  # the session cache was reused


def test_engine_rejects_bad_canvas_and_candidates_and_clamps_long_canvas(engine) -> None:
    with pytest.raises(ValueError, match="canvas_length"):
        engine.complete("a", "b", language="python", canvas_length=0, num_candidates=1)
    long = engine.complete("a", "b", language="python", canvas_length=10_000, num_candidates=1)
    assert long[0].tokens <= engine.runner.max_canvas
    with pytest.raises(ValueError, match="num_candidates"):
        engine.complete("a", "b", language="python", canvas_length=8, num_candidates=0)


def test_forced_commits_go_to_confidence_peaks_before_their_neighbours() -> None:
    # Four masked positions, one forced commit each step over two steps: 0.6 beside 0.5 would commit both
    # neighbours by confidence alone; peaks first takes 0.6 (a peak) and 0.4 (a peak), never 0.5 beside 0.6.
    canvas = torch.full((1, 4), 1)
    masked = torch.ones(1, 4, dtype=torch.bool)
    pred = prediction([[10, 11, 12, 13]], [[0.5, 0.6, 0.1, 0.4]])
    denoise_step(canvas, masked, torch.zeros(1, 4), pred, steps_left=2, threshold=0.9, eos_id=2)
    assert canvas.tolist() == [[1, 11, 1, 13]]
    assert confidence_peaks(torch.tensor([[0.5, 0.6, 0.1, 0.4, -1.0, 0.2]])).tolist() == [
        [False, True, False, True, False, True]
    ]
    # Positions beside committed text (-1) are peaks: a row grows from what it has.
    assert confidence_peaks(torch.tensor([[-1.0, 0.3, 0.7, 0.9]])).tolist() == [[False, False, False, True]]
