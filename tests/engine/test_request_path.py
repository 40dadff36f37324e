"""One request path: the shipped models give the same completions as before the path was unified, and every
driver (in-process, batch scheduler) and family goes through the same states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.api import load_engine
from engine.contract import CompletionEngine, SampleOptions

REFERENCE = Path(__file__).parent / "data" / "reference_completions.json"

# Recorded with the shipped default models. First before the request path was unified (engine.api's own loop
# over engine.sample.fill / generate_autoregressive), which the unified path reproduced exactly; then re-recorded
# when the sampler's draws changed for speed (top-k race, logits only for open positions): the greedy candidates
# stayed the same, the sampled ones draw differently by design. The cases cover both canvas lengths, several
# candidates, temperature, steps and threshold, and a second language.
CASES = [
    (
        "def mean(values):\n    total = 0\n    for v in values:\n        total += ",
        "\n    return total / len(values)\n",
        "python",
        32,
        4,
        SampleOptions(seed=0),
    ),
    (
        "import os\n\n\ndef read(path):\n    with open(path) as f:\n        ",
        "\n",
        "python",
        64,
        2,
        SampleOptions(seed=7, steps=6, threshold=0.8),
    ),
    ("function add(a, b) {\n  return ", ";\n}\n", "javascript", 16, 3, SampleOptions(seed=3, temperature=1.0, steps=4)),
]


@pytest.mark.parametrize("name", ["default", "default-ar"])
def test_shipped_models_complete_exactly_as_recorded(name: str) -> None:
    expected = json.loads(REFERENCE.read_text())[name]
    engine = load_engine(
        None, device="cpu", autoregressive=name == "default-ar", threads=1, dtype="float32"
    )  # as recorded
    assert isinstance(engine, CompletionEngine)
    for (prefix, suffix, language, canvas, n, options), want in zip(CASES, expected, strict=True):
        got = engine.complete(
            prefix, suffix, language=language, canvas_length=canvas, num_candidates=n, options=options, session_id="s"
        )
        assert [[c.text, round(c.score, 5), c.tokens] for c in got] == want
