"""The price catalog: LiteLLM's model_prices_and_context_window.json format, loaded exactly.

Every number is parsed as a Decimal straight from the JSON text (never through a float), so
"1.5e-07" is exactly 0.00000015. The catalog is our default file merged with any user files,
later files winning field by field, and its version is a hash of the merged content: two
services holding the same prices report the same version, whatever file layout produced it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_CATALOG_PATH = Path(__file__).with_name("data") / "model_prices.json"

# LiteLLM's file documents its own format in this entry; it prices nothing.
SAMPLE_SPEC = "sample_spec"

Entry = Mapping[str, Any]


class CatalogError(ValueError):
    """A price file cannot be used. The message names the file and the line, or the entry and
    the field."""


@dataclass(frozen=True, eq=False)
class Catalog:
    """Model name -> entry (numbers as Decimal), plus the version that identifies the prices.
    Read-only: pricing remembers what it derived from the entries."""

    entries: Mapping[str, Entry]
    version: str
    sources: tuple[str, ...] = ()
    # Per-catalog caches filled by pricing (resolved names, prepared rates); never content.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    @classmethod
    def from_entries(cls, entries: Mapping[str, Entry], source: str = "<memory>") -> Catalog:
        """A catalog from entries already in memory (tests, benchmarks). Validated like a file."""
        checked = {name: checked_entry(source, name, entry) for name, entry in entries.items() if name != SAMPLE_SPEC}
        return _frozen_catalog(checked, (source,))


def load_catalog(*user_files: str | Path, default: str | Path | None = DEFAULT_CATALOG_PATH) -> Catalog:
    """The default catalog extended and overridden by each user file in turn."""
    paths = ([Path(default)] if default is not None else []) + [Path(p) for p in user_files]
    layers = [(str(path), read_price_file(path)) for path in paths]
    merged = merge_entries(entries for _, entries in layers)
    return _frozen_catalog(merged, tuple(name for name, _ in layers))


def _frozen_catalog(entries: dict[str, dict[str, Any]], sources: tuple[str, ...]) -> Catalog:
    version = catalog_version(entries)
    frozen = MappingProxyType({name: MappingProxyType(entry) for name, entry in entries.items()})
    return Catalog(entries=frozen, version=version, sources=sources)


def read_price_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read price file {path}: {exc.strerror}") from exc
    return parse_price_text(text, str(path))


def parse_price_text(text: str, source: str) -> dict[str, dict[str, Any]]:
    """Parse one file's text into checked entries. `source` names the file in errors."""
    try:
        raw = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{source} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: the top level must be an object of model name -> entry")
    return {name: checked_entry(source, name, entry) for name, entry in raw.items() if name != SAMPLE_SPEC}


def merge_entries(layers: Iterable[Mapping[str, Entry]]) -> dict[str, dict[str, Any]]:
    """Later layers add entries and update the fields they name (as LiteLLM's register_model
    does); a field set to null removes it, so a user file can drop a rate it disagrees with."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for name, entry in layer.items():
            combined = {**merged.get(name, {}), **entry}
            merged[name] = {key: value for key, value in combined.items() if value is not None}
    return merged


def catalog_version(entries: Mapping[str, Entry]) -> str:
    """Short sha256 of the canonical content: keys sorted, numbers in plain normalised form,
    so 1.5e-07 and 0.00000015 (the same price) give the same version."""
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"), default=_canonical_number)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _canonical_number(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    raise TypeError(f"unexpected {type(value).__name__} in a price entry")


def entries_json(entries: Mapping[str, Entry]) -> str:
    """The entries as JSON whose numbers are the Decimals' own text: parse_price_text reads it
    back to the same entries (and so the same version), digit for digit."""
    return _json_value(entries)


def _json_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_json_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_value(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(float(value))  # NaN/Infinity: how json wrote them
    return json.dumps(value)


def catalog_from_text(text: str, source: str) -> Catalog:
    """A whole catalog from one JSON text (a published version), with no default beneath it."""
    return _frozen_catalog(parse_price_text(text, source), (source,))


def checked_entry(source: str, name: str, entry: Any) -> dict[str, Any]:
    """The entry as a plain dict, once every flat cost field is a finite, non-negative Decimal."""
    if not isinstance(entry, dict):
        raise CatalogError(f"{source}: entry {name!r} must be an object, got {_json_kind(entry)}")
    for key, value in entry.items():
        # Only flat cost fields are rates; LiteLLM also nests objects (search_context_cost_per_query)
        # and lists (tiered_pricing) under "cost"-like names, which pricing does not read.
        if "cost" in key and not isinstance(value, dict | list) and value is not None:
            if isinstance(value, float):
                raise CatalogError(f"{source}: entry {name!r} field {key!r} is a float; prices must be exact Decimals")
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise CatalogError(
                    f"{source}: entry {name!r} field {key!r} must be a non-negative number, got {value!r}"
                )
    return dict(entry)


def _json_kind(value: Any) -> str:
    return {str: "a string", list: "a list", Decimal: "a number", bool: "a boolean"}.get(type(value), "null")
