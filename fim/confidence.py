"""Show or stay silent: degenerate-text filters and a calibrated confidence for each candidate.

A wrong suggestion costs the user attention; showing nothing is better than showing junk. Two gates decide:

* ``degenerate(text, context)``: text never worth showing, whatever the model's confidence -- blank or
  punctuation-only text (`` .``, `` ...``; in a comment or string, also text without a word: `` 1``), a repetition
  loop (a short letter-bearing n-gram repeated,
  ``ndndndnd``; the same line over and over), and echoes (text the cursor's line already holds, or exactly the
  lines that follow the cursor). Inside comments and strings, where tree-sitter cannot judge the text, these
  filters and the confidence are all there is.
* ``Calibration.confidence(signals)``: a logistic regression on signals the engine already gives -- the
  candidate's mean token log-probability, its margin to the next distinct candidate, the share of candidates that
  became the same text, the mode, code vs comment/string, length -- fitted per model on FIM tasks it never trained
  on (``diffill eval calibrate``), so that it reads as "probability this suggestion is right" (first line within
  edit similarity 0.8 of what the user typed). The fit and its default threshold travel with the checkpoint
  (``confidence.json``); ``completion.minConfidence`` overrides the threshold (see docs/eval.md).

Everything here is pure Python (no torch, no tree-sitter): ``fim.validate`` computes the signals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CALIBRATION_FILE",
    "FEATURES",
    "UNCALIBRATED",
    "Calibration",
    "Context",
    "Signals",
    "confidence",
    "degenerate",
    "feature_vector",
]

# Repetition loops: a unit of at most this many characters ...
_MAX_PERIOD = 12
# ... repeated at least this many times in a row (a 1-character unit needs more: "xxxx" placeholders exist).
_MIN_COPIES = {1: 6, 2: 4, 3: 4}
_MIN_COPIES_LONG = 3
_MIN_LINE_COPIES = 3  # the same non-blank line this many times in a row
# Brackets and separators alone are a legitimate completion in code (`)`, `]:`, `()`); other punctuation is not.
_CLOSERS = frozenset("()[]{}<>;:,'\"`")
_WORD = re.compile(r"[^\W\d_]{2}")  # two letters in a row: what prose (comments, strings) needs to say anything
_MIN_ECHO_CHARS = 8  # shorter texts found on the line (`x`, `self`) are just the same name used again


@dataclass(frozen=True)
class Context:
    """What the filters need to know about the cursor."""

    line_before: str  # the cursor line's text before the cursor
    suffix: str  # the document after the cursor ("\n" line breaks)
    prose: bool = False  # the cursor is inside a comment or a string


def _has_letter(text: str) -> bool:
    return any(char.isalpha() for char in text)


def _loop_in_line(line: str) -> str | None:
    """A unit of <= _MAX_PERIOD chars with a letter in it, repeated back to back enough times, if the line has one."""
    n = len(line)
    for period in range(1, min(_MAX_PERIOD, n // 2) + 1):
        need = _MIN_COPIES.get(period, _MIN_COPIES_LONG)
        run = 0  # consecutive i with line[i] == line[i + period]
        for i in range(n - period):
            run = run + 1 if line[i] == line[i + period] else 0
            if run + period >= need * period:
                unit = line[i + 1 - run : i + 1 - run + period]
                if _has_letter(unit):
                    return unit
    return None


def repetition_loop(text: str) -> str | None:
    """The repeating unit when the text loops (``ndndnd...``, one line many times), else None."""
    lines = [line.strip() for line in text.split("\n")]
    for line in lines:
        unit = _loop_in_line(line)
        if unit is not None:
            return unit
    run = 1
    for previous, line in zip(lines, lines[1:], strict=False):
        run = run + 1 if _has_letter(line) and line == previous else 1
        if run >= _MIN_LINE_COPIES:
            return line
    return None


def _punctuation_only(text: str, prose: bool) -> bool:
    visible = [char for char in text if not char.isspace()]
    if any(char.isalnum() for char in visible):
        return False
    return prose or not all(char in _CLOSERS for char in visible)


def _echo(text: str, context: Context) -> bool:
    """Text the cursor's line already holds, or exactly the next non-blank lines after the cursor."""
    stripped = text.strip()
    if len(stripped) >= _MIN_ECHO_CHARS and stripped in context.line_before:
        return True
    ours = [line.strip() for line in text.split("\n") if line.strip()]
    rest_of_line, _, below = context.suffix.partition("\n")
    if len(stripped) >= _MIN_ECHO_CHARS and stripped in rest_of_line:
        return True
    following = [line.strip() for line in below.split("\n") if line.strip()][: len(ours)]
    return bool(ours) and ours == following


