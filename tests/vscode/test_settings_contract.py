"""The extension's settings (vscode-extension/package.json) match what the server parses (lsp_server.settings).

VS Code sends every contributed setting with its default, so a default or range that drifted from the server's
would silently override the server's choice or offer values the server rejects. These checks read both sides.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lsp_server.settings import Settings

MANIFEST = Path(__file__).resolve().parents[2] / "vscode-extension" / "package.json"
# Read by the extension itself, never sent to the server as settings it parses.
CLIENT_ONLY = {
    "diffill.enable",
    "diffill.server.command",
    "diffill.server.pythonPath",
    "diffill.server.env",
    "diffill.trace.server",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _default(item: dataclasses.Field[Any]) -> Any:
    value = item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[misc]
    return dict(value) if isinstance(value, Mapping) else value


def server_settings() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    for section in dataclasses.fields(Settings):
        for item in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            key = item.metadata.get("key") or _camel(item.name)
            yield f"diffill.{_camel(section.name)}.{key}", item


@pytest.fixture(scope="module")
def contributed() -> dict[str, dict[str, Any]]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["contributes"]["configuration"]["properties"]


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def test_every_server_setting_is_contributed_with_the_servers_default(contributed):
    # Compared after the server's own parsing: "" in a VS Code text box is the server's None ("unset").
    for key, item in server_settings():
        assert key in contributed, f"{key} is parsed by the server but missing from package.json"
        assert _plain(item.metadata["parse"](contributed[key]["default"])) == _default(item), key


def test_every_contributed_setting_is_read_by_the_server_or_the_client(contributed):
    assert set(contributed) - CLIENT_ONLY == {key for key, _ in server_settings()}


def test_contributed_ranges_are_the_servers(contributed):
    for key, item in server_settings():
        schema, parse = contributed[key], item.metadata["parse"]
        for bound, step in (("minimum", -1), ("maximum", 1)):
            if bound in schema:
                parse(schema[bound])  # accepted at the edge
                with pytest.raises(ValueError):
                    parse(schema[bound] + step)  # rejected past it


def _json_type(value: Any) -> str:
    types = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", dict: "object"}
    return types[type(value)]


def test_every_contributed_type_is_one_the_server_accepts(contributed):
    # The default stands for its own type; a union's other types get a small valid sample.
    samples = {"integer": 1, "number": 0.5, "string": "", "null": None, "object": {}}
    for key, item in server_settings():
        schema = contributed[key]
        declared = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for json_type in declared:
            value = schema["default"] if json_type == _json_type(schema["default"]) else samples[json_type]
            item.metadata["parse"](value)
