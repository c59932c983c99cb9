"""The pure pricing function: which entry prices a call, and what it costs to the last digit."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import CostBreakdown, TokenUsage
from shared.pricing import CallParts, Catalog, InconsistentUsage, load_catalog, price, price_usage_event
from tests.fixtures.events import usage_event

USAGE_FIELDS = set(TokenUsage.model_fields)


@pytest.fixture(scope="module")
def default_catalog() -> Catalog:
    return load_catalog()


def call(model: str, **fields: Any) -> CallParts:
    """CallParts from a flat mix of deployment fields and usage counts."""
    usage = TokenUsage(**{k: v for k, v in fields.items() if k in USAGE_FIELDS})
    return CallParts(model=model, usage=usage, **{k: v for k, v in fields.items() if k not in USAGE_FIELDS})


def catalog_of(**entries: dict[str, Any]) -> Catalog:
    """A small in-memory catalog; names with "/" go in as **{"azure/gpt-4o": {...}}."""
    return Catalog.from_entries(entries)


CHAT = {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": D("1e-06"), "output_cost_per_token": D("4e-06")}


# --- the documented examples, on the default catalog -------------------------------------------


def test_gpt_4o_mini_20_in_80_out_costs_0_000051(default_catalog: Catalog) -> None:
    """LiteLLM's documented example: 20 prompt + 80 completion tokens of gpt-4o-mini = $0.000051."""
    result = price(default_catalog, call("gpt-4o-mini", prompt_tokens=20, completion_tokens=80))
    assert result.cost.total == D("0.000051")


def test_breakdown_splits_input_and_output(default_catalog: Catalog) -> None:
    """The breakdown carries 20 × 1.5e-07 as input and 80 × 6e-07 as output."""
    cost = price(default_catalog, call("gpt-4o-mini", prompt_tokens=20, completion_tokens=80)).cost
    assert (cost.input, cost.output, cost.cache_read, cost.reasoning) == (D("0.000003"), D("0.000048"), 0, 0)


def test_priced_result_names_the_entry(default_catalog: Catalog) -> None:
    """A priced call reports the catalog entry it used and is not marked unpriced."""
    result = price(default_catalog, call("gpt-4o-mini", prompt_tokens=1))
    assert (result.priced_model, result.unpriced) == ("gpt-4o-mini", False)


def test_price_usage_event_equals_price_of_the_same_parts(default_catalog: Catalog) -> None:
    """The proxy's and the pricer's entry point gives the same result for an event as for its parts."""
    usage = TokenUsage(prompt_tokens=1200, completion_tokens=300, cache_read_input_tokens=1024)
    event = usage_event(model_group="gpt-4o", model="openai/gpt-4o", response_model="gpt-4o-2024-08-06", usage=usage)
    parts = CallParts(model="openai/gpt-4o", response_model="gpt-4o-2024-08-06", usage=usage)
    assert price_usage_event(default_catalog, event) == price(default_catalog, parts)


# --- which entry prices the call ----------------------------------------------------------------


def test_custom_prices_win_over_the_catalog(default_catalog: Catalog) -> None:
    """A deployment's own prices are used, even for a model the catalog knows, and say "custom"."""
    custom = {"input_cost_per_token": D("0.000001"), "output_cost_per_token": D("0.000002")}
    result = price(default_catalog, call("gpt-4o", custom_prices=custom, prompt_tokens=20, completion_tokens=80))
    assert (result.priced_model, result.cost.total) == ("custom", D("0.00018"))


def test_custom_prices_charge_nothing_for_rates_they_omit(default_catalog: Catalog) -> None:
    """Custom prices stand alone, as in LiteLLM: a rate they leave out is not borrowed from the catalog."""
    custom = {"input_cost_per_token": D("0.000001")}
    result = price(default_catalog, call("gpt-4o", custom_prices=custom, prompt_tokens=20, completion_tokens=80))
    assert result.cost.total == D("0.00002")


def test_base_model_prices_an_azure_deployment(default_catalog: Catalog) -> None:
    """azure/chatgpt-v-2 with base_model azure/gpt-4-1106-preview costs 20 × 1e-05 + 80 × 3e-05."""
    result = price(
        default_catalog,
        call("azure/chatgpt-v-2", base_model="azure/gpt-4-1106-preview", response_model="gpt-4",
             prompt_tokens=20, completion_tokens=80),
    )
    assert (result.priced_model, result.cost.total) == ("azure/gpt-4-1106-preview", D("0.0026"))


