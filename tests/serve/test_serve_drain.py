"""SIGTERM under load: the process stops accepting, every request in flight gets a reply (200 when it finishes
within the drain deadline, else 503 with Retry-After), and the process exits 0."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_wire import Reply, call, fim_body, serve_process

IN_FLIGHT = 12
# Slow on purpose: one commit per step (threshold 1) over 16 tokens, four requests per step.
SLOW = {"canvas_length": 16, "num_candidates": 4, "threshold": 1.0, "steps": 16}


def inflight(url: str) -> int:
    text = call(url, "GET", "/metrics").body.decode()
    return int(float(re.search(r"^diffill_inflight_requests (\S+)", text, re.M).group(1)))  # type: ignore[union-attr]


@pytest.mark.parametrize("drain_seconds,all_finish", [(60, True), (0, False)], ids=["drained", "cut-short"])
def test_sigterm_under_load_answers_every_request_in_flight(
    tiny_checkpoint: Path, drain_seconds: int, all_finish: bool
) -> None:
    args = ("--max-batch", "4", "--drain-seconds", str(drain_seconds), "--log-level", "INFO")
    with serve_process(tiny_checkpoint, *args) as server, ThreadPoolExecutor(IN_FLIGHT) as pool:
        bodies = [fim_body(id=f"r{i}", seed=i, **SLOW) for i in range(IN_FLIGHT)]
        futures = [pool.submit(call, server.url, "POST", "/v1/fim", body, timeout=120) for body in bodies]
        deadline = time.monotonic() + 60
        while inflight(server.url) < IN_FLIGHT:
            assert time.monotonic() < deadline, "the requests never were all in flight"
            assert not any(f.done() for f in futures), "a request finished before the load was complete"
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        replies: list[Reply] = [f.result(timeout=120) for f in futures]  # a dropped connection raises here
        assert server.proc.wait(timeout=120) == 0
    statuses = [r.status for r in replies]
    if all_finish:
        assert statuses == [200] * IN_FLIGHT
    else:
        assert set(statuses) <= {200, 503} and 503 in statuses
    for reply in replies:
        if reply.status == 503:
            assert reply.headers["retry-after"] == "1"
            assert "stopping" in reply.data["error"]["message"]
        else:
            assert len(reply.data["completions"]) == SLOW["num_candidates"]
    assert "Traceback" not in server.stderr
    assert "stopped" in server.stderr
