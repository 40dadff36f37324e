"""Cross-file chunks over the wire: llama.cpp's `input_extra` on /infill, the native `chunks`, RemoteEngine.

What reaches the model is read from what the server reports: the prompt's token count grows by exactly the
chunks' tokens as the layout writes them (``engine.layout.chunk_text``), and the completion equals the in-process
engine's for the same chunks. A second request with the same chunks reuses their cached keys/values.
"""

from __future__ import annotations

from serve_wire import PREFIX, SUFFIX, call

from engine.contract import MAX_CHUNKS, ContextChunk, SampleOptions
from engine.layout import chunk_text
from engine.remote import RemoteEngine

CHUNK = ContextChunk("pkg/util.py", "def add_numbers(left, right):\n    return left + right\n")


def chunk_tokens(engine, chunk: ContextChunk, language: str = "python") -> int:
    return engine.count_tokens(chunk_text(chunk.path, chunk.text, language))


def infill(server, **extra) -> dict:
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 8, "language": "python"} | extra
    reply = call(server.url, "POST", "/infill", body)
    assert reply.status == 200, reply.body
    return reply.data


def test_infill_input_extra_reaches_the_model(server, reference) -> None:
    plain = infill(server)
    extra = [{"filename": CHUNK.path, "text": CHUNK.text}]
    with_chunks = infill(server, input_extra=extra)
    assert with_chunks["tokens_evaluated"] == plain["tokens_evaluated"] + chunk_tokens(reference, CHUNK)
    expected = reference.complete(
        PREFIX,
        SUFFIX,
        language="python",
        canvas_length=8,
        num_candidates=1,
        options=SampleOptions(temperature=0.8),
        chunks=[CHUNK],
    )
    assert with_chunks["content"] == expected[0].text


def test_the_same_chunks_reuse_the_cached_prefill(server, reference) -> None:
    extra = [{"filename": CHUNK.path, "text": CHUNK.text}]
    infill(server, input_extra=extra, session_id="doc-xfile", input_suffix="\n")
    again = infill(server, input_extra=extra, session_id="doc-xfile")  # another suffix, the same chunks
    assert again["tokens_cached"] >= 1 + chunk_tokens(reference, CHUNK)  # the language tag and the chunk


def test_bad_input_extra_is_a_clear_error(server) -> None:
    for bad, status in (
        ("text", 400),
        ([{"filename": "a.py"}], 400),
        ([{"filename": 3, "text": "x"}], 400),
        ([{"text": "x"}] * (MAX_CHUNKS + 1), 422),
    ):
        body = {"input_prefix": "a", "input_suffix": "b", "n_predict": 4, "input_extra": bad}
        reply = call(server.url, "POST", "/infill", body)
        assert reply.status == status, (bad, reply.body)
        assert "input_extra" in reply.data["error"]["message"]


def test_openai_completions_work_without_chunks(server) -> None:
    reply = call(server.url, "POST", "/v1/completions", {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 8})
    assert reply.status == 200
    assert reply.data["choices"][0]["text"] is not None


def test_remote_engine_carries_chunks_natively(server, reference) -> None:
    with RemoteEngine(server.url) as remote:
        options = SampleOptions(temperature=0.0)
        kwargs = {"language": "python", "canvas_length": 8, "num_candidates": 2, "options": options}
        plain = remote.complete(PREFIX, SUFFIX, **kwargs)
        plain_tokens = remote.last_stats.context_tokens
        got = remote.complete(PREFIX, SUFFIX, chunks=[CHUNK], **kwargs)
        assert remote.last_stats.context_tokens == plain_tokens + chunk_tokens(reference, CHUNK)
        assert got == reference.complete(PREFIX, SUFFIX, chunks=[CHUNK], **kwargs)
        assert plain == reference.complete(PREFIX, SUFFIX, **kwargs)
