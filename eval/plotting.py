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