def test_base_model_of_another_provider_prices_an_openai_compatible_deployment(default_catalog: Catalog) -> None:
    """openai/… with base_model claude-sonnet-4-5 is Anthropic's price: 20 × 3e-06 + 80 × 1.5e-05."""
    result = price(default_catalog, call("openai/my-gateway-claude", base_model="claude-sonnet-4-5",
                                         custom_llm_provider="openai", prompt_tokens=20, completion_tokens=80))
    assert (result.priced_model, result.cost.total) == ("claude-sonnet-4-5", D("0.00126"))


def test_provider_prefixed_base_model_keeps_its_own_provider(default_catalog: Catalog) -> None:
    """openai/… with base_model gemini/gemini-2.5-pro: 20 × 1.25e-06 + 80 × 1e-05 = 0.000825."""
    result = price(default_catalog, call("openai/gemini-pro-via-gateway", base_model="gemini/gemini-2.5-pro",
                                         custom_llm_provider="openai", prompt_tokens=20, completion_tokens=80))
    assert (result.priced_model, result.cost.total) == ("gemini/gemini-2.5-pro", D("0.000825"))


def test_base_model_prefix_filters_entries_of_other_providers() -> None:
    """base_model azure/gpt-4o is never priced from OpenAI's gpt-4o entry when Azure has none."""
    catalog = catalog_of(**{"gpt-4o": CHAT})
    assert price(catalog, call("openai/x", base_model="azure/gpt-4o", prompt_tokens=5)).unpriced is True


def test_bare_base_model_prefers_the_deployments_provider() -> None:
    """base_model gpt-4o on an azure deployment takes azure/gpt-4o's rate before OpenAI's."""
    catalog = catalog_of(**{"gpt-4o": CHAT, "azure/gpt-4o": {**CHAT, "litellm_provider": "azure", "input_cost_per_token": D("3e-06")}})
    result = price(catalog, call("azure/dep", base_model="gpt-4o", prompt_tokens=10))
    assert (result.priced_model, result.cost.total) == ("azure/gpt-4o", D("0.00003"))


def test_unknown_base_model_leaves_the_call_unpriced() -> None:
    """A base_model that is set but unknown is not silently replaced by the (wrong) response model."""
    catalog = catalog_of(**{"gpt-4": CHAT})
    result = price(catalog, call("azure/chatgpt-v-2", base_model="azure/no-such-model", response_model="gpt-4", prompt_tokens=5))
    assert result.unpriced is True


def test_response_model_prices_when_there_is_no_base_model() -> None:
    """Without base_model, the model named in the upstream response is priced, not the deployment."""
    catalog = catalog_of(**{"my-deployment": CHAT, "gpt-4o-2024-08-06": {**CHAT, "input_cost_per_token": D("2e-06")}})
    result = price(catalog, call("my-deployment", response_model="gpt-4o-2024-08-06", prompt_tokens=10))
    assert (result.priced_model, result.cost.total) == ("gpt-4o-2024-08-06", D("0.00002"))


def test_deployment_model_prices_when_the_response_model_is_unknown() -> None:
    """An unknown response model falls back to the deployment's model."""
    catalog = catalog_of(**{"groq/llama3-8b-8192": {**CHAT, "litellm_provider": "groq"}})
    result = price(catalog, call("groq/llama3-8b-8192", response_model="llama3-8b-8192-unknown", prompt_tokens=10))
    assert result.priced_model == "groq/llama3-8b-8192"


def test_groq_model_is_priced_by_its_prefixed_name(default_catalog: Catalog) -> None:
    """groq/llama3-8b-8192: 20 × 5e-08 + 80 × 8e-08 = 0.0000074."""
    result = price(default_catalog, call("groq/llama3-8b-8192", prompt_tokens=20, completion_tokens=80))
    assert (result.priced_model, result.cost.total) == ("groq/llama3-8b-8192", D("0.0000074"))


