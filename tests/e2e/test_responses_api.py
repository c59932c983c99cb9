"""`/v1/responses` with the openai SDK's responses API as the client: passed to OpenAI and Azure
deployments, priced exactly (cached input and reasoning tokens included) in the cost header and
in response.completed's usage, and landing as one spend log row of that cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shared.events import TokenUsage
from stack.fake_upstream import CALLS, STORED
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
        yield {"client": openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0), "upstream": upstream, "url": url}
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


def new_key(url: str) -> str:
    answer = httpx.post(url + "/key/generate", json={}, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["key"]


async def test_a_key_retrieves_what_it_created_and_no_other_key_can(proxy: dict[str, Any], pricing_chain: TallyStack) -> None:
    """responses.retrieve with the managed id reaches the creating deployment, unbilled; another key gets OpenAI's 404."""
    owner = openai.OpenAI(api_key=await asyncio.to_thread(new_key, proxy["url"]), base_url=proxy["url"], max_retries=0)
    created = await asyncio.to_thread(lambda: owner.responses.create(model="o4", input="hi", extra_body=STEER))
    assert created.id.startswith("resp_") and created.id not in proxy["upstream"].app[STORED]
    raw = await asyncio.to_thread(lambda: owner.responses.with_raw_response.retrieve(created.id))
    fetched = raw.parse()
    sent = proxy["upstream"].app[CALLS][-1]
    (upstream_id,) = [k for k in proxy["upstream"].app[STORED] if sent["path"] == f"/v1/responses/{k}"]
    assert (sent["headers"]["Authorization"], sent["body"]) == ("Bearer up-key", None)
    assert (fetched.id, fetched.output_text, fetched.usage.input_tokens) == (created.id, ANSWER, 1200)
    assert "x-litellm-response-cost" not in raw.headers
    other = openai.OpenAI(api_key=await asyncio.to_thread(new_key, proxy["url"]), base_url=proxy["url"], max_retries=0)
    calls = len(proxy["upstream"].app[CALLS])
    with pytest.raises(openai.NotFoundError) as caught:
        await asyncio.to_thread(lambda: other.responses.retrieve(created.id))
    assert caught.value.body["message"] == f"Response with id '{created.id}' not found."
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(lambda: owner.responses.retrieve(upstream_id))  # the upstream's own id names nothing here
    assert len(proxy["upstream"].app[CALLS]) == calls


async def test_streamed_ids_are_managed_and_continue_the_conversation(proxy: dict[str, Any], pricing_chain: TallyStack) -> None:
    """Every streamed event carries the managed id; previous_response_id goes upstream as the upstream id; the new response is priced."""
    client = proxy["client"]

    def stream() -> list[Any]:
        return list(client.responses.create(model="o4", input="hi", stream=True, extra_body=STEER))

    events = await asyncio.to_thread(stream)
    ids = {e.response.id for e in events if e.type in ("response.created", "response.completed")}
    (managed,) = ids
    assert managed not in proxy["upstream"].app[STORED]
    raw = await asyncio.to_thread(lambda: client.responses.with_raw_response.create(
        model="o4", input="and then?", previous_response_id=managed, extra_body=STEER))
    follow_up = raw.parse()
    sent = proxy["upstream"].app[CALLS][-1]
    assert sent["body"]["previous_response_id"] in proxy["upstream"].app[STORED]
    assert follow_up.previous_response_id == managed
    assert raw.headers["x-litellm-response-cost"] == "0.001023"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (O4_MINI_COST, 1200, 120)


async def test_azure_responses_are_retrieved_from_the_resource(proxy: dict[str, Any]) -> None:
    """An Azure deployment's stored response: GET /openai/responses/<upstream id>?api-version=...&include[]=..., with its api-key."""
    created = await asyncio.to_thread(lambda: proxy["client"].responses.create(model="azure-o4", input="hi", extra_body=STEER))
    fetched = await asyncio.to_thread(lambda: proxy["client"].responses.retrieve(created.id, include=["message.output_text.logprobs"]))
    sent = proxy["upstream"].app[CALLS][-1]
    assert sent["path"].startswith("/openai/responses/resp_")
    assert sent["path"].endswith("?api-version=2025-03-01-preview&include%5B%5D=message.output_text.logprobs")
    assert (sent["headers"]["api-key"], fetched.id, fetched.output_text) == ("az-key", created.id, ANSWER)
