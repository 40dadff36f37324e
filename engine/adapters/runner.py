"""The released diffusion coders on the engine's one request path: their runner, denoising state and loader.

Infilling prompt formats (each family's own; see ``docs/external-models.md``):

* Dream / Dream-Coder / DiffuCoder: ``<|beginoftext|> prefix [mask] * L suffix <|endoftext|>`` (DreamOn's
  ``process_infilling_prompt``);
* Open-dCoder: ``prefix [mask] * L suffix`` (its ``eval_infill.py``; Qwen2 adds no bos); CoDA and Tiny-A2D, which
  publish no infilling format, the same plain layout;
* LLaDA: ``<|startoftext|> prefix <|mdm_mask|> * L suffix`` (plain text around the masks, as in its paper's
  infilling use; bos as its tokenizer starts every text).

Cross-file chunks (``CompletionRequest.chunks``) go after bos, before the prefix: in Qwen2.5-Coder's repository
format when the tokenizer has its tokens (Dream-Coder, DiffuCoder and Open-dCoder are Qwen2.5-Coder derived), laid
out as llama.cpp's ``/infill`` lays out ``input_extra`` for such models (``<|repo_name|>myproject``, then
``<|file_sep|>path`` + text per chunk, then ``<|file_sep|>filename`` before the current file); else under plain path
comments (``engine.layout.chunk_text``). They get the room the text leaves (``engine.layout.fit_chunks``).

A canvas of L masks sits in place of the middle; the model attends both ways, so the suffix conditions the middle
directly. The middle is the canvas up to its first end token (eos, or the padding the model was trained to fill
unused positions with, e.g. Dream's ``<|dlm_pad|>``). With full bidirectional attention the prompt's keys depend
on the canvas, so there is no exact context cache to keep across requests (``session_cache = False``); the
approximate Fast-dLLM cache lives inside one request's state.

The runner holds one ``Preset`` (``engine.adapters.presets``): ``prepare`` turns the request's sampling options into
the preset's, so the in-process engine and the server's scheduler run the same settings.

``forward`` packs the exact full passes of several requests into one batch (``DiffusionLM.encode_packed``: the
projections run once over every token, attention per request), which is what continuous batching buys on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import Tensor

from engine.adapters.families import Family, arch_spec, detect_family
from engine.adapters.model import ContextKV, DiffusionLM, ServingLimits, default_limits
from engine.adapters.presets import Preset, family_preset
from engine.adapters.sampler import (
    AdapterSampling,
    Layout,
    blocks,
    commit,
    commit_count,
    full_pass,
    p2_commit,
    predict,
    window_pass,
)
from engine.adapters.tokenizer import AdapterTokenizer
from engine.adapters.weights import load_tensors, tensor_locations
from engine.cache import ContextCache
from engine.checkpoint import default_dtype, resolve_device
from engine.config import read_config
from engine.contract import (
    DEFAULT_PRESET,
    DEFAULT_TEMPERATURE,
    Completion,
    CompletionRequest,
    ContextChunk,
    SampleOptions,
    fit_canvas,
    with_temperature,
)
from engine.errors import CheckpointError
from engine.layout import encode_chunks, fit_chunks, fit_context
from engine.runner import Prompt, StepBudget, TokenizedRunner, run_to_end
from engine.sample import end_at_line_limit, row_temperatures


def build_layout(
    family: Family, tok: AdapterTokenizer, prefix: list[int], suffix: list[int], canvas: int, extra: Sequence[int] = ()
) -> Layout:
    head = [tok.bos_id] if family.bos_in_prompt and tok.bos_id is not None else []
    head = [*head, *extra]  # cross-file chunks, before the current file
    tail = [tok.eos_id] if family.eos_after_suffix else []
    start = len(head) + len(prefix)
    tokens = [*head, *prefix, *[tok.mask_id] * canvas, *suffix, *tail]
    return Layout(tokens=tokens, canvas_start=start, canvas_len=canvas, shift=family.shift_logits)


def chunk_region(tok: AdapterTokenizer, chunks: tuple[ContextChunk, ...], language: str, room: int) -> list[int]:
    """The cross-file chunks that fit in `room` tokens, with the repository format's framing when the tokenizer has
    Qwen2.5-Coder's tokens, else under plain path comments; [] when none fits."""
    sep, repo = tok.backend.token_to_id("<|file_sep|>"), tok.backend.token_to_id("<|repo_name|>")
    if not chunks:
        return []
    if sep is None or repo is None:
        return fit_chunks(encode_chunks(tok.encode, chunks, language), room)
    head, tail = [repo, *tok.encode("myproject\n")], [sep, *tok.encode("filename\n")]
    ends = ["" if c.text.endswith("\n") else "\n" for c in chunks]
    encoded = [[sep, *tok.encode(f"{c.path}\n{c.text}{end}")] for c, end in zip(chunks, ends, strict=True)]
    kept = fit_chunks(encoded, room - len(head) - len(tail))
    return [*head, *kept, *tail] if kept else []