def test_bare_response_name_is_tried_under_the_provider_prefix() -> None:
    """Groq answers "llama3-8b-8192"; it is found as "groq/llama3-8b-8192"."""
    catalog = catalog_of(**{"groq/llama3-8b-8192": {**CHAT, "litellm_provider": "groq"}})
    result = price(catalog, call("groq/llama3-8b-8192", response_model="llama3-8b-8192", prompt_tokens=10))
    assert result.priced_model == "groq/llama3-8b-8192"


def test_openai_prefix_is_stripped(default_catalog: Catalog) -> None:
    """"openai/gpt-4o" is priced by the "gpt-4o" entry."""
    assert price(default_catalog, call("openai/gpt-4o", prompt_tokens=1)).priced_model == "gpt-4o"


def test_dated_response_model_is_priced_by_its_own_entry(default_catalog: Catalog) -> None:
    """OpenAI's response model "gpt-4o-2024-08-06" is priced by that entry, not by "gpt-4o"."""
    result = price(default_catalog, call("openai/gpt-4o", response_model="gpt-4o-2024-08-06", prompt_tokens=1))
    assert result.priced_model == "gpt-4o-2024-08-06"


def test_provider_entry_is_preferred_to_the_bare_name() -> None:
    """For an Azure call, "azure/gpt-4o" (Azure's price) wins over OpenAI's "gpt-4o"."""
    catalog = catalog_of(**{"gpt-4o": CHAT, "azure/gpt-4o": {**CHAT, "litellm_provider": "azure"}})
    result = price(catalog, call("my-deployment", custom_llm_provider="azure", response_model="gpt-4o", prompt_tokens=1))
    assert result.priced_model == "azure/gpt-4o"


def test_another_providers_entry_never_prices_the_call() -> None:
    """A Groq call answering "gpt-4o" is not priced at OpenAI's gpt-4o rates."""
    catalog = catalog_of(**{"gpt-4o": CHAT})
    assert price(catalog, call("groq/gpt-4o", prompt_tokens=10)).unpriced is True


def test_provider_variants_match_their_family() -> None:
    """A bedrock call matches a "bedrock_converse" entry (LiteLLM tags Bedrock entries both ways)."""
    catalog = catalog_of(**{"anthropic.claude-x-v1:0": {**CHAT, "litellm_provider": "bedrock_converse"}})
    assert price(catalog, call("bedrock/anthropic.claude-x-v1:0", prompt_tokens=1)).priced_model == "anthropic.claude-x-v1:0"


def test_bedrock_route_segment_is_stripped(default_catalog: Catalog) -> None:
    """"bedrock/converse/<id>" is priced by the bare Bedrock id."""
    result = price(default_catalog, call("bedrock/converse/anthropic.claude-3-5-sonnet-20240620-v1:0", prompt_tokens=1))
    assert result.priced_model == "anthropic.claude-3-5-sonnet-20240620-v1:0"


def test_lookup_ignores_case_when_exact_case_is_absent(default_catalog: Catalog) -> None:
    """"GPT-4o-Mini" is priced by "gpt-4o-mini"."""
    assert price(default_catalog, call("GPT-4o-Mini", prompt_tokens=1)).priced_model == "gpt-4o-mini"


def test_fine_tuned_model_is_priced_by_its_ft_entry(default_catalog: Catalog) -> None:
    """"ft:gpt-4o-mini-2024-07-18:org::id" is priced by LiteLLM's "ft:gpt-4o-mini-2024-07-18" entry."""
    result = price(default_catalog, call("ft:gpt-4o-mini-2024-07-18:acme::abc123", prompt_tokens=1))
    assert result.priced_model == "ft:gpt-4o-mini-2024-07-18"


# --- unpriced -----------------------------------------------------------------------------------


def test_unknown_model_is_unpriced_with_a_zero_cost(default_catalog: Catalog) -> None:
    """No entry: unpriced, no priced model, every cost field zero, and no exception."""
    result = price(default_catalog, call("hosted_vllm/my-own-llama", prompt_tokens=100, completion_tokens=10))
    assert (result.unpriced, result.priced_model, result.cost) == (True, None, CostBreakdown())


# --- tiers --------------------------------------------------------------------------------------

TIERED = {
    **CHAT,
    "input_cost_per_token_above_128k_tokens": D("2e-06"),
    "output_cost_per_token_above_128k_tokens": D("8e-06"),
    "input_cost_per_token_above_200k_tokens": D("3e-06"),
}


