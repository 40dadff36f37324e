"""Byte-level BPE tokenizer for code, with the special tokens of the fill-in-the-middle format.

Why byte-level: every string (CRLF, tabs, emoji, CJK, NUL bytes, even lone surrogates) must survive
`decode(encode(s)) == s` exactly, because completions are spliced back into the user's buffer. The 256 byte
symbols are always in the vocabulary, so no text is ever unknown.

Why a custom split pattern instead of GPT-2's: indentation carries code structure and is most of the bytes of
a source file. A line break is kept together with the indentation of the next line ("\\n" + 8 spaces becomes
one pre-token, and BPE learns it as one token; a text's first line keeps its indentation whole the same
way), runs of spaces inside a line leave their last space to the following word (as in GPT-4's pattern),
digits are split in groups of at most 3, and punctuation runs stay apart from identifiers. The pattern is
otherwise the GPT-4 (cl100k) one.

Special tokens come first, so their ids are fixed: `SPECIAL_TOKENS` lists them in id order (pad = 0, mask = 1,
eos = 2, fim_prefix = 3, fim_suffix = 4, fim_middle = 5, then one language tag per language in `LANGUAGES`
and "<|lang:other|>"). Plain text never produces them: encoding runs with `encode_special_tokens = True`, and
the split pattern never yields a pre-token that contains a whole special token, so no merge can build one.

Decoding is done here, not by the `tokenizers` decoder: ids map to their bytes through a table and the bytes
are decoded as UTF-8 with lone surrogates restored (the inverse of how `encode` writes them) and any other
invalid sequence replaced by U+FFFD (a canvas may end mid-character). The saved `tokenizer.json` is a standard
Hugging Face tokenizers file, with a ByteLevel decoder, so other tools can read it too.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from engine.errors import CheckpointError

__all__ = ["LANGUAGES", "SPECIAL_TOKENS", "CodeTokenizer", "train_tokenizer"]

GIL_FREE_CHARS = 8192  # texts longer than this are tokenized with the GIL released (same ids, same speed)
LANGUAGES: tuple[str, ...] = ("python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp")

# Name -> token text, in id order: SPECIAL_TOKENS's i-th entry has id i.
SPECIAL_TOKENS: dict[str, str] = {
    "pad": "<|pad|>",
    "mask": "<|mask|>",
    "eos": "<|eos|>",
    "fim_prefix": "<|fim_prefix|>",
    "fim_suffix": "<|fim_suffix|>",
    "fim_middle": "<|fim_middle|>",
    **{f"lang:{language}": f"<|lang:{language}|>" for language in LANGUAGES},
    "lang:other": "<|lang:other|>",
}

_LANGUAGE_IDS: dict[str, int] = {
    name.removeprefix("lang:"): index for index, name in enumerate(SPECIAL_TOKENS) if name.startswith("lang:")
}

TOKENIZER_FILE = "tokenizer.json"

SPLIT_PATTERN = (
    r"\A[^\S\r\n]+"  # the first line's indentation, whole, as on every other line
    r"|(?:\r?\n|\r)+[^\S\r\n]*"  # line breaks (blank lines too) with the next line's indentation
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"  # a word, with one leading space or symbol ("_bar", ".baz", " x")
    r"|\p{N}{1,3}"  # digits in groups of up to 3
    r"| ?[^\s\p{L}\p{N}]+"  # punctuation runs, with one leading space
    r"|[^\S\r\n]+(?!\S)"  # spaces before another space or a line end (the last one joins the next word)
    r"|[^\S\r\n]+"  # trailing spaces at the end of the text
    r"|\s+"  # anything else that is white
)

_SURROGATES = re.compile("[\ud800-\udfff]+")


@functools.cache
def _byte_symbols() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the alphabet of ByteLevel BPE)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return symbols


def _surrogate_or_replace(error: UnicodeError) -> tuple[str, int]:
    """UTF-8 decode error handler: restore an encoded lone surrogate (ED A0-BF 80-BF), else emit U+FFFD."""
    assert isinstance(error, UnicodeDecodeError)
    data, start = error.object, error.start
    chunk = data[start : start + 3]
    if len(chunk) == 3 and chunk[0] == 0xED and 0xA0 <= chunk[1] <= 0xBF and 0x80 <= chunk[2] <= 0xBF:
        return chunk.decode("utf-8", "surrogatepass"), start + 3
    return "\ufffd", error.end


_DECODE_ERRORS = "diffill.surrogate_or_replace"
codecs.register_error(_DECODE_ERRORS, _surrogate_or_replace)


def _new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class CodeTokenizer:
    """A trained `tokenizers.Tokenizer` plus the ids the engine needs and an exact byte-level decoder."""

    def __init__(self, tokenizer: Tokenizer, source: str = "<memory>") -> None:
        # Special tokens are matched in text by default; we never want that from user code.
        tokenizer.encode_special_tokens = True
        self._tokenizer = tokenizer
        self.vocab_size: int = tokenizer.get_vocab_size(with_added_tokens=True)
        for expected_id, text in enumerate(SPECIAL_TOKENS.values()):
            if tokenizer.token_to_id(text) != expected_id:
                raise CheckpointError(f"{source}: special token {text!r} is not at id {expected_id}")
        ids = {name: index for index, name in enumerate(SPECIAL_TOKENS)}
        self.pad_id: int = ids["pad"]
        self.mask_id: int = ids["mask"]
        self.eos_id: int = ids["eos"]
        self.fim_prefix_id: int = ids["fim_prefix"]
        self.fim_suffix_id: int = ids["fim_suffix"]
        self.fim_middle_id: int = ids["fim_middle"]
        self.special_ids: frozenset[int] = frozenset(range(len(SPECIAL_TOKENS)))
        self._token_bytes = _token_bytes_table(tokenizer, self.vocab_size, source)
        byte_to_id = {byte: tokenizer.token_to_id(symbol) for byte, symbol in _byte_symbols().items()}
        if None in byte_to_id.values():
            raise CheckpointError(f"{source}: vocabulary lacks some of the 256 byte symbols")
        self._byte_ids: dict[int, int] = byte_to_id  # type: ignore[assignment]

    def language_id(self, language: str) -> int:
        """Id of the language tag; "<|lang:other|>" for languages without one.

        Expects canonical names (`fim.languages.normalize_language`); only case and surrounding spaces are
        forgiven here, so the tokenizer stays independent of `fim`.
        """
        return _LANGUAGE_IDS.get(language.strip().lower(), _LANGUAGE_IDS["other"])

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; never special tokens, whatever the text contains. A long text goes through
        ``encode_batch``, which releases the GIL (``Tokenizer.encode`` holds it, ~1 ms per 1,000 characters): a
        server tokenizing a big prompt in a worker thread keeps answering meanwhile."""
        try:
            if len(text) > GIL_FREE_CHARS:
                return self._tokenizer.encode_batch([text], add_special_tokens=False)[0].ids
            return self._tokenizer.encode(text, add_special_tokens=False).ids
        except TypeError:
            if not _SURROGATES.search(text):
                raise
            return self._encode_with_surrogates(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` over many texts, in parallel inside `tokenizers` (Rust threads)."""
        try:
            return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        except TypeError:
            return [self.encode(text) for text in texts]

    def _encode_with_surrogates(self, text: str) -> list[int]:
        """Lone surrogates cannot cross into Rust: write each as its 3 surrogatepass bytes, one id each."""
        ids: list[int] = []
        position = 0
        for match in _SURROGATES.finditer(text):
            if match.start() > position:
                ids += self._tokenizer.encode(text[position : match.start()], add_special_tokens=False).ids
            ids += [self._byte_ids[byte] for byte in match.group().encode("utf-8", "surrogatepass")]
            position = match.end()
        if position < len(text):
            ids += self._tokenizer.encode(text[position:], add_special_tokens=False).ids
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, skipping special tokens; bytes that are not valid UTF-8 become U+FFFD."""
        table = self._token_bytes
        if hasattr(ids, "tolist"):  # a tensor or array: one conversion, not one per element
            ids = ids.tolist()
        try:
            data = b"".join([table[i] if i >= 0 else _bad_id(i) for i in ids])
        except IndexError:
            bad = next(i for i in ids if not 0 <= i < len(table))
            raise ValueError(f"token id {bad} is outside the vocabulary (size {len(table)})") from None
        return data.decode("utf-8", _DECODE_ERRORS)

    def to_json(self) -> str:
        """The tokenizer.json text: two tokenizers with the same text encode alike."""
        return self._tokenizer.to_str()

    def save(self, path: str | Path) -> None:
        """Write `tokenizer.json` to `path` (a .json file, or a directory that is created if needed)."""
        target = Path(path)
        if target.suffix != ".json":
            target.mkdir(parents=True, exist_ok=True)
            target = target / TOKENIZER_FILE
        self._tokenizer.save(str(target))

    @classmethod
    def load(cls, path: str | Path) -> CodeTokenizer:
        """Read `tokenizer.json` (or a directory holding one); CheckpointError names the file at fault."""
        target = Path(path)
        if target.is_dir():
            target = target / TOKENIZER_FILE
        if not target.is_file():
            raise CheckpointError(f"tokenizer file not found: {target}")
        try:
            tokenizer = Tokenizer.from_file(str(target))
        except Exception as error:  # tokenizers raises a bare Exception for any parse failure
            raise CheckpointError(f"corrupt tokenizer file {target}: {error}") from error
        return cls(tokenizer, source=str(target))

    def __repr__(self) -> str:
        return f"CodeTokenizer(vocab_size={self.vocab_size})"


def _bad_id(token_id: int) -> bytes:
    raise IndexError(token_id)


def _token_bytes_table(tokenizer: Tokenizer, vocab_size: int, source: str) -> list[bytes]:
    """Bytes of every id (b"" for special tokens), so decoding is a table lookup and a join."""
    to_byte = {symbol: byte for byte, symbol in _byte_symbols().items()}
    special = set(SPECIAL_TOKENS.values())
    table: list[bytes] = []
    for token_id in range(vocab_size):
        token = tokenizer.id_to_token(token_id)
        if token is None:
            raise CheckpointError(f"{source}: vocabulary has a hole at id {token_id}")
        if token in special:
            table.append(b"")
            continue
        try:
            table.append(bytes(to_byte[symbol] for symbol in token))
        except KeyError:
            raise CheckpointError(f"{source}: token {token!r} is not byte-level BPE") from None
    return table


def train_tokenizer(texts: Iterable[str], vocab_size: int = 12288, show_progress: bool = True) -> CodeTokenizer:
    """Train byte-level BPE on `texts`; `vocab_size` counts the special tokens and the 256 byte symbols."""
    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} (specials + 256 bytes), got {vocab_size}")
    tokenizer = _new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=show_progress,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=32,  # long enough for deep indentation, short enough to skip "=====" banners
    )
    # Surrogates cannot cross into Rust; they are rare enough that dropping them from training costs nothing.
    tokenizer.train_from_iterator((_SURROGATES.sub("", text) for text in texts), trainer)
    return CodeTokenizer(tokenizer)
