"""The cross-file training option: examples carry chunks of related files of their package, as the editor sends."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from engine.data import iter_fim_examples
from engine.layout import chunk_text, collate
from engine.related import PackageIndex
from engine.train import tokenize_example
from fim.request import approx_tokens

SITE = "/opt/python/site-packages"
UTIL = '''def frobnicate(left, right=2):
    """Combine two numbers."""
    return left * right + 1


class Gadget:
    """A gadget."""

    def spin(self, times):
        return times
'''
MAIN = "from pkg.util import frobnicate\n\n\n" + "".join(
    f"def task_{i}(x):\n    y = frobnicate(x, {i})\n    return y + {i}\n\n\n" for i in range(30)
)
OTHER = "".join(f"def helper_{i}(a):\n    return a - {i}\n\n\n" for i in range(10))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    records = [
        (f"{SITE}/pkg/main.py", MAIN),
        (f"{SITE}/pkg/util.py", UTIL),
        (f"{SITE}/other/thing.py", OTHER),
    ]
    path = tmp_path / "train.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for file, text in records:
            out.write(json.dumps({"path": file, "language": "python", "text": text}) + "\n")
    return path


def take(corpus: Path, n: int = 60, **kwargs) -> list:
    return list(itertools.islice(iter_fim_examples(corpus, 3, chars_per_example=200, shuffle_buffer=4, **kwargs), n))


def test_off_by_default_and_a_zero_rate_changes_nothing(corpus: Path) -> None:
    plain = take(corpus)
    assert plain == take(corpus, cross_file_rate=0.0)
    assert all(example.chunks == () for example in plain)
    with pytest.raises(ValueError, match="cross_file_rate"):
        take(corpus, cross_file_rate=1.5)


def test_examples_carry_imported_definitions_and_regions_of_their_package(corpus: Path) -> None:
    examples = take(corpus, cross_file_rate=1.0, cross_file_tokens=200)
    main = [e for e in examples if "from pkg.util import frobnicate\n" in e.prefix + e.suffix]  # import intact
    assert main
    for example in main:
        assert {p for p, _ in example.chunks} == {"pkg/util.py"}  # from the import root; no other package
        stub = 'def frobnicate(left, right=2):\n    """Combine two numbers."""\n'
        assert stub in [t for _, t in example.chunks]  # the imported definition, as the language server shows it
        assert sum(approx_tokens(chunk_text(p, t, "python")) for p, t in example.chunks) <= 200
    util = [e for e in examples if "class Gadget" in e.prefix + e.middle + e.suffix]
    assert util and all(dict(e.chunks).keys() <= {"pkg/main.py"} for e in util)  # a region of its sibling
    assert any(e.chunks for e in util)


def test_import_roots_are_above_the_package_directories() -> None:
    assert str(PackageIndex.import_root(f"{SITE}/pkg/sub/mod.py")) == SITE
    assert str(PackageIndex.import_root("/usr/lib/python3.11/json/decoder.py")) == "/usr/lib/python3.11"


def test_training_rows_put_the_chunks_before_the_file(corpus: Path, small_tokenizer) -> None:
    tok = small_tokenizer
    example = next(e for e in take(corpus, cross_file_rate=1.0) if e.chunks)
    row = tokenize_example(tok, example)
    assert len(row) == 5
    batch = collate(tok, [row], canvas_len=16, context_budget=384)
    context = batch.tokens[0, batch.context_len - 384 : batch.context_len].tolist()
    context = context[context.index(tok.language_id("python")) :]
    region = tok.decode(context[1 : context.index(tok.fim_suffix_id)])
    path, text = example.chunks[-1]
    assert region.startswith("# path: ") and f"# path: {path}\n" in region