def test_prompt_over_the_threshold_prices_every_token_at_the_tier_rate() -> None:
    """128,001 prompt tokens: all of them at 2e-06 and the output at 8e-06."""
    result = price(catalog_of(m=TIERED), call("m", prompt_tokens=128_001, completion_tokens=10))
    assert (result.cost.input, result.cost.output) == (D("0.256002"), D("0.00008"))


def test_prompt_at_the_threshold_keeps_the_base_rate() -> None:
    """Exactly 128,000 prompt tokens is not above 128k."""
    result = price(catalog_of(m=TIERED), call("m", prompt_tokens=128_000, completion_tokens=10))
    assert result.cost.total == D("0.12804")


def test_highest_exceeded_tier_applies_and_keeps_lower_tier_rates() -> None:
    """Over 200k: input at the 200k rate; output, with no 200k rate, stays at its 128k rate."""
    result = price(catalog_of(m=TIERED), call("m", prompt_tokens=250_000, completion_tokens=10))
    assert (result.cost.input, result.cost.output) == (D("0.75"), D("0.00008"))


def test_gemini_long_prompt_uses_the_above_128k_rate(default_catalog: Catalog) -> None:
    """gemini/gemini-1.5-pro over 128k: 200,000 × 7e-06 + 10 × 2.1e-05."""
    result = price(default_catalog, call("gemini/gemini-1.5-pro", prompt_tokens=200_000, completion_tokens=10))
    assert result.cost.total == D("1.40021")


def test_gemini_flash_output_is_tiered_too(default_catalog: Catalog) -> None:
    """gemini/gemini-1.5-flash over 128k: 130,000 × 1.5e-07 + 1,000 × 6e-07."""
    result = price(default_catalog, call("gemini/gemini-1.5-flash", prompt_tokens=130_000, completion_tokens=1000))
    assert (result.cost.input, result.cost.output) == (D("0.0195"), D("0.0006"))


def test_tiered_cache_read_rate_applies_over_the_threshold() -> None:
    """cache_read_input_token_cost_above_200k_tokens prices cached tokens of a long prompt."""
    entry = {**CHAT, "cache_read_input_token_cost": D("1e-07"), "cache_read_input_token_cost_above_200k_tokens": D("2e-07")}
    result = price(catalog_of(m=entry), call("m", prompt_tokens=300_000, cache_read_input_tokens=100_000))
    assert result.cost.cache_read == D("0.02")


# --- prompt caching -----------------------------------------------------------------------------


def test_cache_read_tokens_are_charged_at_the_cache_rate(default_catalog: Catalog) -> None:
    """gpt-4o, 2000 prompt tokens of which 1024 cached: 976 × 2.5e-06 + 1024 × 1.25e-06 + 100 × 1e-05."""
    cost = price(default_catalog, call("gpt-4o", prompt_tokens=2000, cache_read_input_tokens=1024, completion_tokens=100)).cost
    assert (cost.input, cost.cache_read, cost.output, cost.total) == (D("0.00244"), D("0.00128"), D("0.001"), D("0.00472"))


def test_cache_creation_tokens_are_charged_at_the_creation_rate() -> None:
    """Anthropic-style: 10,000 prompt = 2,000 new + 5,000 read + 3,000 written, each at its own rate."""
    entry = {
        **CHAT, "litellm_provider": "anthropic", "input_cost_per_token": D("3e-06"), "output_cost_per_token": D("1.5e-05"),
        "cache_read_input_token_cost": D("3e-07"), "cache_creation_input_token_cost": D("3.75e-06"),
    }
    usage = {"prompt_tokens": 10_000, "cache_read_input_tokens": 5_000, "cache_creation_input_tokens": 3_000, "completion_tokens": 100}
    cost = price(catalog_of(claude=entry), call("claude", **usage)).cost
    assert (cost.input, cost.cache_read, cost.cache_creation, cost.output) == (D("0.006"), D("0.0015"), D("0.01125"), D("0.0015"))


