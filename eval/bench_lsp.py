"""End-to-end latency of the language server: what an editor waits for, from request to items, over stdio.

    python -m eval.bench_lsp [--model DIR ...] [--n 50] [--seed 0] [--scenario NAME ...] [--chars-per-s 8]
                             [--threads N] [--fim-dev FILE.jsonl.gz] [--repairs N] [--first-steps N]
                             [--keystrokes-per-line K]

Starts `python -m lsp_server` as a subprocess and drives it with pygls's LSP client, as an editor would: it opens
stdlib source files and asks for inline completions (`triggerKind: Invoked`, so no debounce) at random cursors,
after warm-up requests that are not counted. Three scenarios:

- single-line: a line of code cut in the middle (the rest of the line deleted), cursor at the cut;
- multi-line: the cursor at the end of a block opener (`def ...:`, `if ...:`), where the server asks for a block;
- typing: the original rest of a cut line is typed back one character per request, as a user does while a
  suggestion is shown (whole lines of one document; `--keystrokes-per-line K`: K characters of each line, every
  line from a document drawn anew, so the requests spread over many lines); requests are answered from the
  typed-prefix cache when the typed character follows a shown completion, otherwise by the model with the
  document's context cache extended, not rebuilt.
- paced / paced-cancel: a user typing at `--chars-per-s` with automatic requests (debounced by the server), one
  request per keystroke, in bursts of 3-8 characters followed by a pause; the latency is pause -> suggestion (from
  the burst's last keystroke to its answer). `paced-cancel` cancels each superseded request (`$/cancelRequest`),
  as Neovim's and VS Code's clients do; `paced` leaves them to the server's staleness check. The two take turns
  burst by burst, so they share the machine's load and never each other's cached answers.

- first: the first request at a new cursor of a fresh document (cold: nothing of it is cached), cut to about
  2,000 tokens (8,000 characters) around a random code line, the cursor in the middle of that line.

`--fim-dev FILE` opens realistic documents instead of the standard library's: the files of the fim-dev set
(`../shared/benchmarks/fim-dev`, a repository outside the training corpus; each task's prefix + suffix is its
file). `--model` takes several checkpoints (`default` and `default-ar` name the embedded pair): each is served in
turn by a fresh server, on the same documents and cursors, and a row per model and scenario is printed, with the
ratio of each model's p50 to the first model's. `--threads` sets the server's `model.threads`, `--repairs` its
`completion.repairs` and `--first-steps` its `completion.firstSteps` (fim.ask).

Latency is measured in the client (JSON-RPC over pipes included). Prints a Markdown table: n, p50, p95, mean
(ms), items per request, the share of requests served without a model call, and model calls per measured request
(the paced scenarios make several requests per measured one). Without --model the server loads the embedded
default model.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import re
import statistics
import sys
import sysconfig
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lsprotocol import types
from pygls.lsp.client import LanguageClient

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["textwrap.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "glob.py", "shlex.py", "string.py"]
WARMUP = 5
SCENARIOS = ("single-line", "multi-line", "typing", "first", "paced", "paced-cancel")
EMBEDDED = {"default": None, "default-ar": "engine/weights/default-ar"}  # --model names of the embedded pair
OPENER = re.compile(r"^\s*(def|class|if|for|while|with|try|elif|else)\b.*:\s*$")


@dataclass
class Scenario:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    items: int = 0
    served_without_model: int = 0
    model_calls: int = 0
    # The engine's own times of requests that called the model (diffill/stats' lastCompletion, all of a request's
    # asks together): context prefill and sampling; the rest of a latency is the server's (windowing,
    # post-processing, tree-sitter, the LSP round trip).
    prefill_ms: list[float] = field(default_factory=list)
    sample_ms: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    def row(self) -> str:
        n = len(self.latencies_ms)
        if n == 0:
            return f"| {self.name} | 0 | - | - | - | - | - | - | - | - |"
        ordered = sorted(self.latencies_ms)
        p95 = ordered[min(n - 1, round(0.95 * (n - 1)))]
        return (
            f"| {self.name} | {n} | {statistics.median(ordered):.1f} | {p95:.1f} | {statistics.fmean(ordered):.1f} "
            f"| {self.items / n:.2f} | {self.served_without_model / n:.0%} | {self.model_calls / n:.2f} "
            f"| {median(self.prefill_ms)} | {median(self.sample_ms)} |"
        )


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


@dataclass
class Document:
    uri: str
    text: str
    version: int = 1


class Pending(NamedTuple):
    msg_id: str
    answer: Future[Any]


def stats(result: Any) -> dict[str, Any]:
    return result._asdict() if hasattr(result, "_asdict") else dict(result)


class Editor:
    """The client side: documents it has open and the requests it makes."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.documents: dict[str, Document] = {}

    def open(self, path: Path) -> Document:
        return self.open_text(path.as_uri(), path.read_text(encoding="utf-8"))

    def open_text(self, uri: str, text: str) -> Document:
        document = Document(uri, text)
        item = types.TextDocumentItem(uri=document.uri, language_id="python", version=1, text=document.text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
        self.documents[document.uri] = document
        return document

    def replace(self, document: Document, text: str) -> None:
        document.version += 1
        document.text = text
        change = types.TextDocumentContentChangeWholeDocument(text=text)
        identifier = types.VersionedTextDocumentIdentifier(uri=document.uri, version=document.version)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(text_document=identifier, content_changes=[change])
        )

    async def stats(self) -> dict[str, Any]:
        return stats(await self.client.protocol.send_request_async("diffill/stats", {}))

    def request(
        self,
        document: Document,
        line: int,
        character: int,
        kind: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Invoked,
    ) -> Pending:
        """Send an inline completion request now; its future holds the answer (or a cancellation error)."""
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(trigger_kind=kind),
            text_document=types.TextDocumentIdentifier(uri=document.uri),
            position=types.Position(line=line, character=character),
        )
        msg_id = uuid.uuid4().hex
        answer = self.client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        return Pending(msg_id, answer)

    def cancel(self, request: Pending) -> None:
        """`$/cancelRequest` for a pending request, as an editor sends when a keystroke supersedes it."""
        if not request.answer.done():
            self.client.cancel_request(types.CancelParams(id=request.msg_id))

    async def complete(self, document: Document, line: int, character: int, scenario: Scenario | None) -> None:
        before = await self.stats() if scenario else None
        start = time.perf_counter()
        result = await asyncio.wrap_future(self.request(document, line, character).answer)
        elapsed = (time.perf_counter() - start) * 1e3
        if scenario is None or before is None:
            return
        after = await self.stats()
        last = after.get("lastCompletion")
        record(scenario, elapsed, result, after["model_calls"] - before["model_calls"], last and stats(last))


