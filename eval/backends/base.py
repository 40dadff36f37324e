"""What a completion backend that is not a Diffill engine (an HTTP server, a reference row) answers for the parts of
the ``CompletionEngine`` protocol it has no use for: no session caches, no stats, no tokenizer here."""

from __future__ import annotations

from engine.contract import CompletionStats
from fim.request import approx_tokens


class StatelessBackend:
    """Mixin: ``ready``, ``last_stats``, ``count_tokens``, ``forget`` and ``close`` of a backend that keeps nothing."""

    @property
    def ready(self) -> bool:
        return True

    @property
    def last_stats(self) -> CompletionStats | None:
        return None

    def count_tokens(self, text: str) -> int:
        """fim's estimate: the backend's tokenizer is not here."""
        return approx_tokens(text)

    def forget(self, session_id: str) -> None:
        """Nothing is kept per session."""

    def close(self) -> None:
        """Nothing is held."""
