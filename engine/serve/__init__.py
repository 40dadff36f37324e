"""``diffill serve``: the engine behind a network endpoint, for a shared GPU box (see docs/serving.md).

* ``protocol`` / ``compat``: wire formats (native msgpack; OpenAI completions and llama.cpp infill JSON);
* ``scheduler``: continuous batching on one model thread (requests join and leave between denoising steps);
* ``sessions``: per-document context caches under a memory budget;
* ``http`` / ``app`` / ``server``: a small HTTP/1.1 server on asyncio, routes, auth and limits;
* ``cli``: ``main(argv)``, what ``diffill serve`` runs.

``engine.remote.RemoteEngine`` is the client side.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``diffill serve`` (imported lazily: ``engine.remote`` uses the protocol without the server)."""
    from engine.serve.cli import main as serve_main

    return serve_main(argv)
