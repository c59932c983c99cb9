"""The price catalog: LiteLLM's file format read exactly, merged with user files, versioned."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from shared.pricing import DEFAULT_CATALOG_PATH, Catalog, CatalogError, load_catalog, parse_price_text

BASE = {
    "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers"},
    "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
               "cache_read_input_token_cost": 1.25e-06},
}


def write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=4))
    return path


@pytest.fixture(scope="module")
def default_catalog() -> Catalog:
    return load_catalog()


# --- the default catalog ------------------------------------------------------------------------


def test_default_catalog_has_at_least_300_entries(default_catalog: Catalog) -> None:
    """The packaged catalog covers the providers LiteLLM users run (300 entries at the very least)."""
    assert len(default_catalog) >= 300


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("gpt-4o-mini", "input_cost_per_token", "1.5e-07"),
        ("gpt-4o-mini", "output_cost_per_token", "6e-07"),
        ("gpt-4o", "input_cost_per_token", "2.5e-06"),
        ("gpt-4o", "output_cost_per_token", "1e-05"),
        ("gpt-4o", "cache_read_input_token_cost", "1.25e-06"),
        ("groq/llama3-8b-8192", "input_cost_per_token", "5e-08"),
        ("groq/llama3-8b-8192", "output_cost_per_token", "8e-08"),
        ("text-embedding-ada-002", "input_cost_per_token", "1e-07"),
        ("azure/gpt-4-1106-preview", "input_cost_per_token", "1e-05"),
        ("gemini/gemini-1.5-pro", "input_cost_per_token_above_128k_tokens", "7e-06"),
        ("hd/1024-x-1792/dall-e-3", "input_cost_per_pixel", "6.539e-08"),
    ],
)
def test_default_catalog_holds_the_list_price(default_catalog: Catalog, model: str, field: str, value: str) -> None:
    """Prices everyone checks against (LiteLLM's docs) are in the default catalog to the digit."""
    assert default_catalog.entries[model][field] == D(value)


def test_default_catalog_skips_sample_spec(default_catalog: Catalog) -> None:
    """LiteLLM's "sample_spec" documents the format; it is not a model."""
    assert "sample_spec" not in default_catalog


def test_default_catalog_is_read_from_the_packaged_file(default_catalog: Catalog) -> None:
    """With no user file, the only source is shared/pricing/data/model_prices.json."""
    assert default_catalog.sources == (str(DEFAULT_CATALOG_PATH),)


# --- exact numbers ------------------------------------------------------------------------------


def test_prices_are_decimals_taken_from_the_json_text() -> None:
    """1.5e-07 is Decimal("1.5e-07"), never the float nearest to it."""
    entries = parse_price_text('{"m": {"input_cost_per_token": 1.5e-07}}', "prices.json")
    assert entries["m"]["input_cost_per_token"] == D("0.00000015")


def test_digits_beyond_float_precision_are_kept() -> None:
    """A price with more digits than a float holds keeps every one of them."""
    entries = parse_price_text('{"m": {"input_cost_per_token": 0.12345678901234567890123}}', "prices.json")
    assert entries["m"]["input_cost_per_token"] == D("0.12345678901234567890123")


# --- merging user files -------------------------------------------------------------------------


def test_user_file_adds_a_model(tmp_path: Path) -> None:
    """An entry only the user file has is in the catalog."""
    base = write(tmp_path / "base.json", BASE)
    user = write(tmp_path / "user.json", {"my-model": {"input_cost_per_token": 3e-06}})
    assert load_catalog(user, default=base).entries["my-model"]["input_cost_per_token"] == D("3e-06")


def test_user_file_overrides_only_the_fields_it_names(tmp_path: Path) -> None:
    """Overriding gpt-4o's input rate keeps its output and cache rates from the default."""
    base = write(tmp_path / "base.json", BASE)
    user = write(tmp_path / "user.json", {"gpt-4o": {"input_cost_per_token": 2e-06}})
    entry = load_catalog(user, default=base).entries["gpt-4o"]
    assert (entry["input_cost_per_token"], entry["output_cost_per_token"], entry["cache_read_input_token_cost"]) == (
        D("2e-06"), D("1e-05"), D("1.25e-06"))


def test_later_user_file_wins(tmp_path: Path) -> None:
    """Of two user files naming the same field, the later one wins."""
    base = write(tmp_path / "base.json", BASE)
    first = write(tmp_path / "first.json", {"gpt-4o": {"input_cost_per_token": 2e-06}})
    second = write(tmp_path / "second.json", {"gpt-4o": {"input_cost_per_token": 3e-06}})
    assert load_catalog(first, second, default=base).entries["gpt-4o"]["input_cost_per_token"] == D("3e-06")


def test_null_field_removes_a_rate(tmp_path: Path) -> None:
    """A user file can drop a default rate by setting it to null."""
    base = write(tmp_path / "base.json", BASE)
    user = write(tmp_path / "user.json", '{"gpt-4o": {"cache_read_input_token_cost": null}}')
    assert "cache_read_input_token_cost" not in load_catalog(user, default=base).entries["gpt-4o"]


def test_catalog_can_be_built_without_the_default(tmp_path: Path) -> None:
    """default=None: the catalog is exactly the user's file (e.g. LiteLLM's own, dropped in)."""
    user = write(tmp_path / "litellm.json", BASE)
    assert list(load_catalog(user, default=None).entries) == ["gpt-4o"]


# --- version ------------------------------------------------------------------------------------


def test_version_is_a_short_sha256_hex(tmp_path: Path) -> None:
    """The version is 16 lowercase hex digits."""
    version = load_catalog(write(tmp_path / "p.json", BASE), default=None).version
    assert len(version) == 16 and set(version) <= set("0123456789abcdef")


def test_version_changes_when_a_price_changes(tmp_path: Path) -> None:
    """One changed digit gives another version."""
    before = load_catalog(write(tmp_path / "a.json", BASE), default=None).version
    changed = {**BASE, "gpt-4o": {**BASE["gpt-4o"], "input_cost_per_token": 2.6e-06}}
    assert load_catalog(write(tmp_path / "b.json", changed), default=None).version != before


def test_version_ignores_spelling_and_order(tmp_path: Path) -> None:
    """1.25e-06 and 0.00000125, keys in any order, indented or not: same prices, same version."""
    one = write(tmp_path / "a.json", '{"m": {"input_cost_per_token": 1.25e-06, "mode": "chat"}}')
    other = write(tmp_path / "b.json", '{"m":{"mode":"chat","input_cost_per_token":0.00000125}}')
    assert load_catalog(one, default=None).version == load_catalog(other, default=None).version


def test_version_is_the_same_however_the_layers_are_split(tmp_path: Path) -> None:
    """Default + override gives the version of one file holding the merged prices."""
    base = write(tmp_path / "base.json", BASE)
    user = write(tmp_path / "user.json", {"gpt-4o": {"input_cost_per_token": 2e-06}})
    merged = {"gpt-4o": {**BASE["gpt-4o"], "input_cost_per_token": 2e-06}}
    single = write(tmp_path / "merged.json", merged)
    assert load_catalog(user, default=base).version == load_catalog(single, default=None).version


# --- bad files ----------------------------------------------------------------------------------


def test_invalid_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    """A syntax error on line 3 is reported with the file's path and "line 3"."""
    bad = write(tmp_path / "bad.json", '{\n  "m": {"input_cost_per_token": 1e-06},\n  "n": {"input_cost_per_token": }\n}')
    with pytest.raises(CatalogError, match=rf"{bad} line 3 column \d+: not valid JSON"):
        load_catalog(bad, default=None)


def test_negative_price_names_the_entry_and_the_field(tmp_path: Path) -> None:
    """A negative rate is refused with the file, model and field in the message."""
    bad = write(tmp_path / "bad.json", {"m": {"output_cost_per_token": -1e-06}})
    with pytest.raises(CatalogError, match=r"bad\.json: entry 'm' field 'output_cost_per_token' must be a non-negative number"):
        load_catalog(bad, default=None)


def test_price_written_as_a_string_is_refused(tmp_path: Path) -> None:
    """"1e-06" in quotes is not a price."""
    bad = write(tmp_path / "bad.json", {"m": {"input_cost_per_token": "1e-06"}})
    with pytest.raises(CatalogError, match="entry 'm' field 'input_cost_per_token'"):
        load_catalog(bad, default=None)


def test_nan_price_is_refused(tmp_path: Path) -> None:
    """NaN (which Python's json accepts) is not a price."""
    bad = write(tmp_path / "bad.json", '{"m": {"input_cost_per_token": NaN}}')
    with pytest.raises(CatalogError, match="entry 'm' field 'input_cost_per_token'"):
        load_catalog(bad, default=None)


def test_entry_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    """Every top-level value but sample_spec must be a model entry."""
    bad = write(tmp_path / "bad.json", {"m": [1, 2]})
    with pytest.raises(CatalogError, match="entry 'm' must be an object, got a list"):
        load_catalog(bad, default=None)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    """A list at the top level is not a price map."""
    bad = write(tmp_path / "bad.json", "[]")
    with pytest.raises(CatalogError, match="the top level must be an object"):
        load_catalog(bad, default=None)


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A price file that cannot be read is named in the error."""
    with pytest.raises(CatalogError, match="cannot read price file .*nowhere.json"):
        load_catalog(tmp_path / "nowhere.json", default=None)


def test_float_price_in_memory_is_refused() -> None:
    """Entries built in code must carry Decimals; a float has already lost digits."""
    with pytest.raises(CatalogError, match="is a float"):
        Catalog.from_entries({"m": {"input_cost_per_token": 1.5e-07}})


def test_nested_cost_objects_are_accepted(tmp_path: Path) -> None:
    """LiteLLM nests some costs (search_context_cost_per_query); they load without complaint."""
    nested = write(tmp_path / "p.json", {"m": {"input_cost_per_token": 1e-06, "search_context_cost_per_query": {"search_context_size_low": 0.01}}})
    assert load_catalog(nested, default=None).entries["m"]["input_cost_per_token"] == D("1e-06")


def test_entries_are_read_only(default_catalog: Catalog) -> None:
    """Prices cannot be edited in place after loading (pricing remembers what it derived)."""
    with pytest.raises(TypeError):
        default_catalog.entries["gpt-4o"]["input_cost_per_token"] = D("0")  # type: ignore[index]
