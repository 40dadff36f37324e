"""Bad input gets an error reply and the server keeps serving; a client that leaves disturbs nobody else."""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import msgpack
import pytest
from serve_wire import PREFIX, call, fim_body, raw_socket, read_reply

GOOD = fim_body(canvas_length=12, num_candidates=1)


def still_serving(url: str) -> bool:
    return call(url, "POST", "/v1/fim", GOOD).status == 200


@pytest.mark.parametrize(
    "body,status,message",
    [
        (b"\xc1\xc1\xc1", 400, "malformed msgpack"),
        (b"\x92\x01", 400, "malformed msgpack"),  # truncated array
        (msgpack.packb([1, 2, 3]), 400, "must be a map"),
        (msgpack.packb({"suffix": ""}), 400, "missing field 'prefix'"),
        (msgpack.packb({"prefix": 3}), 400, "must be a string"),
        (msgpack.packb({"prefix": "x", "canvas_length": "16"}), 400, "must be an integer"),
        (msgpack.packb({"prefix": "x", "temperature": float("nan")}), 400, "finite number"),
        (msgpack.packb({"prefix": "x", "canvas_length": 2**21}), 400, "canvas_length"),
        (msgpack.packb({"prefix": "x", "num_candidates": 0}), 422, "num_candidates"),
        (msgpack.packb({"prefix": "x", "v": 2}), 400, "'v'"),
    ],
)
def test_malformed_native_requests_get_an_error_reply_and_the_server_keeps_serving(
    server, body: bytes, status: int, message: str
) -> None:
    reply = call(server.url, "POST", "/v1/fim", body, content_type="application/msgpack")
    assert reply.status == status
    assert reply.headers["content-type"] == "application/msgpack"
    assert message in reply.data["error"]["message"]
    assert still_serving(server.url)


@pytest.mark.parametrize(
    "method,path,body,content_type,status",
    [
        ("POST", "/v1/completions", b"{not json", "application/json", 400),
        ("POST", "/v1/completions", b"[1]", "application/json", 400),
        ("POST", "/infill", b'{"input_prefix": 1}', "application/json", 400),
        ("POST", "/v1/fim", msgpack.packb(GOOD), "application/json", 415),
        ("GET", "/v1/fim", None, None, 405),
        ("GET", "/nope", None, None, 404),
    ],
)
def test_bad_json_routes_and_methods_are_answered(server, method, path, body, content_type, status) -> None:
    reply = call(server.url, method, path, body, content_type=content_type)
    assert reply.status == status
    assert reply.data["error"]["code"] == status
    assert still_serving(server.url)


def test_context_over_the_limit_is_refused_with_a_message(make_server) -> None:
    server = make_server(max_context=64)
    reply = call(server.url, "POST", "/v1/fim", fim_body(prefix=PREFIX * 40))
    assert reply.status == 422 and "--max-context" in reply.data["error"]["message"]
    assert still_serving(server.url)


def test_oversized_bodies_get_413_and_the_server_keeps_serving(make_server) -> None:
    server = make_server(max_body_bytes=2048)
    big = call(server.url, "POST", "/v1/fim", fim_body(prefix="x" * 5000))
    assert big.status == 413 and "exceeds the limit of 2048 bytes" in big.data["error"]["message"]
    with raw_socket(server.url) as sock:  # announces a gigabyte, sends nothing: answered at once, never read
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        assert read_reply(sock).status == 413
    with raw_socket(server.url) as sock:  # chunked bodies count too
        sock.sendall(b"POST /infill HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"x" * 4096)
        assert read_reply(sock).status == 413
    assert still_serving(server.url)


@pytest.mark.parametrize(
    "raw,status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nno-colon-here\r\n\r\n", 400),
        (b"POST /v1/fim HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /v1/fim HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "http2", "header-without-colon", "negative-length", "length-and-chunked", "huge-header"],
)
def test_malformed_http_gets_an_error_reply(server, raw: bytes, status: int) -> None:
    with raw_socket(server.url) as sock:
        sock.sendall(raw)
        assert read_reply(sock).status == status
    assert still_serving(server.url)


def test_keep_alive_and_chunked_request_bodies_work(server) -> None:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        for _ in range(3):  # one connection, several requests
            body = msgpack.packb(GOOD)
            conn.request(
                "POST", "/v1/fim", body=iter([body[:5], body[5:]]), headers={"Content-Type": "application/msgpack"}
            )
            response = conn.getresponse()
            assert response.status == 200 and msgpack.unpackb(response.read())["completions"]
    finally:
        conn.close()


def test_a_stalled_client_does_not_block_others(server) -> None:
    with raw_socket(server.url) as stalled:
        stalled.sendall(b"POST /v1/fim HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # and then nothing
        assert still_serving(server.url)


def test_client_disconnecting_mid_request_does_not_disturb_others(make_server, serve_engine) -> None:
    server = make_server()
    scheduler = server.app.scheduler
    model = serve_engine.runner.model
    in_step, proceed = threading.Event(), threading.Event()
    original = model.denoise_packed

    def gated(*args, **kwargs):  # hold the first packed step until the leaving client is gone
        if not proceed.is_set():
            in_step.set()
            proceed.wait(timeout=30)
        return original(*args, **kwargs)

    other = fim_body(id="stays", canvas_length=16, num_candidates=2, seed=5, temperature=1.0)
    alone = call(server.url, "POST", "/v1/fim", other).data["completions"]
    leaving = fim_body(id="leaves", canvas_length=32, num_candidates=4, threshold=1.0)
    model.denoise_packed = gated
    try:
        scheduler.pause()
        with raw_socket(server.url) as sock, ThreadPoolExecutor(1) as pool:
            body = msgpack.packb(leaving)
            head = f"POST /v1/fim HTTP/1.1\r\nContent-Type: application/msgpack\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body)
            stays = pool.submit(call, server.url, "POST", "/v1/fim", other)
            assert scheduler.wait_until(lambda: scheduler.queue_depth == 2, timeout=20)
            scheduler.resume()
            assert in_step.wait(timeout=20)  # both are running, inside the first step
            job = scheduler.find("anonymous", "leaves")
            sock.close()
            assert scheduler.wait_until(lambda: job.cancelled, timeout=20)
            proceed.set()
            reply = stays.result(timeout=30)
    finally:
        proceed.set()
        model.denoise_packed = original
    assert reply.status == 200
    assert reply.data["completions"] == alone
    assert reply.data["stats"]["batch_max"] == 2
    assert scheduler.wait_until(lambda: scheduler.active == 0, timeout=20)
    assert server.app.metrics.cancelled_total == 1
    assert still_serving(server.url)


def test_cancel_message_ends_a_waiting_request(make_server) -> None:
    server = make_server()
    scheduler = server.app.scheduler
    scheduler.pause()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(call, server.url, "POST", "/v1/fim", fim_body(id="r1"))
        assert scheduler.wait_until(lambda: scheduler.queue_depth == 1, timeout=20)
        assert call(server.url, "POST", "/v1/cancel", {"id": "r1"}).data["cancelled"] is True
        reply = waiting.result(timeout=30)
    scheduler.resume()
    assert reply.status == 499 and "cancelled" in reply.data["error"]["message"]
    assert call(server.url, "POST", "/v1/cancel", {"id": "r1"}).data["cancelled"] is False
    assert still_serving(server.url)