def test_cache_creation_total_is_the_sum_of_its_parts() -> None:
    """The same Anthropic-style call totals 0.006 + 0.0015 + 0.01125 + 0.0015 = 0.02025."""
    entry = {**CHAT, "input_cost_per_token": D("3e-06"), "output_cost_per_token": D("1.5e-05"),
             "cache_read_input_token_cost": D("3e-07"), "cache_creation_input_token_cost": D("3.75e-06")}
    usage = {"prompt_tokens": 10_000, "cache_read_input_tokens": 5_000, "cache_creation_input_tokens": 3_000, "completion_tokens": 100}
    assert price(catalog_of(claude=entry), call("claude", **usage)).cost.total == D("0.02025")


def test_cached_tokens_without_a_cache_rate_stay_at_the_input_rate() -> None:
    """With no cache rate in the entry, all 1,000 prompt tokens (400 cached) cost the input rate."""
    cost = price(catalog_of(m=CHAT), call("m", prompt_tokens=1000, cache_read_input_tokens=400)).cost
    assert (cost.input, cost.cache_read) == (D("0.001"), 0)


def test_more_cached_than_prompt_tokens_is_rejected() -> None:
    """Cached tokens are part of prompt_tokens; more of them than the prompt is an adapter bug."""
    with pytest.raises(InconsistentUsage, match="exceed prompt_tokens"):
        price(catalog_of(m=CHAT), call("m", prompt_tokens=10, cache_read_input_tokens=11))


# --- reasoning ----------------------------------------------------------------------------------


def test_reasoning_tokens_are_charged_at_the_reasoning_rate() -> None:
    """100 completion tokens of which 60 reasoning: 40 × 4e-06 output + 60 × 1e-05 reasoning."""
    entry = {**CHAT, "output_cost_per_reasoning_token": D("1e-05")}
    cost = price(catalog_of(m=entry), call("m", completion_tokens=100, reasoning_tokens=60)).cost
    assert (cost.output, cost.reasoning, cost.total) == (D("0.00016"), D("0.0006"), D("0.00076"))


def test_reasoning_without_its_own_rate_is_output(default_catalog: Catalog) -> None:
    """o3-mini has no reasoning rate: all 100 completion tokens at 4.4e-06, reasoning part zero."""
    cost = price(default_catalog, call("o3-mini", completion_tokens=100, reasoning_tokens=60)).cost
    assert (cost.output, cost.reasoning) == (D("0.00044"), 0)


def test_more_reasoning_than_completion_tokens_is_rejected() -> None:
    """Reasoning tokens are part of completion_tokens."""
    with pytest.raises(InconsistentUsage, match="exceed completion_tokens"):
        price(catalog_of(m=CHAT), call("m", completion_tokens=5, reasoning_tokens=6))


# --- images -------------------------------------------------------------------------------------


def test_dall_e_3_hd_size_is_priced_per_pixel_times_n(default_catalog: Catalog) -> None:
    """hd/1024-x-1792/dall-e-3: 6.539e-08 × 1024 × 1792 × 2 images."""
    result = price(default_catalog, call("dall-e-3", call_type="aimage_generation", image_count=2, image_size="1024x1792", image_quality="hd"))
    assert (result.priced_model, result.cost.images) == ("hd/1024-x-1792/dall-e-3", D("0.23998234624"))


def test_dall_e_2_is_priced_by_its_size_key(default_catalog: Catalog) -> None:
    """256-x-256/dall-e-2: 2.4414e-07 × 256 × 256."""
    result = price(default_catalog, call("dall-e-2", call_type="aimage_generation", image_count=1, image_size="256x256"))
    assert (result.priced_model, result.cost.total) == ("256-x-256/dall-e-2", D("0.01599995904"))


def test_dall_e_3_without_quality_is_priced_as_standard(default_catalog: Catalog) -> None:
    """No quality asked: OpenAI's default, standard/1024-x-1024/dall-e-3, 3.81469e-08 × 1024²."""
    result = price(default_catalog, call("dall-e-3", call_type="aimage_generation", image_count=1, image_size="1024x1024"))
    assert (result.priced_model, result.cost.total) == ("standard/1024-x-1024/dall-e-3", D("0.0399999238144"))


def test_per_image_price_is_multiplied_by_n(default_catalog: Catalog) -> None:
    """low/1024-x-1024/gpt-image-1 lists 0.011 per image (preferred over its per-pixel rate): 3 images."""
    result = price(default_catalog, call("gpt-image-1", call_type="aimage_generation", image_count=3, image_size="1024x1024", image_quality="low"))
    assert result.cost.images == D("0.033")


