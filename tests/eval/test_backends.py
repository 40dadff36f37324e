"""Backends against real servers on loopback: `diffill serve` in its three dialects (native msgpack, OpenAI
/v1/completions, llama.cpp /infill) and an Ollama-shaped /api/generate server give the in-process engine's
completions for the same tasks; the copy baseline copies; unreachable servers are clear errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval.backends import BackendSpec, open_backend
from eval.backends.http import BackendError
from eval.backends.reference import copy_rest_of_line
from eval.editor import GenConfig
from eval.runner import run_suite
from eval.suites.santacoder import SantaCoderSuite, load_problems


class _Ollama(BaseHTTPRequestHandler):
    """Ollama's /api/generate (non-streaming) answered by an in-process engine: prompt = prefix, suffix = suffix,
    options.num_predict = canvas length, options.temperature/seed; like Ollama, fields it does not know are
    ignored except `language` and `steps`, which it passes on to the engine."""

    engine = None

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        from engine.contract import SampleOptions

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/api/generate" or not body.get("model"):
            self._reply(404 if self.path != "/api/generate" else 400, {"error": "model is required"})
            return
        options = body.get("options", {})
        sampling = SampleOptions(
            steps=body.get("steps", 8), temperature=options.get("temperature", 0.8), seed=options.get("seed", 0)
        )
        [completion] = self.engine.complete(
            body["prompt"],
            body.get("suffix", ""),
            language=body.get("language", "other"),
            canvas_length=options.get("num_predict", 32),
            num_candidates=1,
            options=sampling,
        )
        self._reply(200, {"model": body["model"], "response": completion.text, "done": True, "eval_count": 1})

    def _reply(self, status: int, data: dict) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ollama(reference) -> Iterator[str]:
    handler = type("Handler", (_Ollama,), {"engine": reference})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def reference(sharp_checkpoint: Path):
    from engine.api import load_engine

    return load_engine(sharp_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def serve(sharp_checkpoint: Path):
    from engine.api import load_engine
    from engine.serve.app import ServeConfig
    from engine.serve.server import ServeThread

    with ServeThread(load_engine(sharp_checkpoint, device="cpu"), ServeConfig(port=0)) as running:
        yield running


def _completions(suite, engine, out: Path) -> dict[str, tuple[str, str]]:
    from engine.contract import SampleOptions

    config = GenConfig(SampleOptions(steps=4), candidates=1)
    run_suite(suite, engine, config, out, {"backend": str(out.name)}, progress=False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["task_id"]: (r["completion"], r["raw"]["completion"]) for r in records}


def test_every_dialect_of_diffill_serve_and_ollama_give_the_in_process_completions(
    reference, serve, ollama, santacoder_jsonl: Path, tmp_path: Path
) -> None:
    suite = SantaCoderSuite(load_problems(santacoder_jsonl))
    expected = _completions(suite, reference, tmp_path / "in-process")
    assert len({raw for _, raw in expected.values()}) == 3  # each task its own text: equality below means something
    specs = {
        "remote": BackendSpec("remote", url=serve.url),
        "openai": BackendSpec("openai", url=serve.url, model="tiny", send_language=True, extra={"steps": 4}),
        "llama-cpp": BackendSpec("llama-cpp", url=serve.url, send_language=True, extra={"steps": 4}),
        "ollama": BackendSpec("ollama", url=ollama, model="tiny", send_language=True, extra={"steps": 4}),
        "openai-no-language": BackendSpec("openai", url=serve.url, model="tiny", extra={"steps": 4}),
    }
    for name, spec in specs.items():
        engine = open_backend(spec)
        try:
            got = _completions(suite, engine, tmp_path / name)
        finally:
            engine.close()
        if name == "openai-no-language":  # the server then tags the context "other": another request
            assert got != expected
        else:
            assert got == expected, name


def test_a_server_that_is_not_there_is_a_clear_error() -> None:
    engine = open_backend(BackendSpec("llama-cpp", url="http://127.0.0.1:9"))
    with pytest.raises(BackendError, match="connection refused"):
        engine.complete("x = ", "", language="python", canvas_length=8, num_candidates=1)


def test_server_errors_carry_the_server_message(serve) -> None:
    engine = open_backend(BackendSpec("openai", url=serve.url, extra={"echo": True}))
    with pytest.raises(BackendError, match="400.*echo"):
        engine.complete("x = ", "", language="python", canvas_length=8, num_candidates=1)


def test_backend_specs_refuse_incomplete_settings() -> None:
    with pytest.raises(BackendError, match="--url"):
        BackendSpec("openai")
    with pytest.raises(BackendError, match="--model"):
        BackendSpec("ollama")
    with pytest.raises(BackendError, match="--token"):
        BackendSpec("copy", token="t")
    assert BackendSpec().label == "engine:default" and BackendSpec(autoregressive=True).label == "engine:default-ar"


def test_the_copy_baseline_copies_the_rest_of_the_nearest_line_that_starts_alike() -> None:
    prefix = "total = compute(a, b)\nother = 1\nprint(total)\n    total = "
    assert copy_rest_of_line(prefix, "\nx = 2\n") == "compute(a, b)"
    # nearest first, above before below at the same distance
    assert copy_rest_of_line("y = 1\nx = far\nz = 0\nx", "\nx = near_below\n") == " = near_below"
    assert copy_rest_of_line("x = above\nx", "\nx = below\n") == " = above"
    assert copy_rest_of_line("    ", "\nreturn x\n") == ""  # nothing typed: nothing to match
    assert copy_rest_of_line("foo(1)\nfoo(1)", "") == ""  # a match with nothing more to copy is no match