def middle_and_score(row: list[int], logp: list[float], end_ids: frozenset[int]) -> tuple[list[int], float]:
    """The middle (tokens before the first end token) and the mean log-probability up to and including it."""
    end = next((i for i, t in enumerate(row) if t in end_ids), None)
    scored = logp[: (end + 1 if end is not None else len(row))]
    return row[:end] if end is not None else row, sum(scored) / max(1, len(scored))


class AdapterState(StepBudget):
    """The loop variables of the family's reference sampler (``engine.adapters.sampler``) for one request.

    Blocks (LLaDA's semi-autoregressive schedule; one block otherwise) are filled left to right; within a block,
    step j commits ``commit_count`` positions plus any above the threshold (``p2``: re-masks all but a growing
    fraction instead). With ``refresh_every = r > 0`` a step that is not a refresh step recomputes only the canvas
    window against the keys/values kept at the last refresh. With ``options.max_lines`` a row is over once its
    committed text holds that many line breaks: the rest of its canvas becomes end tokens and needs no steps
    (blocks left with nothing to fill are skipped).
    """

    def __init__(
        self,
        prompt: Prompt,
        sampling: AdapterSampling,
        banned: Tensor,
        device: torch.device,
        line_end: tuple[Tensor, int] | None = None,
    ) -> None:
        req, layout = prompt.request, prompt.layout
        n = req.num_candidates
        self.options, self.sampling, self.layout, self.banned = req.options, sampling, layout, banned
        self.line_end = line_end if req.options.max_lines else None  # (line breaks per token, end token)
        self.generator = torch.Generator(device=device).manual_seed(req.options.seed)
        self.seq = torch.tensor(layout.tokens, device=device).repeat(n, 1)  # (N, T)
        c0, length = layout.canvas_start, layout.canvas_len
        self.mask_id = layout.tokens[c0]  # the canvas starts as masks
        self.canvas = self.seq[:, c0 : c0 + length]  # a view: commits write into seq
        self.masked = torch.ones(self.canvas.shape, dtype=torch.bool, device=device)
        self.logp = torch.zeros(self.canvas.shape, device=device)
        self.temps = row_temperatures(n, req.options.temperature, device)
        self.draw = n > 1 and req.options.temperature > 0  # row 0 is always greedy
        self.blocks = blocks(length, sampling.block_length, req.options.steps)
        self.block, self.block_step, self.steps_done = 0, 0, 0
        self.ctx: ContextKV | None = None  # approximate cache (refresh_every > 0)
        self._allowed = self._block_mask()

    def _block_mask(self) -> Tensor:
        allowed = torch.zeros(self.layout.canvas_len, dtype=torch.bool, device=self.seq.device)
        if self.block < len(self.blocks):
            b0, b1, _ = self.blocks[self.block]
            allowed[b0:b1] = True
        return allowed

    @property
    def approximate(self) -> bool:
        return self.sampling.refresh_every > 0

    @property
    def needs_full_pass(self) -> bool:
        """This step runs the exact forward (always, or on a refresh step / block start of the approximate cache)."""
        s = self.sampling
        return not self.approximate or self.block_step == 0 or self.steps_done % s.refresh_every == 0

    def step(self, logits: Tensor) -> None:
        predicted = predict(logits, self.temps, self.sampling, self.banned, self.generator, self.draw)
        block_steps = self.blocks[self.block][2]
        if self.sampling.schedule == "p2":  # one block: the whole canvas
            p2_commit(self.canvas, self.masked, self.logp, predicted, self.block_step, block_steps, self.mask_id)
        else:
            remaining = (self.masked & self._allowed).sum(dim=-1, keepdim=True)
            count = commit_count(remaining, self.block_step, block_steps, self.sampling)
            commit(self.canvas, self.masked, self.logp, predicted, count, self.options.threshold, self._allowed)
        if self.line_end is not None:
            breaks, end_id = self.line_end
            end_at_line_limit(self.canvas, self.masked, self.logp, breaks, self.options.max_lines, end_id)
        self.steps_done += 1
        self.block_step += 1
        block_done = self.block_step >= block_steps
        if not block_done and self.options.early_exit:
            block_done = not bool((self.masked & self._allowed).any())  # the reference sampler's host sync
        while block_done:
            self.block, self.block_step = self.block + 1, 0
            self._allowed = self._block_mask()
            # A later block the line limit already filled needs no steps.
            block_done = self.line_end is not None and self.block < len(self.blocks)
            block_done = block_done and not bool((self.masked & self._allowed).any())

    def open_flag(self) -> Tensor:
        return torch.tensor(int(self.block < len(self.blocks)))

    @property
    def exhausted(self) -> bool:
        return self.block >= len(self.blocks)


