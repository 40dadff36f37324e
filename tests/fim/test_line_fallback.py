"""A multi-line request whose block has nothing to show is asked for its first line (``FimRequest.line_request``,
``fim.ask``): real grammars, the embedded default model with its trained weights."""

from __future__ import annotations

import dataclasses

from engine.contract import SampleOptions
from fim.ask import ask_engine
from fim.request import FimRequest, FimSettings, Mode, build_request
from fim.validate import Candidate, any_shown, postprocess

# Cursors where the editor asks for a block: on a blank line in an empty body, and at the end of an opener.
BODIES = (
    "def is_palindrome(s):\n    s = s.lower()\n    for i in range(len(s)):\n        if s[i] != s[-i - 1]:\n"
    "            |\n    return True\n",
    "def count(xs):\n    total = 0\n    for x in xs:\n        |\n    return total\n",
    "def is_palindrome(s):|\n",
)


def request_at(marked: str, settings: FimSettings | None = None, engine=None, language: str = "python") -> FimRequest:
    count = engine.count_tokens if engine is not None else None
    return build_request(marked.replace("|", "", 1), marked.index("|"), language, settings, count)


def test_a_multi_line_request_knows_its_single_line_request() -> None:
    settings = FimSettings(single_line_canvas=12, single_line_candidates=3, multi_line_canvas=48)
    blank = request_at("def f(xs):\n    for x in xs:\n        |\n    return 1\n", settings)
    assert blank.mode is Mode.MULTI_LINE and blank.line_sizes == (12, 3)
    line = blank.line_request()
    assert line is not None and line.mode is Mode.SINGLE_LINE
    assert (line.prefix, line.suffix) == (blank.prefix, blank.suffix)  # at the cursor: its line is blank before it
    assert (line.canvas_length, line.num_candidates, line.max_lines, line.line_sizes) == (12, 3, 1, None)
    assert line.line_request() is None
    # At the end of an opener: on a new line one level in, in the file's unit and line break.
    two = request_at("def f(xs):\n  if xs:\n    return 1\n  for x in xs:|\n  return 0\n")
    assert two.mode is Mode.MULTI_LINE and two.line_request().prefix == two.prefix + "\n    "
    tabs = request_at("def f(xs):\r\n\tfor x in xs:|\r\n")
    assert tabs.line_request().prefix == tabs.prefix + "\r\n\t\t"
    braces = request_at("function f(xs) {|\n}\n", language="javascript")
    assert braces.mode is Mode.MULTI_LINE and braces.line_request().prefix == braces.prefix + "\n    "  # no unit: 4
    assert request_at("x = f(|)\n").line_request() is None  # single-line
    assert dataclasses.replace(blank, line_sizes=None).line_request() is None


def test_a_block_with_nothing_to_show_is_replaced_by_its_first_line(default_engine) -> None:
    """Both branches found, not assumed: over a few requests and seeds, the default model's block shows for some and
    not for others. A shown block is the answer unchanged; otherwise the answer is the single-line request's (quick
    first ask and repairs included), each candidate cut to its first line and put after the line's lead, and the
    request's figures are both asks'."""
    kept = fell_back = shown_lines = 0
    for marked in BODIES:
        request = request_at(marked)
        assert request.mode is Mode.MULTI_LINE
        line = request.line_request()
        lead = line.model_prefix[len(request.model_prefix) :]
        for seed in range(4):
            options = SampleOptions(steps=4, seed=seed)
            block_only = dataclasses.replace(request, line_sizes=None)
            block = ask_engine(default_engine, block_only, options, session_id="block", first_steps=2, repairs=2)
            answer = ask_engine(default_engine, request, options, session_id="answer", first_steps=2, repairs=2)
            if any_shown(request, [Candidate(c.text, c.score) for c in block.completions]):
                assert not answer.line and answer.completions == block.completions
                kept += 1
                continue
            alone = ask_engine(default_engine, line, options, session_id="line", first_steps=2, repairs=2)
            assert answer.line and answer.repairs == alone.repairs and answer.escalated == alone.escalated
            texts = [c.text for c in answer.completions]
            assert texts == [lead + c.text.split("\n", 1)[0] for c in alone.completions]
            assert all("\n" not in text[len(lead) :] for text in texts)
            assert answer.stats.steps == block.stats.steps + alone.stats.steps
            assert answer.stats.context_tokens == block.stats.context_tokens  # the request's prompt, not the line's
            shown = postprocess(request, [Candidate(c.text, c.score) for c in answer.completions], min_confidence=0)
            shown_lines += bool(shown)
            assert all(s.text.strip().count("\n") == 0 for s in shown)
            fell_back += 1
    assert kept >= 1 and fell_back >= 1 and shown_lines >= 1, (kept, fell_back, shown_lines)


