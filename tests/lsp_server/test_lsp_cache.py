"""The typed-prefix cache: typing the start of a shown completion returns its remainder, anything else misses."""

from __future__ import annotations

from lsp_server.cache import CompletionCache

DOC = "def f(x):\n    return \n\nprint(f(1))\n"
CURSOR = DOC.index("return ") + len("return ")


def typed(text: str) -> tuple[str, int]:
    return DOC[:CURSOR] + text + DOC[CURSOR:], CURSOR + len(text)


def test_the_same_position_returns_the_stored_candidates():
    cache = CompletionCache()
    cache.put("python", DOC, CURSOR, ["x + 1", "x * 2"])
    assert cache.get("python", DOC, CURSOR) == ["x + 1", "x * 2"]


def test_typing_a_prefix_returns_the_remainders_of_matching_candidates():
    cache = CompletionCache()
    cache.put("python", DOC, CURSOR, ["x + 1", "x * 2", "y"])
    assert cache.get("python", *typed("x ")) == ["+ 1", "* 2"]
    assert cache.get("python", *typed("x +")) == [" 1"]


def test_typing_something_else_or_all_of_it_misses():
    cache = CompletionCache()
    cache.put("python", DOC, CURSOR, ["x + 1"])
    assert cache.get("python", *typed("z")) is None
    assert cache.get("python", *typed("x + 1")) is None  # nothing left to suggest: ask the model
    assert cache.get("javascript", DOC, CURSOR) is None


def test_a_change_after_the_cursor_misses():
    cache = CompletionCache()
    cache.put("python", DOC, CURSOR, ["x + 1"])
    changed = DOC.replace("print(f(1))", "print(f(2))")
    assert cache.get("python", changed, CURSOR) is None


def test_the_least_recently_used_entry_is_evicted():
    cache = CompletionCache(capacity=2)
    for index in range(3):
        text = f"v{index} = \n"
        cache.put("python", text, len(text) - 1, [str(index)])
    assert len(cache) == 2
    assert cache.get("python", "v0 = \n", 5) is None
    assert cache.get("python", "v2 = \n", 5) == ["2"]


def test_empty_candidates_are_not_stored():
    cache = CompletionCache()
    cache.put("python", DOC, CURSOR, ["", ""])
    assert len(cache) == 0