class AdapterRunner(TokenizedRunner):
    """A released diffusion coder: its prompt format, forward, sampling preset and end tokens."""

    session_cache = False

    def __init__(
        self, model: DiffusionLM, tokenizer: AdapterTokenizer, family: Family, preset: Preset, name: str = "external"
    ) -> None:
        self.model, self.tokenizer, self.family, self.preset, self.name = model, tokenizer, family, preset, name
        self.sampling = preset.sampling
        self.max_context, self.max_canvas = model.limits.max_context, model.limits.max_canvas
        rows = model.spec.vocab_size
        unused = range(min(tokenizer.vocab_size, rows), rows)  # head rows past the tokenizer decode to nothing
        banned = sorted(set(tokenizer.special_ids) | set(unused))
        self._banned = torch.tensor(banned, dtype=torch.long, device=self.device)

    def new_cache(self) -> ContextCache:
        raise TypeError(f"{self.family.name} models attend both ways: there is no exact context cache to keep")

    @property
    def _format_tokens(self) -> int:
        return int(self.family.bos_in_prompt) + int(self.family.eos_after_suffix)

    def prepare(self, request: CompletionRequest) -> Prompt:
        tok = self.tokenizer
        canvas = fit_canvas(request.canvas_length, self.max_canvas)
        prefix, suffix = tok.encode(request.prefix), tok.encode(request.suffix)
        room = self.max_context - self._format_tokens
        before, after = fit_context(prefix, suffix, room)
        extra = chunk_region(tok, request.chunks, request.language, room - len(before) - len(after))
        layout = build_layout(self.family, tok, before, after, canvas, extra)
        requested = len(prefix) + len(suffix) + self._format_tokens
        # Left to the model (None): a released coder's fast sampling has no tuned temperature of its own.
        request = with_temperature(request, DEFAULT_TEMPERATURE)
        request = replace(request, options=self.preset.options(request.options, canvas))
        return Prompt(request, layout.tokens, canvas, requested_tokens=requested, layout=layout)

    def start(self, prompt: Prompt, ctx: ContextCache | None) -> tuple[AdapterState, int]:
        line_end = (self.line_breaks, self.tokenizer.eos_id) if prompt.request.options.max_lines else None
        return AdapterState(prompt, self.sampling, self._banned, self.device, line_end), len(prompt.tokens)

    def forward(self, states: list[AdapterState]) -> list[Tensor]:
        return step_logits(self.model, states)

    def completions(self, state: AdapterState) -> list[Completion]:
        tok = self.tokenizer
        out = []
        for row, lp in zip(state.canvas.tolist(), state.logp.tolist(), strict=True):
            middle, score = middle_and_score(row, lp, tok.end_ids)
            out.append(Completion(text=tok.decode(middle), score=float(score), tokens=len(middle)))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "diffusion",
            "family": self.family.name,
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "dtype": str(self.model.embed.weight.dtype).removeprefix("torch."),
            "max_context": self.max_context,
            "max_text_tokens": self.max_context - self._format_tokens,  # prefix + suffix (fim budgets against it)
            "max_canvas": self.max_canvas,
            "preset": self.preset.name,
            "sampling": asdict(self.sampling),
        }


