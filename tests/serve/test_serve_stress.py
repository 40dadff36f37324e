"""A shared box under stress: stalled sockets, descriptor limits, huge prompts and half-closed clients leave
legitimate requests answered quickly, and the log readable.

The serving issue's bounds are asserted as set (a legitimate request under 1 s beside 1,100 stalled sockets; a 3.5 MB
prompt refused, and /health answered, within 50 ms), on medians or minima of several tries where one sample could be
a loaded 2-core machine's hiccup; the load-test figures come from ``python -m eval.bench_serve`` (docs/serving.md).
"""

from __future__ import annotations

import json
import logging
import re
import resource
import socket
import statistics
import threading
import time
from pathlib import Path

import msgpack
import pytest
from serve_wire import PREFIX, SUFFIX, Reply, call, fim_body, raw_socket, read_reply, serve_process

STALLED = 1_100
NOFILE = 1024
MSGPACK = "application/msgpack"


def limit_open_files() -> None:  # runs in the server's process before exec (ulimit -n 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def metric(url: str, name: str) -> float:
    text = call(url, "GET", "/metrics").body.decode()
    return float(re.search(rf"^{name} (\S+)", text, re.M).group(1))  # type: ignore[union-attr]


def open_stalled(url: str, count: int) -> list[socket.socket]:
    """Sockets that connect and then stall: half send nothing, half a request head that never ends."""
    host, port = url.removeprefix("http://").split(":")
    out = []
    for i in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        if i % 2:
            sock.sendall(b"POST /v1/fim HTTP/1.1\r\nHost: x\r\n")
        out.append(sock)
    return out


