"""Counters and histograms for ``GET /metrics``, rendered in the Prometheus text exposition format (0.0.4).

Written from two threads (the event loop counts requests, the model worker counts steps), so every update takes
one lock; updates are a few integer additions, far below a denoising step's cost. Gauges that belong to other
objects (queue depth, active requests, cache bytes) are read at render time and passed in.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, deque
from dataclasses import dataclass, field

# Seconds: a tiny-model step on CPU is ~1 ms, a 20M-model step with a full batch tens of ms, a request 10 ms to 2 s
# when the box keeps up -- and up to a minute when it does not (a saturated CPU box), which must not all land in +Inf.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
RECENT = 1024  # steps kept for the p50/p95 summary


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)  # last = +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, help_text: str, labels: str = "") -> list[str]:
        lines = _header(name, help_text, "histogram")
        running = 0
        sep = "," if labels else ""
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]
        return lines


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.steps_total = 0
        self.prefill_tokens_total = 0
        self.cancelled_total = 0
        self.superseded_total = 0
        self.connections_evicted_total = 0
        self.connections_refused_total = 0
        self.step_seconds = Histogram(STEP_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.step_tokens = Histogram(TOKEN_BUCKETS)
        self.request_seconds = Histogram(REQUEST_BUCKETS)
        self._recent_steps: deque[float] = deque(maxlen=RECENT)

    def observe_step(self, seconds: float, batch: int, tokens: int = 0) -> None:
        with self._lock:
            self.steps_total += 1
            self.step_seconds.observe(seconds)
            self.batch_size.observe(batch)
            self.step_tokens.observe(tokens)
            self._recent_steps.append(seconds)

    def observe_prefill(self, tokens: int) -> None:
        with self._lock:
            self.prefill_tokens_total += tokens

    def observe_cancel(self, superseded: bool = False) -> None:
        with self._lock:
            self.cancelled_total += 1
            self.superseded_total += superseded

    def observe_connection(self, evicted: int = 0, refused: int = 0) -> None:
        with self._lock:
            self.connections_evicted_total += evicted
            self.connections_refused_total += refused

    def observe_request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            if seconds is not None and status == 200:
                self.request_seconds.observe(seconds)

    def step_quantiles(self) -> tuple[float, float]:
        with self._lock:
            recent = sorted(self._recent_steps)
        return quantile(recent, 0.5), quantile(recent, 0.95)

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """Prometheus text: the given gauges (name -> (help, value)) then counters and histograms."""
        p50, p95 = self.step_quantiles()
        lines: list[str] = []
        for name, (help_text, value) in gauges.items():
            lines += _header(name, help_text, "gauge") + [f"{name} {value:g}"]
        with self._lock:
            lines += _counter("diffill_steps_total", "Packed forwards run (one a round).", self.steps_total)
            lines += _counter("diffill_prefill_tokens_total", "Context tokens prefilled.", self.prefill_tokens_total)
            lines += _counter("diffill_cancelled_total", "Requests cancelled before finishing.", self.cancelled_total)
            lines += _counter(
                "diffill_superseded_total",
                "Queued requests replaced by a newer one of their session.",
                self.superseded_total,
            )
            lines += _counter(
                "diffill_connections_evicted_total",
                "Connections waiting for a request that were closed to make room for new ones.",
                self.connections_evicted_total,
            )
            lines += _counter(
                "diffill_connections_refused_total",
                "Connections refused (503) because every slot was busy with a request.",
                self.connections_refused_total,
            )
            lines += _header("diffill_requests_total", "HTTP requests by endpoint and status.", "counter")
            for (endpoint, code), n in sorted(self.requests.items()):
                lines.append(f'diffill_requests_total{{endpoint="{endpoint}",code="{code}"}} {n}')
            errors: Counter[int] = Counter()
            for (_, code), n in self.requests.items():
                if code >= 400:
                    errors[code] += n
            lines += _header("diffill_request_errors_total", "Error replies by status.", "counter")
            lines += [f'diffill_request_errors_total{{code="{code}"}} {n}' for code, n in sorted(errors.items())]
            lines += self.step_seconds.render("diffill_step_seconds", "Time of one round with a forward.")
            lines += self.batch_size.render("diffill_step_batch_requests", "Requests sharing one forward.")
            lines += self.step_tokens.render("diffill_step_tokens", "Canvas tokens in one forward.")
            lines += self.request_seconds.render("diffill_request_seconds", "Latency of successful requests.")
        lines += _header("diffill_step_seconds_recent", "p50/p95 of the last 1024 denoising steps.", "gauge")
        lines += [
            f'diffill_step_seconds_recent{{quantile="0.5"}} {p50:.6f}',
            f'diffill_step_seconds_recent{{quantile="0.95"}} {p95:.6f}',
        ]
        return "\n".join(lines) + "\n"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _counter(name: str, help_text: str, value: int) -> list[str]:
    return [*_header(name, help_text, "counter"), f"{name} {value}"]
