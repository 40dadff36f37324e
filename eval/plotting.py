"""matplotlib for the benchmark plots, or a clear note when it is not installed (the optional `eval` extra)."""

from __future__ import annotations

import sys
from types import ModuleType


def pyplot(what: str) -> ModuleType | None:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display); None, with a note on stderr naming
    `what` would have been drawn, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no {what} (pip install -e .[eval])", file=sys.stderr)
        return None
    return plt


def minor_label(value: float, _: int) -> str:
    """Label 2x and 5x minor ticks of a log axis, so a range within one decade still reads."""
    return f"{value:g}" if f"{value:e}"[0] in "25" else ""


def log_latency_axis(ax, values: list[float]) -> None:
    """A log-scale x axis of latencies with plain numbers: every minor tick labelled when the values span less than
    a decade (else its 2x and 5x ticks), so a narrow range does not show a single "100"."""
    import matplotlib.ticker

    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    positive = [v for v in values if v > 0]
    narrow = bool(positive) and max(positive) < 10 * min(positive)
    ax.xaxis.set_minor_formatter(plain if narrow else matplotlib.ticker.FuncFormatter(minor_label))
