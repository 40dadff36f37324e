"""Language names, file extensions and cached tree-sitter parsers.

Editors speak LSP language ids ("typescriptreact", "cpp", "golang" from some clients); the rest of `fim`
speaks one canonical name per grammar. Grammars come from the PyPI wheels (`tree-sitter-python` & co.), so
nothing is compiled at run time. `tree_sitter.Parser` objects are stateful and not safe to share between
threads, while the language server validates candidates off the event loop, so parsers are cached per thread;
`Language` objects are immutable and shared.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from pathlib import PurePath

import tree_sitter

__all__ = ["SUPPORTED_LANGUAGES", "get_language", "get_parser", "language_from_path", "normalize_language"]

# Canonical name -> (wheel module, function returning the grammar's language pointer).
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(_GRAMMARS)

# LSP language ids (LSP 3.17 specification, TextDocumentItem) and common aliases.
# JSX goes through the JavaScript grammar, which parses it.
_ALIASES: dict[str, str] = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "jsx": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "javascriptreact": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "mts": "typescript",
    "cts": "typescript",
    "typescriptreact": "tsx",
    "golang": "go",
    "rs": "rust",
    "c++": "cpp",
    "cxx": "cpp",
    "cc": "cpp",
    "hpp": "cpp",
    "cuda-cpp": "cpp",
    "objective-cpp": "cpp",
    "h": "c",
    "objective-c": "c",
}

_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".h++": "cpp",
    ".ipp": "cpp",
    ".cu": "cpp",
}


def normalize_language(language_id: str) -> str:
    """LSP language id or alias -> canonical name; anything unknown comes back stripped and lower-cased."""
    key = language_id.strip().lower()
    return _ALIASES.get(key, key)


def language_from_path(path: str | PurePath) -> str | None:
    """Canonical language of a file from its extension, or None when no grammar handles it."""
    return _EXTENSIONS.get(PurePath(path).suffix.lower())


@functools.cache
def get_language(language: str) -> tree_sitter.Language | None:
    """The grammar for a language name or alias, or None when unknown or its wheel is not installed."""
    entry = _GRAMMARS.get(normalize_language(language))
    if entry is None:
        return None
    module_name, attribute = entry
    try:
        factory: Callable[[], object] = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None
    return tree_sitter.Language(factory())


_local = threading.local()


def get_parser(language: str) -> tree_sitter.Parser | None:
    """A parser for the language, cached per thread (parsers hold parse state); None for unknown languages."""
    grammar = get_language(language)
    if grammar is None:
        return None
    cache: dict[str, tree_sitter.Parser] = _local.__dict__.setdefault("parsers", {})
    name = normalize_language(language)
    parser = cache.get(name)
    if parser is None:
        parser = cache[name] = tree_sitter.Parser(grammar)
    return parser
