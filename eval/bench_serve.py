"""Load benchmark of ``diffill serve``: N simulated editors against one server, continuous batching on vs off.

    python -m eval.bench_serve [--model DIR | --preset small-20m] [--editors 8] [--seconds 60] [--think-ms 50]

Each mode starts its own server as a subprocess on 127.0.0.1 (an ephemeral port; loopback only), so the clients'
Python threads never compete with the server for the GIL. Every editor is a thread with its own ``RemoteEngine``
and session: it opens a stdlib source file at a random spot with the next 200 characters missing and "types" them
-- each request adds a few characters to the prefix and keeps the suffix, so the session's context cache is
extended as in real use -- with a random pause of up to 2 x --think-ms between requests (a debounced editor).
Requests are single-line completions (canvas 32, 4 candidates: the language server's defaults). After --seconds
of load the server is stopped; the run is bounded by --seconds plus start-up per mode and ends by itself.

Without --model, a random-weight model of --preset is saved once under /tmp (speed does not depend on the
weights) with a tokenizer trained on a few stdlib files. Prints a Markdown table: requests/s, p50/p95 latency,
errors, and the mean number of requests per denoising step (from the server's /metrics).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract import SampleOptions
from engine.remote import RemoteEngine, RemoteError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["textwrap.py", "bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "glob.py", "shlex.py", "string.py"]


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, ms: float) -> None:
        with self.lock:
            self.latencies_ms.append(ms)

    def fail(self, error: RemoteError) -> None:
        with self.lock:
            key = str(error.status or "transport")
            self.errors[key] = self.errors.get(key, 0) + 1


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


def start_server(model: Path, batching: bool, editors: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--max-concurrent-per-token", str(2 * editors), "--device", "cpu", "--log-level", "WARNING"]
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        if match := re.search(r"listening on (\S+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError(f"the server did not start: {' '.join(cmd)}")


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def typing_session(text: str, rng: random.Random) -> tuple[str, str, int, int]:
    """A cursor in `text` with the next ~200 characters removed: the user is about to (re)type them.

    Returns (prefix start, suffix, cursor, end of the hole): requests send ``text[start:cursor]`` and the fixed
    suffix, so consecutive requests share everything but the last typed characters (a warm session cache).
    """
    cursor = rng.randrange(len(text) // 4, len(text) // 2)
    hole_end = min(cursor + 200, len(text) - 1)
    return text[max(0, cursor - 3000) : cursor], text[hole_end : hole_end + 1000], cursor, hole_end


def editor(url: str, index: int, deadline: float, think_ms: float, tally: Tally, texts: list[str]) -> None:
    rng = random.Random(index)
    remote = RemoteEngine(url, timeout=120)
    options = SampleOptions(steps=8, threshold=0.9, temperature=0.8, seed=index)
    text = texts[index % len(texts)]
    head, suffix, cursor, hole_end = typing_session(text, rng)
    typed = ""
    while time.monotonic() < deadline:
        step = rng.randint(1, 6)  # the user typed a few characters
        if cursor + len(typed) + step >= hole_end:  # done with this spot: jump elsewhere (a cold cache)
            head, suffix, cursor, hole_end = typing_session(text, rng)
            typed = ""
        typed = text[cursor : cursor + len(typed) + step]
        t0 = time.perf_counter()
        try:
            remote.complete(
                head + typed,
                suffix,
                language="python",
                canvas_length=32,
                num_candidates=4,
                options=options,
                session_id=f"editor-{index}",
            )
            tally.ok((time.perf_counter() - t0) * 1e3)
        except RemoteError as e:
            tally.fail(e)
        time.sleep(rng.uniform(0, 2 * think_ms) / 1e3)
    remote.close()


def mean_batch(url: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    total = float(re.search(r"^diffill_step_batch_requests_sum (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"^diffill_step_batch_requests_count (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    return total / count if count else 0.0


def run_mode(model: Path, batching: bool, args: argparse.Namespace, texts: list[str]) -> dict[str, object]:
    proc, url = start_server(model, batching, args.editors)
    try:
        warm = Tally()
        editor(url, 999, time.monotonic() + 1.0, 0, warm, texts)  # first-request costs stay out of the numbers
        tally = Tally()
        deadline = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=editor, args=(url, i, deadline, args.think_ms, tally, texts), daemon=True)
            for i in range(args.editors)
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + 120)
        elapsed = time.monotonic() - t0
        batch = mean_batch(url)
    finally:
        stop_server(proc)
    lat = sorted(tally.latencies_ms)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    return {
        "mode": "batching on" if batching else "batching off",
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50": pct(0.5),
        "p95": pct(0.95),
        "mean": statistics.fmean(lat) if lat else float("nan"),
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory (default: a random --preset model under /tmp)")
    parser.add_argument("--preset", default="small-20m")
    parser.add_argument("--editors", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think-ms", type=float, default=50.0, help="mean pause between an editor's requests")
    args = parser.parse_args(argv)

    model = Path(args.model) if args.model else random_checkpoint(args.preset)
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in SOURCES]
    rows = [run_mode(model, batching, args, texts) for batching in (True, False)]
    import torch

    print(
        f"# diffill serve: {model}, {args.editors} editors x {args.seconds:g} s, think {args.think_ms:g} ms, "
        f"canvas 32 x 4 candidates, CPU with {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| mode | requests | requests/s | p50 ms | p95 ms | mean ms | errors | requests per step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['requests']} | {r['rps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['mean']:.0f} "
            f"| {r['errors']} | {r['batch']:.2f} |"
        )
    for r in rows:
        if r["errors"]:
            print(f"\n{r['mode']} errors by status: {r['error_kinds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