def step_logits(model: DiffusionLM, states: list[AdapterState]) -> list[Tensor]:
    """One step's canvas logits per state: exact full passes packed into one batch, window passes alone."""
    out: list[Tensor | None] = [None] * len(states)
    packed = [i for i, s in enumerate(states) if s.needs_full_pass and not s.approximate]
    if len(packed) > 1:
        hidden = model.encode_packed([states[i].seq for i in packed])
        for i, h in zip(packed, hidden, strict=True):
            out[i] = model.head(h[:, states[i].layout.logit_positions()])
    for i, state in enumerate(states):
        if out[i] is not None:
            continue
        if state.needs_full_pass:
            out[i], ctx = full_pass(model, state.seq, state.layout, keep=state.approximate)
            state.ctx = ctx if state.approximate else None
        else:
            assert state.ctx is not None  # a window step always follows a refresh
            out[i] = window_pass(model, state.seq, state.layout, state.ctx)
    return out  # type: ignore[return-value]


@torch.inference_mode()
def fill_layout(
    model: DiffusionLM, layout: Layout, n: int, options: SampleOptions, sampling: AdapterSampling, banned: Tensor
) -> tuple[Tensor, Tensor]:
    """Fill a laid-out prompt for n candidates through the request path's state (as ``LocalEngine`` drives it):
    canvas tokens and commit log-probabilities, (n, L) each. For benchmarks and tests on raw layouts."""
    request = with_temperature(CompletionRequest("", "", "other", layout.canvas_len, n, options), DEFAULT_TEMPERATURE)
    state = AdapterState(Prompt(request, layout.tokens, layout.canvas_len, len(layout.tokens), layout), sampling,
                         banned, model.embed.weight.device)  # fmt: skip
    run_to_end(state, lambda states: step_logits(model, states))
    return state.canvas.clone(), state.logp


def is_external(directory: str | Path) -> bool:
    """True when config.json names an architecture other than Diffill's own (which may omit model_type)."""
    config = read_config(Path(directory) / "config.json")
    return str(config.get("model_type", "diffill")).lower() != "diffill" or bool(config.get("architectures"))


def load_model(
    directory: Path,
    family: Family,
    config: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    limits: ServingLimits | None = None,
    progress: bool = True,
) -> DiffusionLM:
    """Build on the meta device, then fill tensor by tensor from the (possibly sharded) safetensors files."""
    spec = arch_spec(family, config, directory / "config.json")
    if family.head_from_weights and spec.tie_embeddings and family.head_name in tensor_locations(directory):
        spec = replace(spec, tie_embeddings=False)  # the weights carry their own head: use it
    with init_empty_weights():
        model = DiffusionLM(spec, limits or default_limits(spec, family.trained_context))
    load_tensors(model, directory, family.tensor_names(spec), device, dtype, progress)
    model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if left:
        raise CheckpointError(f"parameters {left[:3]} were not loaded from {directory}")
    return model.eval()


def load_adapter_runner(
    path: str | Path,
    device: str = "auto",
    *,
    dtype: torch.dtype | None = None,
    preset: str = DEFAULT_PRESET,
    sampling: AdapterSampling | None = None,
    limits: ServingLimits | None = None,
    progress: bool = True,
) -> AdapterRunner:
    """Load an external checkpoint directory. bf16 on GPU, float32 on CPU unless dtype is given. `preset`: "fast" or
    "reference" (``engine.adapters.presets``); `sampling` replaces the preset's sampler settings (benchmarks)."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    config = read_config(directory / "config.json")
    family = detect_family(config, directory / "config.json")
    tokenizer = AdapterTokenizer.load(directory, family, config)
    dev = resolve_device(device)
    dtype = dtype or default_dtype(dev)
    model = load_model(directory, family, config, dev, dtype, limits, progress)
    if tokenizer.mask_id >= model.spec.vocab_size:
        raise CheckpointError(
            f"mask token id {tokenizer.mask_id} is outside the model's {model.spec.vocab_size} embedding rows "
            f"({directory / 'config.json'})"
        )
    chosen = family_preset(family, preset)
    if sampling is not None:
        chosen = replace(chosen, sampling=sampling)
    return AdapterRunner(model, tokenizer, family, chosen, name=directory.name)
