"""Server settings: one nested frozen dataclass with defaults, parsed leniently from editor configuration.

Editors send settings as JSON, from `initializationOptions` and from `workspace/configuration` (section
"diffill"), with camelCase keys (`completion.debounceMs`), the shape VS Code's `contributes.configuration` and
Neovim's `settings` table produce. Neovim encodes an empty Lua table (`model = {}`, or `{ path = nil }`) as the
JSON array `[]`, so an empty array is read as an empty object wherever an object is expected (`as_object`).
A wrong value must never stop completions: `parse_settings` keeps the default for every field it cannot accept
and returns a readable problem for each one, which the server shows with `window/showMessage`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.contract import DEFAULT_PRESET, DTYPES, PRESETS
from fim.request import FimSettings

__all__ = [
    "CompletionSettings",
    "CrossFileSettings",
    "LanguageSettings",
    "LimitSettings",
    "ModelSettings",
    "RemoteSettings",
    "Settings",
    "as_object",
    "merge",
    "parse_settings",
    "section_of",
]

SECTION = "diffill"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

Parser = Callable[[Any], Any]


def _number(value: Any, kind: type) -> float:
    # bool is an int subclass, but `true` for a step count is a mistake worth reporting.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ValueError(f"expected a whole number, got {value!r}")
    return kind(value)


def _int_in(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        number = int(_number(value, int))
        if not low <= number <= high:
            raise ValueError(f"expected {low}..{high}, got {value!r}")
        return number

    return parse


def _float_in(low: float, high: float) -> Parser:
    def parse(value: Any) -> float:
        number = _number(value, float)
        if not low <= number <= high:
            raise ValueError(f"expected {low}..{high}, got {value!r}")
        return number

    return parse


def _optional(parse: Parser) -> Parser:
    return lambda value: None if value is None else parse(value)


def _text(value: Any) -> str | None:
    """A string setting; "" means unset, as an empty VS Code text box does."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip() or None