def record(
    scenario: Scenario, elapsed_ms: float, result: Any, model_calls: int, last: dict[str, Any] | None = None
) -> None:
    items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
    scenario.latencies_ms.append(elapsed_ms)
    scenario.items += len(items)
    scenario.served_without_model += model_calls == 0
    scenario.model_calls += model_calls
    if model_calls and last:
        scenario.prefill_ms.append(float(last["prefill_ms"]))
        scenario.sample_ms.append(float(last["sample_ms"]))


def code_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.split("\n")) if len(line.strip()) > 8 and not line.strip().startswith("#")]


def cut(text: str, line: int, column: int) -> str:
    lines = text.split("\n")
    lines[line] = lines[line][:column]
    return "\n".join(lines)


async def single_line(editor: Editor, document: Document, rng: random.Random, scenario: Scenario | None) -> None:
    original = document.text
    line = rng.choice(code_lines(original))
    content = original.split("\n")[line]
    indent = len(content) - len(content.lstrip())
    column = rng.randint(indent + 1, len(content) - 1)
    editor.replace(document, cut(original, line, column))
    await editor.complete(document, line, column, scenario)
    editor.replace(document, original)


def openers(lines: list[str]) -> list[int]:
    """The lines that open a block (where an editor asks for the block's body)."""
    return [i for i, content in enumerate(lines) if OPENER.match(content)]


async def multi_line(editor: Editor, document: Document, rng: random.Random, scenario: Scenario | None) -> None:
    lines = document.text.split("\n")
    line = rng.choice(openers(lines))
    await editor.complete(document, line, len(lines[line]), scenario)


async def first_request(editor: Editor, texts: list[str], rng: random.Random, scenario: Scenario | None) -> None:
    """A fresh document of ~2,000 tokens and a cursor in the middle of one of its code lines: a cold request."""
    lines = rng.choice(texts).split("\n")
    middle = rng.choice(code_lines("\n".join(lines)))
    above, below, size = middle, middle + 1, len(lines[middle])
    while size < 8000 and (above > 0 or below < len(lines)):  # about 2,000 tokens of lines around it
        if above > 0:
            above -= 1
            size += len(lines[above]) + 1
        if below < len(lines):
            size += len(lines[below]) + 1
            below += 1
    window, line = lines[above:below], middle - above
    column = len(window[line]) // 2
    document = editor.open_text(f"file:///bench/first-{uuid.uuid4().hex}.py", cut("\n".join(window), line, column))
    await editor.complete(document, line, column, scenario)