def test_stalled_sockets_under_ulimit_leave_a_legitimate_request_answered(tiny_checkpoint: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < STALLED + 100:  # the test itself holds the sockets
        if hard != resource.RLIM_INFINITY and hard < STALLED + 100:
            pytest.skip(f"this test needs {STALLED + 100} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (STALLED + 100, hard))
    stalled: list[socket.socket] = []
    try:
        with serve_process(tiny_checkpoint, "--log-level", "WARNING", preexec_fn=limit_open_files) as server:
            stalled = open_stalled(server.url, STALLED)
            t0 = time.perf_counter()
            reply = call(server.url, "POST", "/v1/fim", fim_body(canvas_length=8), timeout=30)
            elapsed = time.perf_counter() - t0
            assert reply.status == 200 and reply.data["completions"]
            assert elapsed < 1.0, f"a legitimate request took {elapsed:.2f} s beside {STALLED} stalled sockets"
            assert metric(server.url, "diffill_connections_evicted_total") > 0  # stalled ones gave up their slots
            assert metric(server.url, "diffill_open_connections") <= NOFILE
            assert server.stop() == 0
    finally:
        for sock in stalled:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "Traceback" not in server.stderr and len(server.stderr) < 10_000  # no log flood


def test_connection_cap_gives_a_stalled_slot_to_a_newcomer_and_refuses_when_all_are_busy(make_server) -> None:
    server = make_server(max_connections=4, max_connections_per_ip=4)
    stalled = open_stalled(server.url, 10)
    try:
        assert call(server.url, "POST", "/v1/fim", fim_body(canvas_length=8)).status == 200
        assert server.app.metrics.connections_evicted_total >= 7
    finally:
        for sock in stalled:
            sock.close()
    scheduler = server.app.scheduler
    scheduler.pause()  # four requests in progress hold all four slots: a fifth connection is refused, not queued
    busy = [threading.Thread(target=call, args=(server.url, "POST", "/v1/fim", fim_body(id=f"b{i}"))) for i in range(4)]
    for thread in busy:
        thread.start()
    assert scheduler.wait_until(lambda: scheduler.queue_depth == 4, timeout=30)
    refused = call(server.url, "GET", "/health")
    assert refused.status == 503 and refused.headers["retry-after"] == "1"
    scheduler.resume()
    for thread in busy:
        thread.join(timeout=30)


def test_a_silent_connection_is_closed_after_the_header_timeout(make_server) -> None:
    server = make_server(header_timeout=0.3)
    with raw_socket(server.url, timeout=30) as sock:
        assert sock.recv(1) == b""  # closed by the server, without a reply: nobody asked anything
    with raw_socket(server.url, timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # a head that never ends
        assert read_reply(sock).status == 408


def timed(url: str, path: str, body: bytes, content_type: str) -> tuple[Reply, float]:
    t0 = time.perf_counter()
    reply = call(url, "POST", path, body, content_type=content_type)
    return reply, (time.perf_counter() - t0) * 1e3


def test_a_huge_prompt_is_refused_in_milliseconds_and_health_stays_fast(tiny_checkpoint: Path) -> None:
    huge_text = "x = 1\n" * (3_500_000 // 6)  # 3.5 MB, within the 4 MiB body limit
    native = msgpack.packb(fim_body(prefix=huge_text))
    openai = json.dumps({"prompt": huge_text, "suffix": "", "max_tokens": 8}).encode()
    health_ms: list[float] = []
    stop = threading.Event()
    # The real server in its own process (no GIL shared with this client); the bounds are 50 ms for both.
    with serve_process(tiny_checkpoint, "--log-level", "WARNING") as server:
        limit = call(server.url, "GET", "/v1/info").data["max_request_chars"]
        over_chars = msgpack.packb(fim_body(prefix="x" * (limit + 1 - len(SUFFIX))))  # a short body, 1 char too many
        # At the character limit but over the token limit: tokenized (in a thread, GIL released) before refused.
        over_tokens = msgpack.packb(fim_body(prefix=(PREFIX * (limit // len(PREFIX)))[: limit - len(SUFFIX)]))

        def poll_health() -> None:  # ~100 a second (a busier loop would mostly measure this process's GIL)
            while not stop.wait(0.01):
                t0 = time.perf_counter()
                assert call(server.url, "GET", "/health").status == 200
                health_ms.append((time.perf_counter() - t0) * 1e3)

        poller = threading.Thread(target=poll_health)
        poller.start()
        try:
            natives = [timed(server.url, "/v1/fim", native, MSGPACK) for _ in range(5)]
            jsons = [timed(server.url, "/v1/completions", openai, "application/json") for _ in range(5)]
            chars = timed(server.url, "/v1/fim", over_chars, MSGPACK)[0]
            tokens = [timed(server.url, "/v1/fim", over_tokens, MSGPACK)[0] for _ in range(3)]
        finally:
            stop.set()
            poller.join(timeout=30)
        assert server.stop() == 0
    # Native: refused from its Content-Length, never read. JSON: read and parsed (plugins send other files
    # along), refused on characters before any tokenizing.
    assert all(r.status == 413 and f"at most {limit} characters" in r.data["error"]["message"] for r, _ in natives)
    assert all(r.status == 422 and "characters" in r.data["error"]["message"] for r, _ in jsons)
    assert chars.status == 422 and f"limit of {limit} characters" in chars.data["error"]["message"]
    assert all(r.status == 422 and "tokens" in r.data["error"]["message"] for r in tokens)
    # Robust to a loaded 2-core machine: the median of five refusals (typically ~4 ms) for the native route, the
    # fastest of five for JSON (its 4 MB parse alone is ~12 ms), and the median of /health's replies while all
    # of the above ran; a single stall (what tokenizing 3.5 MB on the loop did: seconds) still fails the max.
    native_ms = statistics.median(ms for _, ms in natives)
    assert native_ms < 50, f"refusing a 3.5 MB native prompt took {native_ms:.0f} ms (median of 5)"
    json_ms = min(ms for _, ms in jsons)
    assert json_ms < 50, f"refusing a 3.5 MB JSON prompt took at least {json_ms:.0f} ms"
    assert len(health_ms) >= 10 and statistics.median(health_ms) < 50, f"/health took {health_ms} ms"
    assert max(health_ms) < 500, f"/health stalled for {max(health_ms):.0f} ms"


def test_a_native_body_is_bounded_by_the_character_limit_chunked_or_not(make_server) -> None:
    server = make_server(max_context=16)  # 512 characters: a native body of more than 4 x 512 + 64 KiB cannot fit
    bound = server.app.limits.native_body_bytes
    with raw_socket(server.url) as sock:  # announced: refused from the head, before a byte of the body is sent
        sock.sendall(f"POST /v1/fim HTTP/1.1\r\nContent-Length: {bound + 1}\r\nExpect: 100-continue\r\n\r\n".encode())
        reply = read_reply(sock)
        assert reply.status == 413 and "at most 512 characters" in reply.data["error"]["message"]
    chunk = b"%x\r\n%s\r\n" % (bound + 1, b"x" * (bound + 1))
    with raw_socket(server.url) as sock:
        sock.sendall(b"POST /v1/fim HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
        assert read_reply(sock).status == 413
    assert call(server.url, "POST", "/v1/fim", fim_body(prefix="x" * 600)).status == 422  # short body, too many chars


def test_half_closed_and_vanishing_clients_log_no_traceback(server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for raw in (b"GARBAGE\r\n\r\n", b"POST /v1/fim HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"):
        with raw_socket(server.url) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)  # half-close: the server's lingering close meets a closed socket
            read_reply(sock)
    with raw_socket(server.url) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        sock.shutdown(socket.SHUT_RDWR)
    body = msgpack.packb(fim_body())
    with raw_socket(server.url) as sock:  # leaves while its request runs
        sock.sendall(b"POST /v1/fim HTTP/1.1\r\nContent-Type: application/msgpack\r\n")
        sock.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert call(server.url, "POST", "/v1/fim", fim_body()).status == 200
    time.sleep(0.2)  # let the server finish the connections above (nothing to wait on from outside)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
