"""/spend/calculate's pure part: what usage event a request becomes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.reports.calculation import estimate_prompt_tokens, usage_event
from shared.config import parse_config
from shared.errors import BadRequest

CONFIG = parse_config({"model_list": [
    {"model_name": "llama3", "litellm_params": {"model": "groq/llama3-8b-8192"}},
    {"model_name": "azure-gpt", "litellm_params": {"model": "azure/chatgpt-v-2", "input_cost_per_token": 0.000001},
     "model_info": {"base_model": "azure/gpt-4-1106-preview"}},
]}, {})


def test_model_name_maps_to_its_deployment():
    """A config model_name is priced as its deployment, with provider, base_model and custom prices."""
    event = usage_event({"model": "azure-gpt", "messages": [{"role": "user", "content": "hi"}]}, CONFIG)
    assert (event.model_group, event.model, event.custom_llm_provider, event.base_model, event.custom_prices) == (
        "azure-gpt", "azure/chatgpt-v-2", "azure", "azure/gpt-4-1106-preview", {"input_cost_per_token": Decimal("0.000001")})


def test_unknown_model_is_priced_by_its_own_name():
    """A model not in the config is priced under the name given."""
    event = usage_event({"model": "gpt-4o", "messages": []}, CONFIG)
    assert (event.model, event.usage.prompt_tokens, event.usage.completion_tokens) == ("gpt-4o", 3, 0)


def test_completion_response_usage_is_taken_as_reported():
    """A completion response's usage, cached and reasoning tokens included, is what gets priced."""
    event = usage_event({"completion_response": {"model": "gpt-4o", "usage": {
        "prompt_tokens": 100, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 7}}}}, CONFIG)
    u = event.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cache_read_input_tokens, u.reasoning_tokens, event.response_model) == (
        100, 50, 40, 7, "gpt-4o")


def test_prompt_estimate():
    """Four characters a token, plus 3 per message and 3 to prime the reply."""
    assert estimate_prompt_tokens([{"role": "user", "content": "12345678"}]) == 3 + 3 + 1 + 2


def test_content_parts_are_counted():
    """Multi-part content counts its text parts."""
    assert estimate_prompt_tokens([{"role": "user", "content": [{"type": "text", "text": "1234"}, {"type": "image_url"}]}]) == 8


@pytest.mark.parametrize("body", [{}, {"model": "x"}, {"model": "", "messages": []}, {"completion_response": []},
                                  {"completion_response": {"usage": {}}}, {"completion_response": {"model": "m", "usage": {"prompt_tokens": 1.5}}}])
def test_unusable_bodies_are_400(body):
    """Without model+messages or a usable completion_response: 400."""
    with pytest.raises(BadRequest):
        usage_event(body, CONFIG)