async def typing(
    editor: Editor, documents: list[Document], rng: random.Random, scenario: Scenario, n: int, per_line: int = 0
) -> None:
    """Cut a line, then type its rest back one character per request (n requests in all). With `per_line`, at most
    that many characters of a line, each line from a document drawn anew: the requests spread over many lines
    (without it, whole lines of one document: a few lines make all n)."""
    document = rng.choice(documents)
    while len(scenario.latencies_ms) < n:
        original = document.text
        line = rng.choice(code_lines(original))
        content = original.split("\n")[line]
        column = len(content) - len(content.lstrip()) + 1
        for end in range(column, len(content) if not per_line else min(len(content), column + per_line)):
            if len(scenario.latencies_ms) >= n:
                break
            editor.replace(document, cut(original, line, end))
            await editor.complete(document, line, end, scenario)
        editor.replace(document, original)
        if per_line:
            document = rng.choice(documents)


async def settle(requests: list[Pending]) -> None:
    """Wait for every request to be answered, cancelled ones included (their errors are expected)."""
    await asyncio.gather(*(asyncio.wrap_future(request.answer) for request in requests), return_exceptions=True)


async def paced_burst(
    editor: Editor, document: Document, rng: random.Random, scenario: Scenario, cancel: bool, rate: float
) -> None:
    """Type a burst of a cut line's rest at `rate` characters per second with automatic requests, then pause.

    The burst's last request is measured from its keystroke to its answer (what a user waits for when they stop
    typing); earlier requests are cancelled as they are superseded when `cancel`, else left to go stale.
    """
    original = document.text
    automatic = types.InlineCompletionTriggerKind.Automatic
    burst: range = range(0)
    while not burst:
        line = rng.choice(code_lines(original))
        content = original.split("\n")[line]
        column = len(content) - len(content.lstrip()) + 1
        burst = range(column, min(len(content), column + rng.randint(3, 8)))
    before = await editor.stats()
    sent: list[Pending] = []
    for end in burst:
        if sent:
            await asyncio.sleep(1 / rate)
            if cancel:
                editor.cancel(sent[-1])
        editor.replace(document, cut(original, line, end))
        start = time.perf_counter()
        sent.append(editor.request(document, line, end, automatic))
    result = await asyncio.wrap_future(sent[-1].answer)
    elapsed = (time.perf_counter() - start) * 1e3
    await settle(sent)
    after = await editor.stats()
    record(scenario, elapsed, result, after["model_calls"] - before["model_calls"])
    editor.replace(document, original)


async def start(model: str | None, threads: int | None, completion: dict[str, int] | None = None) -> LanguageClient:
    client = LanguageClient("diffill-bench", "0")
    for method in (types.WINDOW_LOG_MESSAGE, types.PROGRESS, "diffill/status"):
        client.feature(method)(lambda *_: None)
    client.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: print(f"server: {params.message}", file=sys.stderr))
    command = [sys.executable, "-m", "lsp_server", "--log-level", "WARNING", *(["--model", model] if model else [])]
    await client.start_io(*command)
    options = ({"model": {"threads": threads}} if threads else {}) | ({"completion": completion} if completion else {})
    await client.initialize_async(
        types.InitializeParams(capabilities=types.ClientCapabilities(), initialization_options=options or None)
    )
    client.initialized(types.InitializedParams())
    status = stats(await client.protocol.send_request_async("diffill/stats", {"waitForModel": 600}))
    if status["state"] != "ready":
        raise SystemExit(f"the server could not load the model: {status['error']}")
    print(f"engine: {stats(status['engine']) if status['engine'] else {}}", file=sys.stderr)
    return client


def fim_dev_files(path: Path) -> dict[str, str]:
    """The documents of the fim-dev set: each task's prefix + suffix is its file (the longest per path)."""
    files: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            task = json.loads(line)
            text = task["prefix"] + task["suffix"]
            if len(text) > len(files.get(task["path"], "")):
                files[task["path"]] = text
    return files