def test_output_cost_per_image_is_multiplied_by_n() -> None:
    """An entry billed per generated image: 2 × 0.04."""
    entry = {"litellm_provider": "bedrock", "mode": "image_generation", "output_cost_per_image": D("0.04")}
    assert price(catalog_of(sdxl=entry), call("sdxl", image_count=2)).cost.images == D("0.08")


def test_per_pixel_rate_uses_width_times_height() -> None:
    """input_cost_per_pixel × 512 × 768 × 2."""
    entry = {"litellm_provider": "openai", "mode": "image_generation", "input_cost_per_pixel": D("1e-08")}
    assert price(catalog_of(img=entry), call("img", image_count=2, image_size="512x768")).cost.images == D("0.00786432")


def test_azure_image_key_puts_the_provider_first(default_catalog: Catalog) -> None:
    """An Azure dall-e-3 deployment with base_model dall-e-3 uses azure/hd/1024-x-1024/dall-e-3."""
    result = price(
        default_catalog,
        call("azure/dall-e-3-test", base_model="dall-e-3", call_type="aimage_generation", image_count=1, image_size="1024x1024", image_quality="hd"),
    )
    assert result.priced_model == "azure/hd/1024-x-1024/dall-e-3"


# --- embeddings, characters, seconds ------------------------------------------------------------


def test_embedding_is_charged_for_input_tokens_only(default_catalog: Catalog) -> None:
    """text-embedding-ada-002: 2 tokens × 1e-07; completion tokens are ignored."""
    result = price(default_catalog, call("text-embedding-ada-002", call_type="aembedding", prompt_tokens=2, completion_tokens=5))
    assert result.cost.total == D("2e-07")


def test_speech_is_charged_per_input_character(default_catalog: Catalog) -> None:
    """tts-1: 100 characters × 1.5e-05, reported as `other`."""
    assert price(default_catalog, call("tts-1", input_characters=100)).cost.other == D("0.0015")


def test_transcription_is_charged_per_second(default_catalog: Catalog) -> None:
    """whisper-1: 12.5 seconds × 0.0001."""
    assert price(default_catalog, call("whisper-1", duration_seconds=D("12.5"))).cost.total == D("0.00125")


# --- exactness and inputs -----------------------------------------------------------------------


def test_huge_counts_are_priced_exactly() -> None:
    """No rounding: 10**30 tokens at 1.23456789e-07 is 123456789 followed by 15 zeros, exactly."""
    entry = {**CHAT, "input_cost_per_token": D("1.23456789e-07")}
    assert price(catalog_of(m=entry), call("m", prompt_tokens=10**30)).cost.total == D("123456789e15")


def test_negative_counts_are_rejected_by_token_usage() -> None:
    """TokenUsage refuses a negative count before pricing ever sees it."""
    with pytest.raises(ValidationError):
        TokenUsage(prompt_tokens=-1)


def test_breakdown_equals_the_validated_model(default_catalog: Catalog) -> None:
    """The breakdown built without re-validation equals, and serialises like, a validated one."""
    cost = price(default_catalog, call("gpt-4o", prompt_tokens=2000, cache_read_input_tokens=1024, completion_tokens=100)).cost
    validated = CostBreakdown(**dict(cost))
    assert (cost, cost.model_dump_json(), cost.model_fields_set) == (validated, validated.model_dump_json(), set(CostBreakdown.model_fields))


def test_remembered_resolution_gives_the_same_result(default_catalog: Catalog) -> None:
    """Pricing the same shape twice (the second from memo) gives the same result."""
    parts = call("openai/gpt-4o", response_model="gpt-4o-2024-08-06", prompt_tokens=7, completion_tokens=3)
    assert price(default_catalog, parts) == price(default_catalog, parts)


def test_user_file_override_changes_the_price(tmp_path: Any) -> None:
    """A user price file overriding gpt-4o-mini's input rate is what prices the call."""
    override = tmp_path / "prices.json"
    override.write_text('{"gpt-4o-mini": {"input_cost_per_token": 1e-06}}')
    result = price(load_catalog(override), call("gpt-4o-mini", prompt_tokens=20, completion_tokens=80))
    assert result.cost.total == D("0.000068")
