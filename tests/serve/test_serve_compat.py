"""The JSON endpoints speak what existing plugins expect: the `openai` client, llama.cpp's /infill, health, metrics."""

from __future__ import annotations

import pytest
from serve_wire import PREFIX, SUFFIX, call

from engine.contract import SampleOptions
from engine.serve.compat import cut_at_stop

openai = pytest.importorskip("openai")


def greedy(reference, canvas_length: int, **kwargs) -> str:
    """The first (greedy) candidate LocalEngine gives for the shared prefix/suffix."""
    options = SampleOptions(**kwargs)
    out = reference.complete(
        PREFIX, SUFFIX, language="python", canvas_length=canvas_length, num_candidates=1, options=options
    )
    return out[0].text


def test_openai_client_talks_to_v1_completions(make_server, reference) -> None:
    server = make_server(tokens=("sk-test",))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0, timeout=30)
    response = client.completions.create(
        model="diffill",
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=12,
        n=3,
        temperature=0.8,
        seed=4,
        stop=["\n\n"],
        extra_body={"language": "python", "session_id": "doc-1"},
    )
    assert len(response.choices) == 3
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in response.choices)
    expected, _ = cut_at_stop(greedy(reference, 12, temperature=0.8, seed=4), ("\n\n",))
    assert response.choices[0].text == expected
    assert response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_openai_client_streams_and_reports_errors(make_server) -> None:
    server = make_server()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)
    chunks = list(
        client.completions.create(model="diffill", prompt="x = ", suffix="\n", max_tokens=8, n=2, stream=True)
    )
    assert sorted(chunk.choices[0].index for chunk in chunks) == [0, 1]
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model="diffill", prompt="x", echo=True)
    models = client.models.list()
    assert [m.id for m in models.data] == [server.app.engine.name]


def test_max_tokens_beyond_the_canvas_limit_is_clamped(server) -> None:
    reply = call(server.url, "POST", "/v1/completions", {"prompt": PREFIX, "max_tokens": 100_000})
    assert reply.status == 200
    assert reply.data["usage"]["completion_tokens"] <= server.app.limits.max_canvas


def test_llama_cpp_infill(server, reference) -> None:
    reply = call(
        server.url,
        "POST",
        "/infill",
        {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 10, "language": "python"},
    )
    assert reply.status == 200
    data = reply.data
    assert data["content"] == greedy(reference, 10, temperature=0.8)
    assert data["stop"] is True and data["stop_type"] in ("eos", "limit", "word")
    assert data["tokens_evaluated"] > 0
    unlimited = call(server.url, "POST", "/infill", {"input_prefix": "x = ", "input_suffix": "", "n_predict": -1})
    assert unlimited.status == 200 and isinstance(unlimited.data["content"], str)


def test_health_and_metrics(server) -> None:
    health = call(server.url, "GET", "/health")
    assert health.status == 200
    assert health.data == {"status": "ok", "ready": True, "model": server.app.engine.name}
    call(server.url, "POST", "/infill", {"input_prefix": "a", "input_suffix": "b", "n_predict": 4})
    call(server.url, "POST", "/infill", b"{", content_type="application/json")
    metrics = call(server.url, "GET", "/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body.decode()
    for name in (
        "diffill_queue_depth",
        "diffill_active_requests",
        "diffill_steps_total",
        "diffill_step_seconds_bucket",
        'diffill_step_seconds_recent{quantile="0.95"}',
        "diffill_cache_bytes",
    ):
        assert name in text
    assert 'diffill_requests_total{endpoint="/infill",code="200"}' in text
    assert 'diffill_request_errors_total{code="400"}' in text
    steps = next(line for line in text.splitlines() if line.startswith("diffill_steps_total "))
    assert int(steps.split()[1]) > 0
