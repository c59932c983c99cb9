"""`make price-map`'s pure steps: curating LiteLLM's map, keeping what it dropped, showing what
changed, and writing numbers as LiteLLM wrote them (no network here)."""

from __future__ import annotations

from decimal import Decimal as D

from shared.pricing import load_catalog
from shared.pricing.catalog import parse_price_text
from shared.pricing.refresh import curated, dump, merged, price_changes, read_map

UPSTREAM = """{
  "sample_spec": {"mode": "one of: chat", "input_cost_per_token": 0.0},
  "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.5e-07,
            "output_cost_per_token": 6e-07, "supports_vision": true, "source": "https://example.com",
            "tiered_pricing": [{"range": [0, 1]}], "max_tokens": 16384},
  "bedrock/us-east-1/x": {"litellm_provider": "bedrock", "mode": "chat", "input_cost_per_token": 1e-06},
  "realtime-x": {"litellm_provider": "openai", "mode": "realtime", "input_cost_per_token": 1e-06},
  "other/x": {"litellm_provider": "someone-else", "mode": "chat", "input_cost_per_token": 1e-06}
}"""


def test_curation_keeps_the_catalogs_providers_modes_and_fields() -> None:
    """Only gpt-x stays, with its prices, mode, limits and flags; sources and nested tiers go."""
    assert curated(read_map(UPSTREAM)) == {"gpt-x": {
        "litellm_provider": "openai", "mode": "chat", "input_cost_per_token": "1.5e-07",
        "output_cost_per_token": "6e-07", "supports_vision": True, "max_tokens": "16384"}}


def test_dropped_and_pinned_entries_stay_as_they_are() -> None:
    """A retired model LiteLLM no longer lists, and a pinned one, keep the current entry."""
    current = {"old-model": {"input_cost_per_token": "1"}, "gemini/gemini-1.5-flash": {"mode": "chat"}}
    fresh = {"gemini/gemini-1.5-flash": {"mode": "embedding"}, "new": {"mode": "chat"}}
    assert merged(current, fresh) == {**current, "new": {"mode": "chat"}}


def test_changes_name_added_models_and_changed_prices_only() -> None:
    """Equal values written differently (1.5e-07, 0.00000015) are no change; a new rate is."""
    current = {"a": {"input_cost_per_token": "1.5e-07", "max_tokens": "1"}, "b": {}}
    new = {"a": {"input_cost_per_token": "0.00000015", "output_cost_per_token": "6e-07", "max_tokens": "2"},
           "b": {}, "c": {}}
    assert price_changes(current, new) == ["~ a output_cost_per_token: none -> 0.0000006", "+ c"]


def test_written_file_keeps_litellms_number_text_and_loads() -> None:
    """1.5e-07 is written as 1.5e-07, and the file loads to the exact Decimal."""
    text = dump(curated(read_map(UPSTREAM)))
    assert '"input_cost_per_token": 1.5e-07' in text
    assert parse_price_text(text, "t")["gpt-x"]["input_cost_per_token"] == D("0.00000015")


def test_default_catalog_prices_azure_dall_e_3_standard_as_litellms_current_map() -> None:
    """azure/standard/1024-x-1024/dall-e-3 is 4.19617e-08 a pixel: 1024 × 1024 of them ≈ $0.044 an image."""
    entry = load_catalog().get("azure/standard/1024-x-1024/dall-e-3")
    assert entry["input_cost_per_pixel"] * 1024 * 1024 == D("0.0440000315392")
