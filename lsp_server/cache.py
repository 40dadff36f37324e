"""A small LRU of shown completions, keyed by the text around the cursor, that follows the user's typing.

When a suggestion is on screen the user often types its first characters instead of accepting it. Each
keystroke asks again; the model would be asked for what it already said. An entry remembers the text just
before the cursor (`tail`, up to `window` characters), the text just after it (`head`) and the candidates.
A later request matches when its text after the cursor equals `head` and, for some `typed`, its text before the
cursor ends with `tail + typed` where `typed` is a proper prefix of a candidate: the answer is the candidates'
remainders, with no model call. `typed` is found with one `str.rfind` per entry, so a lookup costs
O(entries * window) in C, well under a millisecond.

Thread-safe: the model worker stores results (even for requests cancelled meanwhile, whose answers the next
keystroke may still use) while the event loop looks up.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CompletionCache"]


@dataclass(frozen=True)
class _Key:
    language: str
    tail: str  # up to `window` characters before the cursor
    anchored: bool  # the tail reaches the start of the document
    head: str  # up to `window` characters after the cursor


class CompletionCache:
    def __init__(self, capacity: int = 64, window: int = 256, max_typed: int = 2048) -> None:
        self.capacity = capacity
        self.window = window
        self.max_typed = max_typed  # typed text followed at most; longer candidates are rare
        self._entries: OrderedDict[_Key, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _key(self, language: str, text: str, offset: int) -> _Key:
        start = max(0, offset - self.window)
        return _Key(language, text[start:offset], start == 0, text[offset : offset + self.window])

    def put(self, language: str, text: str, offset: int, candidates: list[str]) -> None:
        kept = tuple(c for c in candidates if c)
        if not kept:
            return
        key = self._key(language, text, offset)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = kept
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, language: str, text: str, offset: int) -> list[str] | None:
        """Remainders of cached candidates the user has been typing at `offset` (or exactly stands at), else None."""
        head = text[offset : offset + self.window]
        with self._lock:
            entries = [(key, value) for key, value in reversed(self._entries.items()) if key.head == head]
        for key, candidates in entries:
            if key.language != language:
                continue
            remainders = self._follow(key, candidates, text, offset)
            if remainders:
                with self._lock:
                    if key in self._entries:
                        self._entries.move_to_end(key)
                return remainders
        return None

    def _follow(self, key: _Key, candidates: tuple[str, ...], text: str, offset: int) -> list[str]:
        anchor = self._anchor(key, text, offset)
        if anchor is None:
            return []
        typed = text[anchor:offset]
        return [c[len(typed) :] for c in candidates if len(c) > len(typed) and c.startswith(typed)]

    def _anchor(self, key: _Key, text: str, offset: int) -> int | None:
        """Where the cached cursor was: the end of the last `tail` occurrence within `max_typed` of `offset`."""
        if key.anchored:
            anchor = len(key.tail)
            return anchor if anchor <= offset and text.startswith(key.tail) else None
        low = max(0, offset - self.max_typed - len(key.tail))
        found = text.rfind(key.tail, low, offset)
        return None if found < 0 else found + len(key.tail)