def degenerate(text: str, context: Context) -> str | None:
    """Why `text` must never be shown at this cursor ("blank", "punctuation", "no word", "loop", "echo"), or None."""
    if not text.strip():
        return "blank"
    if _punctuation_only(text, context.prose):
        return "punctuation"
    if context.prose and not _WORD.search(text):
        return "no word"  # a comment or string continued by ` 1` or ` x.` says nothing
    if repetition_loop(text) is not None:
        return "loop"
    if _echo(text, context):
        return "echo"
    return None


@dataclass(frozen=True)
class Signals:
    """What the engine and post-processing say about one candidate, the inputs of the confidence model."""

    score: float  # mean token log-probability (engine.contract.Completion.score)
    margin: float  # score minus the best score of another distinct candidate (0 when there is none)
    agreement: float  # share of the request's candidates that post-processed to this same text
    multi_line: bool  # the request's mode
    prose: bool  # the cursor is inside a comment or a string
    chars: int  # length of the text, stripped


FEATURES = ("bias", "score", "margin", "agreement", "multi_line", "prose", "log_chars")


def feature_vector(signals: Signals) -> list[float]:
    """The model's inputs, in FEATURES order; scores are clamped so one -inf log-probability stays finite."""
    return [
        1.0,
        max(signals.score, -20.0),
        max(min(signals.margin, 20.0), -20.0),
        signals.agreement,
        float(signals.multi_line),
        float(signals.prose),
        math.log1p(signals.chars),
    ]


CALIBRATION_FILE = "confidence.json"  # a checkpoint's own fit, beside its config.json


@dataclass(frozen=True)
class Calibration:
    """One model's show-or-stay-silent fit: the coefficients of ``confidence`` and the default threshold.

    Scores mean different things for different models, so the fit travels with the checkpoint
    (``confidence.json``, written by ``diffill eval calibrate --save MODEL_DIR``) and reaches fim through the
    engine's ``describe()`` (``"calibration"``), locally and from a ``diffill serve`` box alike. A model without one
    is ``UNCALIBRATED``: texts rank by their mean token log-probability and nothing but degenerate text is hidden.
    """

    coefficients: Mapping[str, float]
    min_confidence: float = 0.0  # completion.minConfidence's default for this model, chosen on the calibration set
    fitted_on: str = ""  # what the fit saw, for people reading the file

    def __post_init__(self) -> None:
        unknown = sorted(set(self.coefficients) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown confidence features {', '.join(unknown)}; known: {', '.join(FEATURES)}")
        for name, value in self.coefficients.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"confidence coefficient {name!r} must be a finite number, got {value!r}")
        threshold = self.min_confidence
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"min_confidence must be a number in [0, 1], got {threshold!r}")

    def confidence(self, signals: Signals) -> float:
        return confidence(signals, self.coefficients)

    def threshold(self, min_confidence: float | None) -> float:
        """The threshold in force: the user's `min_confidence`, or this model's default when it is None."""
        return self.min_confidence if min_confidence is None else min_confidence

    def to_json(self) -> dict[str, object]:
        return {
            "coefficients": {name: self.coefficients.get(name, 0.0) for name in FEATURES},
            "min_confidence": self.min_confidence,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_json(cls, data: object) -> Calibration:
        """A calibration from its JSON form; ValueError saying what is wrong otherwise."""
        if not isinstance(data, Mapping) or not isinstance(data.get("coefficients"), Mapping):
            raise ValueError('a calibration is a JSON object with a "coefficients" object')
        fitted_on = data.get("fitted_on", "")
        return cls(dict(data["coefficients"]), data.get("min_confidence", 0.0), str(fitted_on))

    @classmethod
    def of(cls, description: Mapping[str, object]) -> Calibration:
        """The calibration an engine's ``describe()`` carries, or UNCALIBRATED when it has none."""
        found = description.get("calibration")
        return UNCALIBRATED if found is None else cls.from_json(found)


UNCALIBRATED = Calibration({"score": 1.0}, 0.0, "none: texts rank by their mean token log-probability")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def confidence(signals: Signals, coefficients: Mapping[str, float]) -> float:
    """Probability that the candidate is right, in [0, 1], under a fit's coefficients (missing ones are 0)."""
    weights: Sequence[float] = [coefficients.get(name, 0.0) for name in FEATURES]
    return _sigmoid(sum(w * x for w, x in zip(weights, feature_vector(signals), strict=True)))
