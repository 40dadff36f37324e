"""The wire formats as pure functions: what a request may say, what a reply looks like."""

from __future__ import annotations

import pytest

from engine.contract import Completion, CompletionResult, CompletionStats, SampleOptions
from engine.serve.compat import cut_at_stop, infill_reply, openai_reply, parse_infill, parse_openai
from engine.serve.http import HttpError, parse_head
from engine.serve.metrics import Histogram, Metrics
from engine.serve.protocol import (
    Limits,
    ProtocolError,
    native_request,
    parse_native,
    parse_native_reply,
)

LIMITS = Limits(max_context=1000, max_canvas=32, max_candidates=4)


def result(*texts_tokens: tuple[str, int]) -> CompletionResult:
    completions = [Completion(text=t, score=-1.0, tokens=n) for t, n in texts_tokens]
    stats = CompletionStats(
        context_tokens=50, computed_tokens=10, prefill_ms=1.0, sample_ms=5.0, steps=4, queue_ms=0.1, batch_max=2
    )
    return CompletionResult(completions, stats)


def test_a_native_canvas_over_the_limit_is_clamped_as_in_process() -> None:
    assert parse_native({"prefix": "x", "canvas_length": 10_000}, LIMITS).canvas_length == LIMITS.max_canvas


def test_native_request_built_by_the_client_is_what_the_server_parses() -> None:
    options = SampleOptions(steps=5, threshold=0.7, temperature=1.3, seed=9)
    wire = native_request(
        "p", "s", language="go", canvas_length=16, num_candidates=2, options=options, session_id="d", request_id="r"
    )
    parsed = parse_native(wire, LIMITS)
    assert (parsed.prefix, parsed.suffix, parsed.language, parsed.canvas_length, parsed.num_candidates) == (
        "p",
        "s",
        "go",
        16,
        2,
    )
    assert (parsed.options, parsed.session_id, parsed.request_id) == (options, "d", "r")


def test_a_request_without_a_temperature_leaves_it_to_the_servers_model() -> None:
    """No temperature (absent or null on the wire) stays None, so the server's runner applies its model's own."""
    wire = native_request("p", "s", language="go", canvas_length=16, num_candidates=2, options=SampleOptions())
    assert parse_native(wire, LIMITS).options.temperature is None
    assert parse_native({"prefix": "p"}, LIMITS).options.temperature is None
    assert parse_native({"prefix": "p", "temperature": 0}, LIMITS).options.temperature == 0.0


@pytest.mark.parametrize(
    "fields,status",
    [
        ({"num_candidates": 5}, 422),
        ({"canvas_length": 0}, 400),
        ({"steps": 0}, 400),
        ({"threshold": 1.5}, 400),
        ({"seed": -1}, 400),
        ({"session": 3}, 400),
        ({"id": ""}, 400),
        ({"temperature": True}, 400),
    ],
)
def test_native_fields_out_of_range_are_refused(fields: dict, status: int) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_native({"prefix": "x", **fields}, LIMITS)
    assert e.value.status == status


def test_malformed_native_replies_are_value_errors() -> None:
    reply = parse_native_reply({"completions": [{"text": "a", "score": -1, "tokens": 1}], "stats": {"steps": 3}})
    assert reply.completions == [Completion("a", -1.0, 1)] and reply.stats.steps == 3
    for bad in ([], {"completions": [1]}, {"completions": [{"text": 1, "score": 0, "tokens": 0}]}):
        with pytest.raises(ValueError):
            parse_native_reply(bad)


def test_openai_fields_map_onto_the_engine() -> None:
    call = parse_openai(
        {"prompt": ["def f("], "suffix": None, "max_tokens": 500, "n": 3, "stop": "\n", "seed": -7, "top_p": 0.5},
        LIMITS,
    )
    req = call.request
    assert (req.prefix, req.suffix, req.canvas_length, req.num_candidates) == ("def f(", "", 32, 3)
    assert call.stop == ("\n",) and req.options.seed == 0 and req.options.temperature == 1.0
    with pytest.raises(ProtocolError, match="exactly one"):
        parse_openai({"prompt": ["a", "b"]}, LIMITS)
    reply = openai_reply(call, "m", result(("ab\ncd", 5), ("xy", 32)))
    assert [c["text"] for c in reply["choices"]] == ["ab", "xy"]
    assert [c["finish_reason"] for c in reply["choices"]] == ["stop", "length"]
    assert reply["usage"] == {"prompt_tokens": 50, "completion_tokens": 37, "total_tokens": 87}


def test_infill_fields_map_onto_the_engine() -> None:
    call = parse_infill({"input_prefix": "a", "prompt": "b", "input_suffix": "c", "n_predict": -1}, LIMITS)
    assert (call.request.prefix, call.request.suffix, call.request.canvas_length) == ("ab", "c", 32)
    reply = infill_reply(call, "m", result(("xyz", 3)))
    assert reply["content"] == "xyz" and reply["stop_type"] == "eos" and reply["tokens_cached"] == 40


def test_cut_at_stop_takes_the_earliest_stop() -> None:
    assert cut_at_stop("a;b\nc", ("\n", ";")) == ("a", True)
    assert cut_at_stop("abc", ("x",)) == ("abc", False)


def test_request_head_parsing() -> None:
    req = parse_head(b"POST /v1/fim?x=1 HTTP/1.1\r\nContent-Type: application/msgpack; q=1\r\nA: 1\r\na: 2\r\n\r\n")
    assert (req.method, req.path, req.query, req.content_type, req.headers["a"]) == (
        "POST",
        "/v1/fim",
        "x=1",
        "application/msgpack",
        "1, 2",
    )
    assert req.keep_alive and not parse_head(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    with pytest.raises(HttpError):
        parse_head(b"GET / HTTP/1.1\r\n Folded: header\r\n\r\n")


def test_metrics_render_prometheus_text() -> None:
    hist = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        hist.observe(v)
    lines = hist.render("h", "help")
    assert 'h_bucket{le="0.1"} 1' in lines and 'h_bucket{le="1"} 2' in lines and 'h_bucket{le="+Inf"} 3' in lines
    metrics = Metrics()
    metrics.observe_step(0.01, 3)
    metrics.observe_request("/v1/fim", 200, 0.2)
    metrics.observe_request("/v1/fim", 413)
    text = metrics.render({"diffill_queue_depth": ("Waiting.", 2)})
    assert "diffill_queue_depth 2" in text and "diffill_steps_total 1" in text
    assert 'diffill_request_errors_total{code="413"} 1' in text
    assert 'diffill_step_seconds_recent{quantile="0.5"} 0.010000' in text
