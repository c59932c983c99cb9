"""`/v1/responses` with the openai SDK's responses API as the client: passed to OpenAI and Azure
deployments, priced exactly (cached input and reasoning tokens included) in the cost header and
in response.completed's usage, and landing as one spend log row of that cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from shared.events import TokenUsage
from stack.fake_upstream import CALLS
from stack.fake_upstream import build_app as build_openai_fake
from tests.e2e.test_provider_pricing import catalog_price
from tests.fixtures.priced_calls import MASTER, proxy_for, serve, spend_of, url_of
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

USAGE = {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 120,
         "output_tokens_details": {"reasoning_tokens": 40}}
STEER = {"x_fake": {"responses_usage": USAGE}}
# openai/o4-mini: 200 * 1.1e-06 + 1000 * 2.75e-07 (cached) + 120 * 4.4e-06 (reasoning billed as output)
O4_MINI_COST = Decimal("0.001023")
ANSWER = "This is a fake answer from Tally's demo upstream."


@pytest.fixture
async def proxy(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[dict[str, Any]]:
    upstream = await serve(build_openai_fake())
    models = [
        {"model_name": "o4", "litellm_params": {"model": "openai/o4-mini", "api_base": url_of(upstream) + "/v1", "api_key": "up-key"}},
        {"model_name": "azure-o4", "litellm_params": {"model": "azure/my-o4", "api_base": url_of(upstream), "api_key": "az-key",
                                                      "api_version": "2025-03-01-preview"}, "model_info": {"base_model": "azure/o4-mini"}},
        {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": url_of(upstream), "api_key": "g"}},
    ]
    async with proxy_for(pricing_chain, models, tmp_path / "spool") as url:
        yield {"client": openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0), "upstream": upstream}
    await upstream.close()


def test_o4_mini_catalog_price_is_the_hand_computed_one() -> None:
    """The expected figure is the catalog's: 0.001023 for 1200 input (1000 cached) and 120 output tokens."""
    usage = TokenUsage(prompt_tokens=1200, completion_tokens=120, cache_read_input_tokens=1000, reasoning_tokens=40)
    assert catalog_price("openai/o4-mini", "openai", usage) == O4_MINI_COST


async def test_response_is_passed_through_and_priced_exactly(proxy: dict[str, Any], pricing_chain: TallyStack) -> None:
    """responses.create goes to <api_base>/responses as sent; cached and reasoning tokens priced: header = row = 0.001023."""
    raw = await asyncio.to_thread(lambda: proxy["client"].responses.with_raw_response.create(
        model="o4", input="hi", max_output_tokens=500, extra_body=STEER))
    response = raw.parse()
    sent = proxy["upstream"].app[CALLS][-1]
    assert (sent["path"], sent["body"]["model"], sent["body"]["input"], sent["body"]["max_output_tokens"]) == ("/v1/responses", "o4-mini", "hi", 500)
    assert sent["headers"]["Authorization"] == "Bearer up-key"
    assert response.output_text == ANSWER
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1200, 120)
    assert raw.headers["x-litellm-response-cost"] == "0.001023"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (O4_MINI_COST, 1200, 120)


async def test_streamed_response_carries_the_cost_in_response_completed(proxy: dict[str, Any], pricing_chain: TallyStack) -> None:
    """Events pass through; response.completed's usage gains cost 0.001023, as the spend row."""
    def stream() -> tuple[list[Any], str]:
        with proxy["client"].responses.with_streaming_response.create(model="o4", input="hi", stream=True, extra_body=STEER) as response:
            return list(response.parse()), response.headers["x-litellm-call-id"]

    events, request_id = await asyncio.to_thread(stream)
    assert [e.type for e in events][0] == "response.created"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta").strip() == ANSWER
    completed = events[-1]
    assert completed.type == "response.completed"
    assert Decimal(str(completed.response.usage.model_extra["cost"])) == O4_MINI_COST
    assert await spend_of(pricing_chain, request_id) == (O4_MINI_COST, 1200, 120)


async def test_azure_deployment_gets_the_resource_responses_path(proxy: dict[str, Any]) -> None:
    """An Azure deployment: /openai/responses?api-version=..., the deployment name as model, api-key; priced as base_model."""
    raw = await asyncio.to_thread(lambda: proxy["client"].responses.with_raw_response.create(model="azure-o4", input="hi", extra_body=STEER))
    sent = proxy["upstream"].app[CALLS][-1]
    assert (sent["path"], sent["body"]["model"], sent["headers"]["api-key"]) == ("/openai/responses", "my-o4", "az-key")
    assert raw.headers["x-litellm-response-cost"] == "0.001023"


async def test_a_deployment_without_the_responses_api_is_a_400(proxy: dict[str, Any]) -> None:
    """A Gemini model group is refused with a 400 that says /v1/responses needs an OpenAI-compatible deployment."""
    with pytest.raises(openai.BadRequestError) as caught:
        await asyncio.to_thread(lambda: proxy["client"].responses.create(model="flash", input="hi"))
    assert "does not serve the Responses API" in caught.value.body["message"]