async def run(
    model: str | None,
    n: int,
    seed: int,
    names: list[str],
    rate: float,
    threads: int | None,
    fim_dev: Path | None,
    completion: dict[str, int] | None = None,
    per_line: int = 0,
) -> list[Scenario]:
    rng = random.Random(seed)
    client = await start(model, threads, completion)
    try:
        editor = Editor(client)
        if fim_dev is None:
            documents = [editor.open(STDLIB / name) for name in SOURCES]
        else:
            files = fim_dev_files(fim_dev)
            documents = [editor.open_text(f"file:///fim-dev/{path}", text) for path, text in sorted(files.items())]
        texts = [document.text for document in documents]
        blocks = [document for document in documents if openers(document.text.split("\n"))]  # where to ask for one
        if not blocks:
            raise ValueError("no document opens a block (def/class/if/... ending in ':'): nowhere to ask for one")
        for _ in range(WARMUP):
            await single_line(editor, rng.choice(documents), rng, None)
            await multi_line(editor, rng.choice(blocks), rng, None)
        scenarios = {name: Scenario(name) for name in names}
        for _ in range(n if "first" in scenarios else 0):
            await first_request(editor, texts, rng, scenarios["first"])
        for _ in range(n):
            if "single-line" in scenarios:
                await single_line(editor, rng.choice(documents), rng, scenarios["single-line"])
            if "multi-line" in scenarios:
                await multi_line(editor, rng.choice(blocks), rng, scenarios["multi-line"])
        if "typing" in scenarios:
            await typing(editor, documents, rng, scenarios["typing"], n, per_line)
        # The paced scenarios take turns, burst by burst on lines drawn from one generator: both see the same load
        # and neither finds the other's answers in the server's caches (run one after the other, the second would).
        paced = [(scenarios[name], name == "paced-cancel") for name in ("paced", "paced-cancel") if name in scenarios]
        for _ in range(n if paced else 0):
            for scenario, cancel in paced:
                await paced_burst(editor, rng.choice(documents), rng, scenario, cancel, rate)
        return list(scenarios.values())
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_lsp", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", nargs="+", default=["default"], help="checkpoint directories, or default / default-ar (embedded)"
    )
    parser.add_argument("--threads", type=int, help="the server's model.threads (default: its own choice)")
    parser.add_argument("--fim-dev", type=Path, help="open the fim-dev set's files (realistic code) instead")
    parser.add_argument(
        "--repairs", type=int, help="the server's completion.repairs (follow-up requests; default: its own, 2)"
    )
    parser.add_argument(
        "--first-steps",
        type=int,
        help="the server's completion.firstSteps (a single-line request's quick first ask; default: its own, 4)",
    )
    parser.add_argument("--n", type=int, default=50, help="measured requests per scenario (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="scenarios to run (default: all)"
    )
    parser.add_argument("--chars-per-s", type=float, default=8.0, help="typing speed of the paced scenarios")
    parser.add_argument(
        "--keystrokes-per-line",
        type=int,
        default=0,
        help="typing: at most this many characters of a line, each line from a document drawn anew (default: whole "
        "lines of one document)",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.chars_per_s <= 0 or args.keystrokes_per_line < 0:
        parser.error("--n and --chars-per-s must be positive, --keystrokes-per-line at least 0")
    if args.repairs is not None and not 0 <= args.repairs <= 4:
        parser.error("--repairs must be in 0..4 (the server's completion.repairs)")
    if args.first_steps is not None and args.first_steps < 0:
        parser.error("--first-steps must be at least 0 (the server's completion.firstSteps)")
    completion = {"repairs": args.repairs, "firstSteps": args.first_steps}
    completion = {key: value for key, value in completion.items() if value is not None}
    results = {}
    for model in args.model:
        path = EMBEDDED.get(model, model)
        if path is not None and model in EMBEDDED:
            path = str(Path(__file__).resolve().parents[1] / path)
        results[model] = asyncio.run(
            run(
                path,
                args.n,
                args.seed,
                args.scenario,
                args.chars_per_s,
                args.threads,
                args.fim_dev,
                completion,
                args.keystrokes_per_line,
            )
        )
    print(
        "| model | scenario | n | p50 ms | p95 ms | mean ms | items/request | without model call "
        "| model calls/request | prefill p50 ms | sampling p50 ms | p50 / first model's |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    first = {s.name: s for s in results[args.model[0]]}
    for model, scenarios in results.items():
        for scenario in scenarios:
            ratio = scenario.p50 / first[scenario.name].p50 if first[scenario.name].p50 else float("nan")
            print(f"| {model} {scenario.row()} {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
