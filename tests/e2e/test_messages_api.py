"""`/v1/messages` with the official anthropic SDK as the client: an Anthropic deployment gets the
Messages request natively, any other deployment a translated chat request; either way the call is
authenticated, priced exactly (cache creation and read tokens included) with the cost header and
the stream's message_delta cost, and lands as one spend log row of that cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest

from stack.fake_upstream import CALLS
from stack.fake_upstream import build_app as build_openai_fake
from tests.fixtures import gemini_upstream, vertex_upstream
from tests.fixtures.priced_calls import MASTER, proxy_for, serve, spend_of, url_of
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

CACHED = {"input_tokens": 20, "output_tokens": 80, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 30}
# claude-3-5-sonnet-20241022: 20 * 3e-06 + 100 * 3e-07 + 30 * 3.75e-06 + 80 * 1.5e-05
CLAUDE_CACHED_COST = Decimal("0.0014025")
# The fake's default Anthropic usage, 20 input and 80 output tokens: 20 * 3e-06 + 80 * 1.5e-05
CLAUDE_COST = Decimal("0.00126")
GEMINI_COST = Decimal("0.00039")  # as in test_provider_pricing.py
LLAMA3_COST = Decimal("0.0000074")  # groq/llama3-8b-8192 for the fake's 20 + 80 tokens
SYSTEM = [{"type": "text", "text": "You answer briefly.", "cache_control": {"type": "ephemeral"}}]


@pytest.fixture
async def stack(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[dict[str, Any]]:
    openai_fake = await serve(build_openai_fake())
    gemini = gemini_upstream.FakeGemini()
    gemini_server = await serve(gemini_upstream.build_app(gemini))
    vertex = vertex_upstream.FakeVertex()
    vertex_server = await serve(vertex_upstream.build_app(vertex))
    vertex.base_url = url_of(vertex_server)
    models = [
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": url_of(openai_fake),
                                                    "api_key": "ant-key"}},
        {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": url_of(gemini_server),
                                                   "api_key": gemini_upstream.API_KEY}},
        {"model_name": "llama3", "litellm_params": {"model": "groq/llama3-8b-8192", "api_base": url_of(openai_fake) + "/v1"}},
        {"model_name": "vertex-claude", "litellm_params": {"model": "vertex_ai/claude-sonnet-4@20250514", "api_base": url_of(vertex_server),
                                                           "vertex_project": vertex_upstream.PROJECT, "vertex_location": vertex_upstream.LOCATION,
                                                           "vertex_credentials": json.dumps(vertex.service_account())}},
    ]
    async with proxy_for(pricing_chain, models, tmp_path / "spool") as url:
        yield {"url": url, "client": anthropic.Anthropic(api_key=MASTER, base_url=url, max_retries=0),
               "upstream": openai_fake, "gemini": gemini, "vertex": vertex}
    await vertex_server.close()
    await gemini_server.close()
    await openai_fake.close()


async def test_native_anthropic_call_prices_cache_tokens_exactly(stack: dict[str, Any], pricing_chain: TallyStack) -> None:
    """x-api-key auth; the request reaches Anthropic as sent (cache_control kept); cost header = spend row = 0.0014025."""
    client = stack["client"]
    raw = await asyncio.to_thread(lambda: client.messages.with_raw_response.create(
        model="claude", max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": "hi"}],
        extra_body={"x_fake": {"anthropic_usage": CACHED}}))
    message = raw.parse()
    sent = stack["upstream"].app[CALLS][-1]
    assert sent["path"] == "/v1/messages"
    assert (sent["body"]["model"], sent["body"]["system"], sent["body"]["max_tokens"]) == ("claude-3-5-sonnet-20241022", SYSTEM, 100)
    assert sent["headers"]["x-api-key"] == "ant-key"
    assert message.content[0].text == "This is a fake answer from Tally's demo upstream."
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (20, 100, 30)
    assert raw.headers["x-litellm-response-cost"] == "0.0014025"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (CLAUDE_CACHED_COST, 150, 80)


async def test_native_anthropic_stream_passes_events_and_prices_message_delta(stack: dict[str, Any], pricing_chain: TallyStack) -> None:
    """A bearer key; Anthropic's events pass through; message_delta's usage carries the cost 0.0014025, as the spend row."""
    client = anthropic.Anthropic(auth_token=MASTER, base_url=stack["url"], max_retries=0)

    def stream() -> tuple[list[Any], str]:
        with client.messages.with_streaming_response.create(
                model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}], stream=True,
                extra_body={"x_fake": {"anthropic_usage": CACHED}}) as response:
            return list(response.parse()), response.headers["x-litellm-call-id"]

    events, request_id = await asyncio.to_thread(stream)
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]
    assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text.strip() == "This is a fake answer from Tally's demo upstream."
    assert Decimal(str(events[-2].usage.model_extra["cost"])) == CLAUDE_CACHED_COST
    assert await spend_of(pricing_chain, request_id) == (CLAUDE_CACHED_COST, 150, 80)


async def test_claude_on_vertex_gets_the_messages_request_itself(stack: dict[str, Any], pricing_chain: TallyStack) -> None:
    """Claude on Vertex AI: rawPredict with the caller's blocks (cache_control kept), no model, vertex anthropic_version; 0.0014025."""
    client = stack["client"]
    raw = await asyncio.to_thread(lambda: client.messages.with_raw_response.create(
        model="vertex-claude", max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": "hi"}],
        extra_body={"x_fake": {"anthropic_usage": CACHED}}))
    sent = stack["vertex"].calls[-1]
    assert sent["path"].endswith("/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict")
    assert (sent["body"]["system"], sent["body"]["anthropic_version"], "model" in sent["body"]) == (SYSTEM, "vertex-2023-10-16", False)
    assert sent["headers"]["Authorization"].startswith("Bearer ya29.fake-")
    assert raw.parse().usage.cache_creation_input_tokens == 30
    assert raw.headers["x-litellm-response-cost"] == "0.0014025"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (CLAUDE_CACHED_COST, 150, 80)