def _device(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise ValueError(f"expected auto, cpu, mps, cuda or cuda:N, got {value!r}")
    return value


def as_object(value: Any) -> Mapping[str, Any] | None:
    """`value` as a JSON object: itself when it is one, {} for an empty array (Neovim's empty table), else None."""
    if isinstance(value, Mapping):
        return value
    return {} if isinstance(value, list | tuple) and not value else None


def _choice(*allowed: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def _flags(value: Any) -> Mapping[str, bool]:
    flags = as_object(value)
    if flags is None or not all(isinstance(v, bool) for v in flags.values()):
        raise ValueError(f"expected an object of true/false values, got {value!r}")
    return MappingProxyType({str(key).lower(): flag for key, flag in flags.items()})


def _setting(default: Any, parse: Parser, *, key: str | None = None, secret: bool = False) -> Any:
    """A field with its JSON key (camelCase of the name unless given) and the parser that validates it."""
    metadata = {"parse": parse, "key": key}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: MappingProxyType(dict(default)), metadata=metadata)
    return field(default=default, metadata=metadata, repr=not secret)  # secrets stay out of logs


@dataclass(frozen=True)
class ModelSettings:
    # None: the server's --model flag, else the embedded default model (engine.api.load_engine(None)).
    path: str | None = _setting(None, _optional(_text))
    device: str = _setting("auto", _device)
    # torch CPU threads; None: half the cores, 1..4 (engine.api.editor_threads), leaving room for the editor.
    threads: int | None = _setting(None, _optional(_int_in(1, 256)))
    # A released coder's sampling (engine.adapters.presets): "fast" runs the completion.* knobs, "reference" what
    # its authors evaluated with (e.g. one token per step: slow, for comparing). Diffill's own model ignores it.
    preset: str = _setting(DEFAULT_PRESET, _choice(*PRESETS))
    # What the local model runs in ("auto": engine.checkpoint.default_dtype; bf16 halves a completion's CPU time on
    # CPUs with AMX / AVX512-BF16, docs/speed.md).
    dtype: str = _setting("auto", _choice(*DTYPES))


@dataclass(frozen=True)
class RemoteSettings:
    # A `diffill serve` endpoint; when set it replaces the local model.
    url: str | None = _setting(None, _optional(_text))
    token: str | None = _setting(None, _optional(_text), secret=True)


@dataclass(frozen=True)
class CompletionSettings:
    # Sampler knobs, passed to engine.sample.SampleOptions (same ranges).
    steps: int = _setting(8, _int_in(1, 256))
    threshold: float = _setting(0.9, _float_in(0.0, 1.0))
    # None: the model's own (its checkpoint's `temperature`, tuned per model; engine.contract.with_temperature).
    temperature: float | None = _setting(None, _optional(_float_in(0.0, 10.0)))
    # None: fim's per-mode defaults (more for short single-line canvases, fewer for multi-line ones).
    candidates: int | None = _setting(None, _optional(_int_in(1, 16)))
    max_lines: int = _setting(12, _int_in(1, 200))
    # Follow-up requests when no single-line candidate parses, continuing from the part before the first syntax
    # error (fim.ask; at the quick first ask's steps, then at `steps` if the request is asked again); 0: none.
    repairs: int = _setting(FimSettings.repairs, _int_in(0, 4))
    # Steps of a single-line request's quick first ask and its repairs, asked again at `steps` when it still has
    # nothing to show (no candidate parses, or all that do are degenerate; fim.ask; diffusion models only); 0: one
    # ask at `steps`.
    first_steps: int = _setting(FimSettings.first_steps, _int_in(0, 256))
    # Typing bursts arrive ~50-150 ms apart; waiting 75 ms skips most keystrokes the user has already passed.
    debounce_ms: int = _setting(75, _int_in(0, 5000))
    # Show a suggestion only when its calibrated probability of being right reaches this (fim.confidence). None:
    # the model's own default, chosen on FIM tasks it never trained on (its confidence.json; docs/eval.md).
    # 0 shows everything that is not degenerate.
    min_confidence: float | None = _setting(None, _optional(_float_in(0.0, 1.0)))


@dataclass(frozen=True)
class CrossFileSettings:
    # Tokens of context from other files -- definitions the file imports from the workspace, regions of other
    # open documents recently edited -- placed before the file (docs/context.md). They are reserved from the
    # model's context (at most half of it), so the window around the cursor shrinks by as much; 0 turns it off.
    max_tokens: int = _setting(512, _int_in(0, 65536))
    # Regions of other documents the ring buffer keeps (the oldest go first), and their length in lines.
    ring_chunks: int = _setting(16, _int_in(0, 256))
    chunk_lines: int = _setting(16, _int_in(4, 1024))


@dataclass(frozen=True)
class LanguageSettings:
    # LSP language id -> enabled; "*" is the default for ids not listed (absent: enabled).
    enabled: Mapping[str, bool] = _setting({}, _flags)

    def allows(self, language_id: str) -> bool:
        key = language_id.lower()
        return self.enabled.get(key, self.enabled.get("*", True))


@dataclass(frozen=True)
class LimitSettings:
    # Past this a file is generated, minified or data; tokenizing it per keystroke costs more than it gives.
    max_file_bytes: int = _setting(2_000_000, _int_in(1, 1 << 30))


@dataclass(frozen=True)
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    cross_file: CrossFileSettings = field(default_factory=CrossFileSettings)
    languages: LanguageSettings = field(default_factory=LanguageSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)

    def engine_key(self) -> tuple[Any, ...]:
        """What selects the engine: a change here means loading another one."""
        model = self.model
        return (model.path, model.device, model.threads, model.preset, model.dtype, self.remote.url, self.remote.token)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _parse_section(cls: type, raw: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        key = item.metadata.get("key") or _camel(item.name)
        if key not in raw:
            continue
        value, where = raw[key], f"{path}.{key}"
        if dataclasses.is_dataclass(item.default_factory):  # a nested section
            if (section := as_object(value)) is not None:
                values[item.name] = _parse_section(item.default_factory, section, where, problems)
            else:
                problems.append(f"{where}: expected an object, got {value!r}; using defaults")
            continue
        try:
            values[item.name] = item.metadata["parse"](value)
        except (TypeError, ValueError) as exc:
            problems.append(f"{where}: {exc}; using the default")
    return cls(**values)


def section_of(raw: Any) -> Any:
    """The "diffill" section of an object that holds it (`{"diffill": {...}}`), else the object itself."""
    if isinstance(raw, Mapping) and (section := as_object(raw.get(SECTION))) is not None:
        return section
    return raw


def parse_settings(raw: Any) -> tuple[Settings, list[str]]:
    """Settings from a JSON object (the "diffill" section or an object holding it), and the problems found."""
    raw = section_of(raw)
    if raw is None:
        return Settings(), []
    if (section := as_object(raw)) is None:
        return Settings(), [f"{SECTION}: expected an object, got {raw!r}; using defaults"]
    problems: list[str] = []
    return _parse_section(Settings, section, SECTION, problems), problems


def merge(base: Any, override: Any) -> Any:
    """Deep merge of two JSON values: objects (an empty array counts as one) merge key by key, anything else in
    `override` wins."""
    base_object, override_object = as_object(base), as_object(override)
    if base_object is not None and override_object is not None:
        merged = dict(base_object)
        for key, value in override_object.items():
            merged[key] = merge(base_object.get(key), value)
        return merged
    return base if override is None else override