def test_a_request_no_longer_wanted_does_not_fall_back(default_engine) -> None:
    found = 0
    for marked in BODIES:
        request = request_at(marked)
        for seed in range(4):
            options = SampleOptions(steps=4, seed=seed)
            block = ask_engine(default_engine, dataclasses.replace(request, line_sizes=None), options)
            if any_shown(request, [Candidate(c.text, c.score) for c in block.completions]):
                continue
            answer = ask_engine(default_engine, request, options, current=lambda: False)
            assert answer.abandoned and not answer.line and answer.completions == block.completions
            found += 1
    assert found >= 1


def test_the_language_server_shows_the_line_where_the_block_breaks(default_engine) -> None:
    """The server's pipeline (its own sampler: seed 0, 8 steps) shows the fallback's line for a blank line in an
    empty body whose block has nothing to show."""
    from lsprotocol import types

    from lsp_server.cache import CompletionCache
    from lsp_server.documents import Cursor, Snapshot
    from lsp_server.pipeline import Job, run
    from lsp_server.settings import CompletionSettings

    settings = CompletionSettings(steps=8, min_confidence=0.0)
    fim = FimSettings()
    found = 0
    for marked in BODIES[:2]:
        text, offset = marked.replace("|", "", 1), marked.index("|")
        request = build_request(text, offset, "python", fim, default_engine.count_tokens)
        options = SampleOptions(steps=8, threshold=settings.threshold, temperature=settings.temperature)
        block = ask_engine(default_engine, dataclasses.replace(request, line_sizes=None), options)
        if any_shown(request, [Candidate(c.text, c.score) for c in block.completions]):
            continue
        answer = ask_engine(default_engine, request, options, first_steps=fim.first_steps, repairs=fim.repairs)
        expected = [c.text for c in postprocess(request, [Candidate(c.text, c.score) for c in answer.completions])]
        document = Snapshot("file:///t.py", 1, text, "python")
        line = text.count("\n", 0, offset)
        position = types.Position(line, offset - (text.rfind("\n", 0, offset) + 1))
        job = Job(
            default_engine, document, Cursor(line, offset, position, position, ""), fim, settings, CompletionCache()
        )
        texts = run(job).texts
        assert texts == expected and texts and all("\n" not in t for t in texts)
        found += 1
    assert found >= 1


def test_diffill_complete_says_when_it_showed_the_line(default_engine, tmp_path, capsys) -> None:
    """`diffill complete --json` reports ``line`` as the request path decided it, and shows the same texts."""
    import json

    from engine.cli import main

    marked = BODIES[1]  # its block has nothing to show at seed 1 (the default model, 8 steps)
    path = tmp_path / "count.py"
    path.write_text(marked.replace("|", "", 1), encoding="utf-8")
    row = marked[: marked.index("|")].count("\n")
    column = marked.index("|") - marked.rfind("\n", 0, marked.index("|"))
    flags = ["--json", "--threads", "1", "--dtype", "float32", "--seed", "1"]
    assert main(["complete", f"{path}:{row + 1}:{column}", *flags]) == 0
    out = json.loads(capsys.readouterr().out)
    settings = FimSettings().fitted(default_engine.describe())  # as the command sizes its request
    request = request_at(marked, settings, default_engine)
    answer = ask_engine(
        default_engine, request, SampleOptions(seed=1), first_steps=settings.first_steps, repairs=settings.repairs
    )
    assert out["mode"] == "multi-line" and out["line"] is answer.line is True
    ranked = postprocess(request, [Candidate(c.text, c.score) for c in answer.completions], min_confidence=0.0)
    assert [c["text"] for c in out["completions"]] == [c.text for c in ranked]
