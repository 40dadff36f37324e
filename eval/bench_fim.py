"""Benchmark of FIM post-processing: per-candidate validation time on a realistic ~2,000-line Python file.

The file is built at run time from the running interpreter's own standard library (nothing is committed).
Cursors are placed the way an editor asks: the statement and block-body spans of `fim.spans` are cut out of
the file, the cursor sits where they were, and the model's "candidates" are made from the true middle: as is,
running past the block into the following code, cut inside a statement, and with a wrong closing bracket.
Each request goes through `fim.request.build_request` and `fim.validate.postprocess`, exactly as the language
server calls them. Target: well under 5 ms per candidate (the base parse amortised over the candidates).

Run: python -m eval.bench_fim [--cursors 200] [--lines 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fim.languages import get_parser
from fim.request import FimRequest, FimSettings, build_request
from fim.spans import Span, syntax_spans
from fim.syntax import SyntaxChecker
from fim.validate import Candidate, postprocess

# Common, long-lived stdlib modules; any that are missing are skipped.
_MODULES = ("argparse.py", "textwrap.py", "dataclasses.py", "fractions.py", "statistics.py", "shlex.py")


@dataclass(frozen=True)
class Case:
    text: str  # document with the middle removed
    offset: int  # the cursor's string index
    candidates: tuple[Candidate, ...]


def stdlib_source(lines: int) -> str:
    """At least `lines` lines of real Python, concatenated stdlib modules cut at a line boundary."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = [root / name for name in _MODULES] + sorted(root.glob("*.py"))
    chunks: list[str] = []
    total = 0
    for path in dict.fromkeys(paths):
        if total >= lines or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        chunks.append(text if text.endswith("\n") else text + "\n")
        total += text.count("\n")
    return "".join("".join(chunks).splitlines(keepends=True)[:lines])


def _candidates(source: str, span: Span) -> tuple[Candidate, ...]:
    middle = source[span.start : span.end]
    following = source[span.end : span.end + 400]
    unfinished = middle.rsplit("\n", 1)[0] + "\n" + middle.split("\n")[-1][: len(middle.split("\n")[-1]) // 2]
    return (
        Candidate(middle, 0.9),
        Candidate(middle + following, 0.7),
        Candidate(unfinished, 0.5),
        Candidate(middle.replace(")", "]", 1) if ")" in middle else middle + " = (", 0.3),
    )


def make_cases(source: str, count: int, seed: int) -> list[Case]:
    """Cursor cases from the file's statements and block bodies, sampled with a fixed seed."""
    spans = [span for span in syntax_spans(source, "python") if span.end - span.start < 2000]
    rng = random.Random(seed)
    cases = []
    for span in rng.sample(spans, min(count, len(spans))):
        text = source[: span.start] + source[span.end :]
        cases.append(Case(text, span.start, _candidates(source, span)))
    return cases


def _ms(seconds: Sequence[float]) -> str:
    values = sorted(1000 * s for s in seconds)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"mean {statistics.fmean(values):7.3f}  p50 {statistics.median(values):7.3f}  p95 {p95:7.3f} ms"


def _timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def run(cases: Sequence[Case], settings: FimSettings, label: str) -> None:
    build_times, per_candidate, kept = [], [], 0
    modes: dict[str, int] = {}
    for case in cases:
        gc.collect()  # garbage from the previous request should not be billed to this one
        build_time, request = _timed(lambda case=case: build_request(case.text, case.offset, "python", settings))
        assert isinstance(request, FimRequest)
        modes[request.mode.value] = modes.get(request.mode.value, 0) + 1
        validate_time, results = _timed(lambda request=request, case=case: postprocess(request, case.candidates))
        build_times.append(build_time)
        per_candidate.append(validate_time / len(case.candidates))
        kept += len(results)  # type: ignore[arg-type]
    total = sum(len(case.candidates) for case in cases)
    print(f"{label}: {len(cases)} requests, {total} candidates, {kept} kept, modes {modes}")
    print(f"  build_request                      {_ms(build_times)}")
    print(f"  postprocess / candidate            {_ms(per_candidate)}")


def run_checks(cases: Sequence[Case], settings: FimSettings) -> None:
    """The two parts of validation apart: the per-request base parse, and one incremental check."""
    parser = get_parser("python")
    assert parser is not None
    setups, checks = [], []
    for case in cases:
        gc.collect()
        request = build_request(case.text, case.offset, "python", settings)
        prefix, suffix = request.prefix.encode(), request.suffix.encode()
        setup, checker = _timed(lambda prefix=prefix, suffix=suffix: SyntaxChecker(parser, prefix, suffix))
        assert isinstance(checker, SyntaxChecker)
        setups.append(setup)
        for candidate in case.candidates:
            text = candidate.text.encode()
            checks.append(_timed(lambda text=text, checker=checker: checker.check(text))[0])
    print(f"  base parse + region / request      {_ms(setups)}")
    print(f"  one syntax check (incremental)     {_ms(checks)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cursors", type=int, default=200)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    source = stdlib_source(args.lines)
    cases = make_cases(source, args.cursors, args.seed)
    print(f"file: {source.count(chr(10))} lines, {len(source)} characters of stdlib Python")
    postprocess(build_request(cases[0].text, cases[0].offset, "python"), cases[0].candidates)
    for label, settings in (
        ("default budgets (1536/512 tokens)", FimSettings()),
        ("whole file as context", FimSettings(prefix_tokens=10**7, suffix_tokens=10**7)),
    ):
        run(cases, settings, label)
        run_checks(cases, settings)


if __name__ == "__main__":
    main()
