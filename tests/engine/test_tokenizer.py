"""Properties of the code tokenizer, checked on a real BPE trained on a few standard-library files."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest

from engine.errors import CheckpointError
from engine.tokenizer import GIL_FREE_CHARS, LANGUAGES, SPECIAL_TOKENS, CodeTokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAINING_FILES = ["textwrap.py", "shlex.py", "string.py", "difflib.py", "argparse.py", "dataclasses.py"]

TRICKY = [
    "",
    " ",
    "\n",
    "def f(x):\n    return x\n",
    "line one\r\nline two\r\n\r\n",
    "\r\r\n\n\r",
    "\tif (x) {\n\t\treturn 1;\n\t}\n",
    "trailing spaces   \n   \n",
    "emoji 😀🎉 and 👩‍👩‍👧 family",
    "中文注释 # 日本語のコメント\n한국어",
    "nul\x00byte\x01\x7f and \ufffd replacement",
    "zero\u200bwidth\u2028line\u2029para\x0bvt\x0cff\u00a0nbsp",
    "combining e\u0301 and rtl \u202eabc",
    "lone surrogates \ud800 and \udfff and swapped pair \ude00\ud83d",
    "x = 12345678901234567890 + 0x1F + 3.14e-10",
    "<|eos|><|pad|><|mask|><|fim_prefix|><|lang:python|>",
    "a" * 300 + " " * 100 + "=" * 100,
]


@pytest.fixture(scope="module")
def tokenizer() -> CodeTokenizer:
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in TRAINING_FILES]
    return train_tokenizer(texts, vocab_size=2048, show_progress=False)


@pytest.mark.parametrize("text", TRICKY)
def test_decode_of_encode_is_identity(tokenizer: CodeTokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_round_trip_holds_for_a_whole_source_file(tokenizer: CodeTokenizer) -> None:
    text = (STDLIB / "json" / "decoder.py").read_text(encoding="utf-8")
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_encode_batch_equals_encode_one_by_one(tokenizer: CodeTokenizer) -> None:
    assert tokenizer.encode_batch(TRICKY) == [tokenizer.encode(text) for text in TRICKY]


def test_a_long_text_gets_the_same_ids_on_the_gil_free_path(tokenizer: CodeTokenizer) -> None:
    # Past GIL_FREE_CHARS encode goes through tokenizers' encode_batch (which releases the GIL): same ids.
    text = "".join(TRICKY) * 40
    assert len(text) > GIL_FREE_CHARS
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    clean = text.replace("\ud800", "").replace("\udfff", "").replace("\ude00\ud83d", "")  # what Rust accepts
    assert tokenizer.encode(clean) == tokenizer._tokenizer.encode(clean, add_special_tokens=False).ids


def test_concatenated_decodes_equal_decode_of_concatenation(tokenizer: CodeTokenizer) -> None:
    # The canvas is decoded piece by piece by the sampler; pieces that end on character boundaries join.
    parts = ["def f(x):\n", "    return x\n", "print('😀')\n"]
    ids = [tokenizer.encode(part) for part in parts]
    assert "".join(tokenizer.decode(i) for i in ids) == tokenizer.decode([t for i in ids for t in i])


def test_special_tokens_are_never_produced_from_text(tokenizer: CodeTokenizer) -> None:
    for text in [*TRICKY, *SPECIAL_TOKENS.values(), "".join(SPECIAL_TOKENS.values())]:
        assert not set(tokenizer.encode(text)) & tokenizer.special_ids, text
    eos = tokenizer.encode("<|eos|>")
    assert len(eos) > 1 and tokenizer.decode(eos) == "<|eos|>"


def test_special_tokens_have_the_documented_ids(tokenizer: CodeTokenizer) -> None:
    assert (tokenizer.pad_id, tokenizer.mask_id, tokenizer.eos_id) == (0, 1, 2)
    assert (tokenizer.fim_prefix_id, tokenizer.fim_suffix_id, tokenizer.fim_middle_id) == (3, 4, 5)
    assert [tokenizer.language_id(language) for language in LANGUAGES] == list(range(6, 6 + len(LANGUAGES)))
    assert tokenizer.language_id("other") == len(SPECIAL_TOKENS) - 1
    assert tokenizer.vocab_size == 2048


def test_decode_skips_special_tokens(tokenizer: CodeTokenizer) -> None:
    ids = tokenizer.encode("x = 1")
    padded = [tokenizer.fim_prefix_id, *ids, tokenizer.eos_id, tokenizer.pad_id, tokenizer.mask_id]
    assert tokenizer.decode(padded) == "x = 1"


def test_decode_rejects_ids_outside_the_vocabulary(tokenizer: CodeTokenizer) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([tokenizer.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([-1])


def test_unknown_language_gets_the_other_tag(tokenizer: CodeTokenizer) -> None:
    other = tokenizer.language_id("other")
    assert tokenizer.language_id("cobol") == other
    assert tokenizer.language_id("") == other
    assert tokenizer.language_id(" Python ") == tokenizer.language_id("python") != other


def test_indentation_compresses(tokenizer: CodeTokenizer) -> None:
    assert 1 <= len(tokenizer.encode(" " * 8)) <= 2
    assert 1 <= len(tokenizer.encode("\n" + " " * 8)) <= 2
    for depth in (1, 2, 3, 4):
        assert len(tokenizer.encode("\n" + " " * 4 * depth)) == 1  # a line break and its indentation: 1 token


def test_first_line_indentation_is_split_like_every_other_line(tokenizer: CodeTokenizer) -> None:
    # A middle or a trimmed context often starts at a line start; its indentation must not swallow a word.
    first = tokenizer.encode("        return value")
    later = tokenizer.encode("\n        return value")
    assert first[1:] == later[1:]


def test_save_then_load_gives_the_same_tokenizer(tokenizer: CodeTokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "tokenizer.json").is_file()
    json.loads((tmp_path / "ckpt" / "tokenizer.json").read_text())  # a standard JSON tokenizer file
    for loaded in (
        CodeTokenizer.load(tmp_path / "ckpt"),
        CodeTokenizer.load(tmp_path / "ckpt" / "tokenizer.json"),
    ):
        assert loaded.vocab_size == tokenizer.vocab_size
        assert loaded.eos_id == tokenizer.eos_id
        assert [loaded.encode(text) for text in TRICKY] == [tokenizer.encode(text) for text in TRICKY]
        assert loaded.encode("<|eos|>") == tokenizer.encode("<|eos|>")


def test_missing_tokenizer_file_raises_checkpoint_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        CodeTokenizer.load(tmp_path)
    with pytest.raises(CheckpointError, match="nowhere.json"):
        CodeTokenizer.load(tmp_path / "nowhere.json")


@pytest.mark.parametrize("content", ["", "{not json", '{"version": "1.0"}', "[]"])
def test_corrupt_tokenizer_file_raises_checkpoint_error_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=str(path)):
        CodeTokenizer.load(tmp_path)


def test_tokenizer_without_our_special_tokens_is_rejected(tokenizer: CodeTokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path)
    path = tmp_path / "tokenizer.json"
    data = json.loads(path.read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|eos|>"]
    data["model"]["vocab"].pop("<|eos|>")
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=str(path)):
        CodeTokenizer.load(path)


def test_vocab_size_below_specials_and_bytes_is_rejected() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["x = 1\n"], vocab_size=100, show_progress=False)