async def test_messages_to_a_gemini_deployment_are_translated_and_priced(stack: dict[str, Any], pricing_chain: TallyStack) -> None:
    """A Messages request to a Gemini model group goes out as generateContent and comes back a Message; 0.00039."""
    client = stack["client"]
    raw = await asyncio.to_thread(lambda: client.messages.with_raw_response.create(
        model="flash", max_tokens=100, system="be brief", messages=[{"role": "user", "content": "hi"}]))
    message = raw.parse()
    assert stack["gemini"].calls[-1]["body"]["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert (message.type, message.role, message.content[0].text) == ("message", "assistant", gemini_upstream.ANSWER)
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (200, 1000, 120)
    assert message.stop_reason == "end_turn"
    assert raw.headers["x-litellm-response-cost"] == "0.00039"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (GEMINI_COST, 1200, 120)


async def test_messages_stream_from_an_openai_compatible_deployment(stack: dict[str, Any], pricing_chain: TallyStack) -> None:
    """OpenAI chunks from a groq deployment come back as Anthropic events; the SDK assembles the message; cost 0.0000074."""
    client = stack["client"]

    def stream() -> tuple[Any, list[Any], str]:
        with client.messages.stream(model="llama3", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as events:
            seen = list(events)
            return events.get_final_message(), seen, events.response.headers["x-litellm-call-id"]

    message, events, request_id = await asyncio.to_thread(stream)
    assert message.content[0].text == "This is a fake answer from Tally's demo upstream."
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 80)
    delta = next(e for e in events if e.type == "message_delta")
    assert Decimal(str(delta.usage.model_extra["cost"])) == LLAMA3_COST
    assert await spend_of(pricing_chain, request_id) == (LLAMA3_COST, 20, 80)


async def test_wrong_key_is_refused_and_count_tokens_answers(stack: dict[str, Any]) -> None:
    """An unknown key is a 401 before anything is called; count_tokens answers for a non-Anthropic group."""
    refused = anthropic.Anthropic(api_key="sk-not-a-key", base_url=stack["url"], max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await asyncio.to_thread(lambda: refused.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}]))
    counted = await asyncio.to_thread(lambda: stack["client"].messages.count_tokens(
        model="flash", messages=[{"role": "user", "content": "hello there"}]))
    assert counted.input_tokens == 3  # estimated: "hello there" is 11 characters, four a token, rounded up


async def test_missing_max_tokens_is_a_400_and_nothing_is_called(stack: dict[str, Any]) -> None:
    """The Messages API requires max_tokens: without it, a 400 naming it, and no upstream call."""
    before = len(stack["upstream"].app[CALLS])
    with pytest.raises(anthropic.BadRequestError) as caught:
        await asyncio.to_thread(lambda: stack["client"].messages.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], max_tokens=0))
    assert "max_tokens" in str(caught.value)
    assert len(stack["upstream"].app[CALLS]) == before


async def test_virtual_key_is_budgeted_and_limited_to_its_models(stack: dict[str, Any]) -> None:
    """A virtual key (x-api-key) pays for its first call, is refused with budget_exceeded past max_budget, and 401 off its models."""
    admin = anthropic.Anthropic(api_key=MASTER, base_url=stack["url"], max_retries=0)
    created = await asyncio.to_thread(lambda: admin.post("/key/generate", body={"max_budget": 0.001, "models": ["claude"]}, cast_to=object))
    client = anthropic.Anthropic(api_key=created["key"], base_url=stack["url"], max_retries=0)

    def call(model: str) -> Any:
        return client.messages.with_raw_response.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                                        extra_body={"x_fake": {"anthropic_usage": CACHED}})

    first = await asyncio.to_thread(call, "claude")
    assert (first.headers["x-litellm-response-cost"], first.headers["x-litellm-key-spend"]) == ("0.0014025", "0.0014025")
    with pytest.raises(anthropic.BadRequestError) as refused:
        await asyncio.to_thread(call, "claude")
    assert refused.value.body["error"]["type"] == "budget_exceeded"
    with pytest.raises(anthropic.AuthenticationError) as off_models:  # LiteLLM's 401 for a model the key may not use
        await asyncio.to_thread(call, "flash")
    assert off_models.value.body["error"]["type"] == "key_model_access_denied"
