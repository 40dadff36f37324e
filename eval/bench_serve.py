"""Load benchmark of ``diffill serve``: N editors typing against one server, a soak, and head-of-line blocking.

    python -m eval.bench_serve [--model DIR | --preset small-20m] [--editors 32] [--seconds 60]
                               [--compare] [--soak-minutes M] [--hol] [--server-arg=--bulk-tokens=256 ...]

Every server is a subprocess on 127.0.0.1 (an ephemeral port; loopback only), so the clients' Python threads never
compete with the server for the GIL, and everything ends by itself: each phase is bounded by its duration plus
start-up, ``--editors`` by 256 and ``--soak-minutes`` by 30.

**Editors.** Each editor is a thread with its own session. It opens a stdlib source file at a random spot with the
next 200 characters missing and types them in bursts: 1-6 keystrokes 60-180 ms apart, then a pause of up to 2 x
``--think-ms``. Every keystroke sends a completion request for the new prefix (the session's context cache is
extended, as in real use) and makes the previous one stale: a stale request still queued is superseded by the server
(499), a running one is cancelled with ``POST /v1/cancel`` -- what the language server does. Sizes are mixed as
editors ask: 80% single-line (4 candidates x 32), 15% multi-line (2 x 64; both the language server's defaults), 5%
big (16 x 64: a client asking for the most); the server clamps canvases to the model's, and editors ask for at most
the server's ``max_candidates`` (``/v1/info``), as ``RemoteEngine`` clients do. Reported: requests sent, completed,
cancelled (499: stale, expected), errors (anything else), completions/s, p50/p95 latency of completed requests (all,
and single-line only), requests per step and the p50 step time from the server's ``/metrics``.

**Soak** (``--soak-minutes``): the same load for several minutes, one row per minute with the server's open
connections, resident memory, open files and cache bytes, which must stay flat.

**Head-of-line** (``--hol``): a small request (2 x 16) alone, then ``--hol-requests`` of them one after another
(as an editor sends them) beside a big one (16 x 64, one commit per step), with the server's fair rounds
(``--bulk-tokens`` default) and without them (``--bulk-tokens 1000000``). Per request, not on average: the worst
small request's time against alone, in all and once admitted (its prefill and steps, what fair rounds bound), and
the longest wait to be admitted (one part of the big request's step, or its commit, at most: engine.serve.scheduler).

Without ``--model``, a random-weight model of ``--preset`` is saved once under /tmp (speed does not depend on the
weights) with a tokenizer trained on a few stdlib files.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack

from engine.contract import SampleOptions
from engine.serve.protocol import MSGPACK, native_request, pack

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["textwrap.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "glob.py", "shlex.py", "string.py"]
SIZES = [(0.80, "single-line", 4, 32), (0.15, "multi-line", 2, 64), (0.05, "big", 16, 64)]
MAX_EDITORS, MAX_SOAK_MINUTES = 256, 30


# ---------------------------------------------------------------- a minimal native client (ids, cancel)


def post(url: str, path: str, body: bytes, timeout: float = 300.0) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": MSGPACK})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fim(url: str, prefix: str, suffix: str, candidates: int, canvas: int, session: str, rid: str, **opts: Any):
    options = SampleOptions(**{"steps": 8, "threshold": 0.9, "temperature": 0.8, **opts})
    request = native_request(
        prefix,
        suffix,
        language="python",
        canvas_length=canvas,
        num_candidates=candidates,
        options=options,
        session_id=session,
        request_id=rid,
    )
    return post(url, "/v1/fim", pack(request))


@dataclass
class Tally:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    sent: int = 0
    cancelled: int = 0
    unfinished: int = 0  # still waited for when the phase ended (cancelled then, not counted as 499 stale)
    closing: bool = False  # the phase ended: replies to cancelled leftovers (499, 503) are not errors
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, size: str, status: int | str, ms: float) -> None:
        with self.lock:
            if status == 200:
                self.latencies_ms.setdefault(size, []).append(ms)
            elif status == 499 or (self.closing and status == 503):
                self.cancelled += 1
            else:
                self.errors[str(status)] = self.errors.get(str(status), 0) + 1

    def completed(self, size: str | None = None) -> list[float]:
        with self.lock:
            if size is not None:
                return sorted(self.latencies_ms.get(size, []))
            return sorted(ms for values in self.latencies_ms.values() for ms in values)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# ---------------------------------------------------------------- editors


def cancel(url: str, rid: str, tally: Tally) -> None:
    try:
        post(url, "/v1/cancel", pack({"id": rid}), timeout=60)
    except (OSError, http.client.HTTPException) as e:
        tally.record("cancel", type(e).__name__, 0.0)


def typing_spot(text: str, rng: random.Random) -> tuple[str, str, int, int]:
    """A cursor in `text` with the next ~200 characters removed: (prefix start, suffix, cursor, end of the hole).
    The window (1,500 characters before, 500 after) fits every preset's context, as the language server's does."""
    cursor = rng.randrange(len(text) // 4, len(text) // 2)
    hole_end = min(cursor + 200, len(text) - 1)
    return text[max(0, cursor - 1500) : cursor], text[hole_end : hole_end + 500], cursor, hole_end


def editor(
    url: str, index: int, deadline: float, think_ms: float, tally: Tally, texts: list[str], max_candidates: int
) -> None:
    rng = random.Random(index)
    text = texts[index % len(texts)]
    head, suffix, cursor, hole_end = typing_spot(text, rng)
    typed, session = 0, f"editor-{index}"
    latest: tuple[str, threading.Thread] | None = None  # the request the editor waits for
    threads: list[threading.Thread] = []

    def send(prefix: str, rid: str, size: str, candidates: int, canvas: int) -> None:
        t0 = time.perf_counter()
        try:
            status, _ = fim(url, prefix, suffix, candidates, canvas, session, rid, seed=index)
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
        tally.record(size, status, (time.perf_counter() - t0) * 1e3)

    while time.monotonic() < deadline:
        for _ in range(rng.randint(1, 6)):  # a burst of keystrokes, each one a request that makes the last stale
            typed += rng.randint(1, 3)
            if cursor + typed >= hole_end:  # done with this spot: jump elsewhere (a cold cache)
                head, suffix, cursor, hole_end = typing_spot(text, rng)
                typed = 1
            if latest is not None and latest[1].is_alive():  # stale: a queued one is superseded by the server,
                threads.append(threading.Thread(target=cancel, args=(url, latest[0], tally), daemon=True))
                threads[-1].start()  # a running one is cancelled (once)
            rid = secrets.token_hex(6)
            _, size, candidates, canvas = rng.choices(SIZES, weights=[w for w, *_ in SIZES])[0]
            request = (head + text[cursor : cursor + typed], rid, size, min(candidates, max_candidates), canvas)
            latest = (rid, threading.Thread(target=send, args=request, daemon=True))
            threads.append(latest[1])
            with tally.lock:
                tally.sent += 1
            latest[1].start()
            threads = [t for t in threads if t.is_alive()]
            time.sleep(rng.uniform(0.06, 0.18))
        time.sleep(rng.uniform(0, 2 * think_ms) / 1e3)
    if latest is not None and latest[1].is_alive():  # the session ends: what is still out is cancelled
        with tally.lock:
            tally.unfinished += 1
        cancel(url, latest[0], tally)
    for thread in threads:
        thread.join(timeout=60)


# ---------------------------------------------------------------- the server process


def random_checkpoint(preset_name: str) -> Path:
    """A random-weight checkpoint of `preset_name` under /tmp, built once and reused."""
    out = Path(f"/tmp/diffill-bench-{preset_name}")
    if (out / "config.json").exists():
        return out
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.config import preset
    from engine.model import DiffillModel
    from engine.tokenizer import train_tokenizer

    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in SOURCES]
    tokenizer = train_tokenizer(texts, vocab_size=preset(preset_name).vocab_size, show_progress=False)
    torch.manual_seed(0)
    model = DiffillModel(preset(preset_name, vocab_size=tokenizer.vocab_size))
    return save_checkpoint(out, model, tokenizer)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str

    def metrics(self) -> str:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def info(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", "/v1/info")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def metric(self, name: str, text: str | None = None) -> float:
        match = re.search(rf"^{name} (\S+)", text or self.metrics(), re.M)
        return float(match.group(1)) if match else float("nan")

    def process_stats(self) -> tuple[float, int]:
        """Resident memory (MB) and open files of the server process."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
        return rss, len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_server(model: Path, extra: list[str], editors: int) -> ServerProcess:
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0"]
    # All editors share 127.0.0.1 and one identity: per-address and per-token caps sized for the whole team.
    cmd += ["--max-concurrent-per-token", str(8 * editors), "--max-connections-per-ip", "0"]
    cmd += ["--device", "cpu", "--log-level", "WARNING", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        if match := re.search(r"listening on (\S+)", line):
            threading.Thread(target=lambda: sys.stderr.writelines(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
            return ServerProcess(proc, match.group(1))
    proc.kill()
    raise RuntimeError(f"the server did not start: {' '.join(cmd)}")


# ---------------------------------------------------------------- phases


def run_editors(server: ServerProcess, args: argparse.Namespace, texts: list[str], seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    most = int(server.info()["max_candidates"])
    threads = [
        threading.Thread(target=editor, args=(server.url, i, deadline, args.think_ms, tally, texts, most), daemon=True)
        for i in range(args.editors)
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    tally.closing = True
    for t in threads:
        t.join(timeout=120)
    return tally


def load_row(label: str, server: ServerProcess, tally: Tally, elapsed: float) -> dict[str, Any]:
    text = server.metrics()
    count = server.metric("diffill_step_batch_requests_count", text)
    total = server.metric("diffill_step_batch_requests_sum", text)
    done, single = tally.completed(), tally.completed("single-line")
    return {
        "mode": label,
        "sent": tally.sent,
        "done": len(done),
        "cancelled": tally.cancelled,
        "unfinished": tally.unfinished,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "rps": len(done) / elapsed,
        "p50": pct(done, 0.5),
        "p95": pct(done, 0.95),
        "p50_single": pct(single, 0.5),
        "p95_single": pct(single, 0.95),
        "per_step": total / count if count else 0.0,
        "step_p50": 1e3 * server.metric('diffill_step_seconds_recent{quantile="0.5"}', text),
    }


def load(model: Path, args: argparse.Namespace, texts: list[str]) -> list[dict[str, Any]]:
    modes = [("batching on", [])] + ([("batching off", ["--no-batching"])] if args.compare else [])
    rows = []
    for label, flags in modes:
        server = start_server(model, [*flags, *args.server_arg], args.editors)
        try:
            run_editors(server, args, texts, 2.0)  # warm-up: first-request costs stay out of the numbers
            t0 = time.monotonic()
            tally = run_editors(server, args, texts, args.seconds)
            rows.append(load_row(label, server, tally, time.monotonic() - t0))
        finally:
            server.stop()
    return rows


def soak(model: Path, args: argparse.Namespace, texts: list[str]) -> list[dict[str, Any]]:
    server = start_server(model, args.server_arg, args.editors)
    rows = []
    try:
        for minute in range(1, int(args.soak_minutes) + 1):
            t0 = time.monotonic()
            tally = run_editors(server, args, texts, 60.0)
            row = load_row(f"minute {minute}", server, tally, time.monotonic() - t0)
            rss, fds = server.process_stats()
            row |= {
                "rss_mb": rss,
                "fds": fds,
                "connections": server.metric("diffill_open_connections"),
                "cache_mb": server.metric("diffill_cache_bytes") / 2**20,
            }
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    finally:
        server.stop()
    return rows


@dataclass
class Timed:
    """One request that commits one token per step (threshold 1, a fixed amount of work): its wall time, the part
    of it spent waiting to be admitted (for the part or commit in progress when it arrived), and when it ended."""

    ms: float
    queue_ms: float
    end: float

    @property
    def batch_ms(self) -> float:  # prefill and steps: what fair rounds bound
        return self.ms - self.queue_ms


def timed_fim(url: str, prefix: str, suffix: str, candidates: int, canvas: int, tag: str) -> Timed:
    t0 = time.perf_counter()
    status, body = fim(url, prefix, suffix, candidates, canvas, tag, tag, steps=canvas, threshold=1.0)
    end = time.perf_counter()
    if status != 200:
        raise RuntimeError(f"request {tag} failed with {status}")
    return Timed((end - t0) * 1e3, float(msgpack.unpackb(body, raw=False)["stats"]["queue_ms"]), end)


def head_of_line(model: Path, args: argparse.Namespace, text: str) -> list[dict[str, Any]]:
    """Small requests one after another (as an editor sends them) beside a big one; each one that ran entirely
    while the big one did is reported, and the worst is the figure (per request, not on average)."""
    prefix, suffix = text[:2000], text[2200:3000]
    rows = []
    for label, flags in (("fair rounds (default)", []), ("fair rounds off", ["--bulk-tokens", "1000000"])):
        server = start_server(model, [*flags, *args.server_arg], 2)
        try:
            for i in range(2):
                timed_fim(server.url, prefix, suffix, 2, 16, f"warm{i}")
            alone = sorted((timed_fim(server.url, prefix, suffix, 2, 16, f"a{i}") for i in range(5)), key=_ms)[2]
            big: list[Timed] = []
            thread = threading.Thread(
                target=lambda url=server.url, out=big: out.append(timed_fim(url, prefix, suffix, 16, 64, "big"))
            )
            thread.start()
            time.sleep(0.5)  # the big request is running
            beside: list[Timed] = []
            while thread.is_alive() and len(beside) < args.hol_requests:
                beside.append(timed_fim(server.url, prefix, suffix, 2, 16, f"b{len(beside)}"))
            thread.join(timeout=600)
            beside = [t for t in beside if big and t.end <= big[0].end]
            if not big or not beside:
                raise RuntimeError("the big request failed, or no small request ran entirely beside it")
            rows.append({"mode": label, "alone": alone, "beside": beside, "big": big[0].ms})
        finally:
            server.stop()
    return rows


def _ms(t: Timed) -> float:
    return t.ms


# ---------------------------------------------------------------- report


def print_load(rows: list[dict[str, Any]], extra: bool = False) -> None:
    head = "| mode | sent | completed | cancelled (stale) | open at the end | errors | completed/s | p50 ms | p95 ms "
    head += "| single-line p50 ms | single-line p95 ms | requests per step | step p50 ms |"
    if extra:
        head += " connections | RSS MB | open files | cache MB |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = (
            f"| {r['mode']} | {r['sent']} | {r['done']} | {r['cancelled']} | {r['unfinished']} | {r['errors']} "
            f"| {r['rps']:.2f} "
            f"| {r['p50']:.0f} | {r['p95']:.0f} | {r['p50_single']:.0f} | {r['p95_single']:.0f} "
            f"| {r['per_step']:.2f} | {r['step_p50']:.1f} |"
        )
        if extra:
            line += f" {r['connections']:.0f} | {r['rss_mb']:.0f} | {r['fds']} | {r['cache_mb']:.1f} |"
        print(line)
    for r in rows:
        if r["errors"]:
            print(f"\n{r['mode']} errors by status: {json.dumps(r['error_kinds'])}")


def print_hol(rows: list[dict[str, Any]]) -> None:
    head = "| server | small 2x16 alone ms | beside a 16x64: n | worst ms | worst ratio | worst ratio, once admitted "
    head += "| worst wait to be admitted ms | big 16x64 ms |"
    print(head)
    print("|---|" + "---:|" * (head.count("|") - 2))
    for r in rows:
        alone, beside = r["alone"], r["beside"]
        worst = max(beside, key=_ms)
        admitted = max(t.batch_ms for t in beside) / alone.batch_ms
        print(
            f"| {r['mode']} | {alone.ms:.0f} | {len(beside)} | {worst.ms:.0f} | {worst.ms / alone.ms:.2f} "
            f"| {admitted:.2f} | {max(t.queue_ms for t in beside):.0f} | {r['big']:.0f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory (default: a random --preset model under /tmp)")
    parser.add_argument("--preset", default="small-20m")
    parser.add_argument("--editors", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think-ms", type=float, default=1000.0, help="mean pause between bursts of typing")
    parser.add_argument("--compare", action="store_true", help="also run with --no-batching")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help=f"soak for this long (<= {MAX_SOAK_MINUTES})")
    parser.add_argument("--hol", action="store_true", help="head-of-line: small requests beside a big one")
    parser.add_argument("--hol-requests", type=int, default=5, help="small requests sent beside the big one")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `diffill serve` flag (repeatable)")
    args = parser.parse_args(argv)
    if not 1 <= args.editors <= MAX_EDITORS or not 0 <= args.soak_minutes <= MAX_SOAK_MINUTES:
        parser.error(f"--editors must be in [1, {MAX_EDITORS}], --soak-minutes in [0, {MAX_SOAK_MINUTES}]")

    model = Path(args.model) if args.model else random_checkpoint(args.preset)
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in SOURCES]
    serve_args = " ".join(args.server_arg) or "defaults"
    setting = (
        f"# diffill serve: {model} ({serve_args}), {args.editors} editors, think {args.think_ms:g} ms, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"
    )
    if args.hol:
        print(f"{setting}\n")
        print_hol(head_of_line(model, args, texts[0]))
    elif args.soak_minutes:
        rows = soak(model, args, texts)
        print(f"{setting}, soak {args.soak_minutes:g} min\n")
        print_load(rows, extra=True)
    else:
        rows = load(model, args, texts)
        print(f"{setting}, {args.seconds:g} s, load average {os.getloadavg()[0]:.1f} at the end\n")
        print_load(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
