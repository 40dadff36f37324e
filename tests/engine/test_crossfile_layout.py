"""Cross-file chunks in every family's prompt: placed before the current file, tagged with their path, cut first."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.adapters import load_adapter_runner
from engine.adapters.families import LLADA, OPEN_DCODER
from engine.api import load_engine
from engine.contract import MAX_CHUNKS, CompletionRequest, ContextChunk
from engine.layout import N_CONTEXT_TAGS, chunk_text, collate, context_tokens, encode_chunks, fit_chunks
from engine.runner import DiffillRunner
from tests.engine.adapter_fixtures import tiny_checkpoint as family_checkpoint

CHUNKS = (
    ContextChunk("pkg/old.py", "OLD = 1\n"),
    ContextChunk("pkg/util.py", "def frobnicate(a, b):\n    return a + b"),
)


def request(prefix: str = "x = frob", suffix: str = "\n", chunks=CHUNKS) -> CompletionRequest:
    return CompletionRequest(prefix, suffix, "python", 8, 1, chunks=tuple(chunks))


def test_a_chunk_is_its_text_under_a_path_comment_of_the_language() -> None:
    assert chunk_text("pkg/util.py", "a = 1", "python") == "# path: pkg/util.py\na = 1\n"
    assert chunk_text("src/lib.rs", "fn f() {}\n", "rust") == "// path: src/lib.rs\nfn f() {}\n"


def test_fit_chunks_keeps_whole_chunks_from_the_most_relevant_backwards() -> None:
    chunks = [[1, 1, 1], [2, 2], [3, 3, 3, 3]]
    assert fit_chunks(chunks, 100) == [1, 1, 1, 2, 2, 3, 3, 3, 3]
    assert fit_chunks(chunks, 8) == [2, 2, 3, 3, 3, 3]  # the first goes first
    assert fit_chunks(chunks, 5) == [3, 3, 3, 3]  # no partial chunk once one fits
    assert fit_chunks(chunks, 2) == [3, 3]  # nothing fits whole: the head of the most relevant one
    assert fit_chunks(chunks, 0) == [] and fit_chunks([], 10) == []


def test_chunks_go_between_the_language_tag_and_the_current_file(small_tokenizer) -> None:
    tok = small_tokenizer
    prefix, suffix = tok.encode("x = frob"), tok.encode("\n")
    encoded = encode_chunks(tok.encode, CHUNKS, "python")
    context = context_tokens(tok, prefix, suffix, "python", 512, encoded)
    expected_chunks = tok.encode("# path: pkg/old.py\nOLD = 1\n") + tok.encode(
        "# path: pkg/util.py\ndef frobnicate(a, b):\n    return a + b\n"
    )
    assert context == [
        tok.language_id("python"),
        *expected_chunks,
        tok.fim_suffix_id,
        *suffix,
        tok.fim_prefix_id,
        *prefix,
        tok.fim_middle_id,
    ]
    assert context_tokens(tok, prefix, suffix, "python", 512) == context_tokens(tok, prefix, suffix, "python", 512, [])


def test_over_budget_the_chunks_go_first_never_the_text(small_tokenizer) -> None:
    tok = small_tokenizer
    prefix, suffix = tok.encode("value = compute(1)\n" * 10 + "x = "), tok.encode("\nprint(x)\n")
    encoded = encode_chunks(tok.encode, CHUNKS, "python")
    text = len(prefix) + len(suffix) + N_CONTEXT_TAGS
    just_last = context_tokens(tok, prefix, suffix, "python", text + len(encoded[1]), encoded)
    assert just_last[1 : 1 + len(encoded[1])] == encoded[1]  # the most relevant (last) chunk stays
    assert len(just_last) == text + len(encoded[1])
    none = context_tokens(tok, prefix, suffix, "python", text, encoded)
    assert none == context_tokens(tok, prefix, suffix, "python", text)  # the whole window, no chunk
    cut = context_tokens(tok, prefix, suffix, "python", text - 5, encoded)
    assert cut == context_tokens(tok, prefix, suffix, "python", text - 5)  # past that the window is trimmed as ever


def test_training_rows_give_chunks_their_share_and_the_text_the_rest(small_tokenizer) -> None:
    tok = small_tokenizer
    prefix, middle, suffix = tok.encode("a = 1\n" * 200), tok.encode("b"), tok.encode("\nc = 3\n" * 50)
    chunk = tok.encode(chunk_text("pkg/util.py", "def helper():\n    pass\n" * 10, "python"))
    batch = collate(tok, [(prefix, middle, suffix, "python", [chunk])], canvas_len=16, context_budget=300)
    row = batch.tokens[0, : batch.context_len].tolist()
    assert row[0] == tok.language_id("python")
    kept = row[1 : row.index(tok.fim_suffix_id)]
    assert 0 < len(kept) <= 100 and kept == chunk[: len(kept)]  # a third of the row at most
    assert len(row) == 300  # the text took the rest
    plain = collate(tok, [(prefix, middle, suffix, "python")], canvas_len=16, context_budget=300)
    assert tok.fim_suffix_id == plain.tokens[0, 1].item()  # rows without chunks are laid out as before


def test_diffill_runner_puts_the_request_chunks_in_the_prompt(tiny_checkpoint: Path) -> None:
    runner = load_engine(tiny_checkpoint, device="cpu").runner
    assert isinstance(runner, DiffillRunner)
    tok = runner.tokenizer
    with_chunks, plain = runner.prepare(request()), runner.prepare(request(chunks=()))
    extra = [t for chunk in encode_chunks(tok.encode, CHUNKS, "python") for t in chunk]
    assert with_chunks.tokens == [plain.tokens[0], *extra, *plain.tokens[1:]]
    assert with_chunks.requested_tokens == plain.requested_tokens  # chunks are cut, never refused


def test_too_many_chunks_are_refused(tiny_checkpoint: Path) -> None:
    engine = load_engine(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="at most"):
        engine.complete("x", "", language="python", canvas_length=4, num_candidates=1, chunks=[CHUNKS[0]] * 65)
    assert MAX_CHUNKS == 64


def test_released_coders_get_their_repository_format_or_plain_path_comments(tmp_path: Path) -> None:
    qwen = load_adapter_runner(family_checkpoint(tmp_path / "qwen", OPEN_DCODER), device="cpu", progress=False)
    tok = qwen.tokenizer
    prompt, plain = qwen.prepare(request()), qwen.prepare(request(chunks=()))
    sep, repo = tok.backend.token_to_id("<|file_sep|>"), tok.backend.token_to_id("<|repo_name|>")
    region = [
        repo,
        *tok.encode("myproject\n"),
        *(t for c in CHUNKS for t in [sep, *tok.encode(f"{c.path}\n{c.text.rstrip(chr(10))}\n")]),
        sep,
        *tok.encode("filename\n"),
    ]
    assert prompt.tokens == [*region, *plain.tokens]  # Open-dCoder has no bos: the chunks open the prompt
    assert prompt.layout.canvas_start == plain.layout.canvas_start + len(region)

    llada = load_adapter_runner(family_checkpoint(tmp_path / "llada", LLADA), device="cpu", progress=False)
    tok = llada.tokenizer
    prompt, plain = llada.prepare(request()), llada.prepare(request(chunks=()))
    extra = [t for chunk in encode_chunks(tok.encode, CHUNKS, "python") for t in chunk]
    assert prompt.tokens == [plain.tokens[0], *extra, *plain.tokens[1:]]  # after bos, before the prefix
