"""Self-distillation data (``diffill distill``) from the embedded diffusion model on real stdlib files, and training
that mixes those rows into its stream (``diffill train --distilled``)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest

from engine.api import load_engine
from engine.contract import SampleOptions
from engine.data import FimExample, iter_distilled, mix
from engine.tokenizer import CodeTokenizer
from engine.train import TrainConfig, _FimBatches, add_arguments, config_from_args, train
from eval import distill
from eval.editor import Asker, FimTask, GenConfig
from eval.metrics import edit_similarity
from fim.request import Mode
from tests.engine.test_train import small_run, write_corpus


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_hold_the_shown_line_nearest_the_truth_and_a_stopped_run_continues(tmp_path: Path, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "distilled.jsonl"
    args = ["--corpus", str(corpus), "--out", str(out), "--steps", "4", "--candidates", "8"]
    assert distill.main([*args, "--count", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["asked"] == 6
    rows = rows_of(out)
    assert rows, "the embedded model shows a line for most single-line examples"
    texts = [json.loads(line)["text"] for line in (corpus / "train.jsonl").read_text().splitlines()]
    engine = load_engine(None, "cpu", threads=1)
    asker = Asker.of(engine, GenConfig(SampleOptions(steps=4), mode=Mode.SINGLE_LINE, candidates=8))
    for row in rows:
        assert 1 <= row["index"] <= 6 and "\n" not in row["middle"] and row["middle"].strip()
        assert row["similarity"] == edit_similarity(row["middle"], row["truth"])
        assert any(row["prefix"] + row["truth"] + row["suffix"] in text for text in texts)  # a real FIM triple
        # asked again, the same request shows that line, and none of the shown lines is nearer the truth
        task = FimTask("again", row["language"], row["prefix"] + row["suffix"], len(row["prefix"]), row["truth"])
        shown = [a.text for a in asker.ask(task).assessed if a.rejected is None]
        assert row["middle"] in shown
        assert max(edit_similarity(t, row["truth"]) for t in shown) == row["similarity"]

    assert distill.main([*args, "--count", "8"]) == 0  # continues after the 6 it has asked, does not repeat them
    assert json.loads(capsys.readouterr().out)["asked"] == 2
    assert (tmp_path / "distilled.jsonl.asked").read_text() == "8\n"
    more = rows_of(out)[len(rows) :]
    assert all(6 < row["index"] <= 8 for row in more)
    assert [r["index"] for r in rows_of(out)] == sorted({r["index"] for r in rows_of(out)})


def test_a_similarity_floor_drops_rows_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "d.jsonl"
    args = ["--corpus", str(corpus), "--out", str(out), "--count", "4", "--steps", "4", "--candidates", "4"]
    assert distill.main([*args, "--min-similarity", "1.01"]) == 0
    assert not out.exists() or not out.read_text()
    with pytest.raises(SystemExit):
        distill.main([*args, "--rank", "2", "--world", "2"])


def write_distilled(path: Path, middles: list[str]) -> Path:
    rows = [{"prefix": f"x{i} = ", "middle": m, "suffix": "\n", "language": "python"} for i, m in enumerate(middles)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_distilled_rows_are_shuffled_each_epoch_split_by_rank_and_mixed_at_their_rate(tmp_path: Path) -> None:
    path = write_distilled(tmp_path / "d.jsonl", ["a", "b", "c", "d"])
    stream = iter_distilled([path], seed=1)
    epochs = [sorted(next(stream).middle for _ in range(4)) for _ in range(3)]
    assert epochs == [["a", "b", "c", "d"]] * 3
    teacher = write_distilled(tmp_path / "teacher.jsonl", ["e", "f"])
    pooled = iter_distilled([path, teacher], seed=1)  # several files: their rows pooled into one epoch
    assert sorted(next(pooled).middle for _ in range(6)) == ["a", "b", "c", "d", "e", "f"]
    one, two, other = (iter_distilled([path], seed=s) for s in (1, 1, 2))
    first = [next(one).middle for _ in range(12)]
    assert first == [next(two).middle for _ in range(12)]  # the same seed, the same order
    assert first != [next(other).middle for _ in range(12)]
    assert first[:4] != first[4:8] or first[4:8] != first[8:12]  # reshuffled between epochs
    assert {next(iter_distilled([path], seed=1, rank=1, world_size=2)).middle for _ in range(5)} <= {"b", "d"}
    with pytest.raises(ValueError, match="d.jsonl hold no examples"):
        next(iter_distilled([path], seed=1, rank=4, world_size=5))

    def source(name: str):
        while True:
            yield FimExample("", name, "", "python", "x")

    mixed = mix(source("corpus"), source("distilled"), 0.3, random.Random(0))
    share = sum(next(mixed).middle == "distilled" for _ in range(4000)) / 4000
    assert 0.27 < share < 0.33
    assert all(next(mix(source("c"), source("d"), 1.0, random.Random(i))).middle == "d" for i in range(20))


def test_training_reads_distilled_rows_at_their_rate(tmp_path: Path, small_tokenizer) -> None:
    tok_path = tmp_path / "tokenizer.json"
    small_tokenizer.save(tok_path)
    middle = "heapq.heappush(items, 7)"
    distilled = write_distilled(tmp_path / "d.jsonl", [middle])
    cfg = small_run(tmp_path, tok_path, steps=4, batch_size=4, distilled=str(distilled), distilled_rate=1.0)
    tok = CodeTokenizer.load(tok_path)
    batch = next(iter(_FimBatches(cfg, tok, 64, seed=0, rank=0, world=1)))
    expected = tok.encode(middle)
    canvas = batch.tokens[:, batch.context_len :]
    assert all(row[: len(expected)].tolist() == expected for row in canvas)  # every row is the distilled one
    assert train(cfg)["tokens_seen"] > 0
    with pytest.raises(ValueError, match="distilled_rate"):
        TrainConfig(corpus="c", out="o", distilled_rate=1.5)


def test_the_train_command_takes_several_distilled_files() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--corpus", "c", "--out", "o", "--distilled", "own.jsonl", "ar.jsonl"]))
    assert cfg.distilled == ("own.jsonl", "ar.jsonl")
    assert config_from_args(parser.parse_args(["--corpus", "c", "--out", "o"])).distilled == ()
    assert TrainConfig(corpus="c", out="o", distilled="one.jsonl").distilled == ("one.jsonl",)
