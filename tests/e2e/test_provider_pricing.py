"""Each native provider, end to end: the openai SDK calls Tally, Tally calls the provider's fake in
its own wire protocol, and the cost header, the streamed usage chunk's cost and the spend log row
all equal the catalog's price for the usage the provider reported, to the last digit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from shared.pricing import CallParts, price_usage_event
from shared.events import TokenUsage
from tests.fixtures import gemini_upstream
from tests.fixtures.priced_calls import CATALOG, MASTER, pricing_chain, proxy_for, serve, spend_of, url_of  # noqa: F401 (fixture)
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

# gemini/gemini-2.5-flash, the fake's usage: 1200 prompt tokens of which 1000 cached, 80 candidates
# and 40 thoughts: 200 * 3e-07 + 1000 * 3e-08 + 80 * 2.5e-06 + 40 * 2.5e-06 (reasoning rate).
GEMINI_COST = Decimal("0.00039")


@pytest.fixture
async def gemini(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[tuple[gemini_upstream.FakeGemini, openai.OpenAI]]:
    fake = gemini_upstream.FakeGemini()
    upstream = await serve(gemini_upstream.build_app(fake))
    models = [
        {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": url_of(upstream),
                                                   "api_key": "os.environ/GEMINI_API_KEY"}},
        {"model_name": "gemini-embed", "litellm_params": {"model": "gemini/gemini-embedding-001", "api_base": url_of(upstream)}},
    ]
    async with proxy_for(pricing_chain, models, tmp_path / "spool", env={"GEMINI_API_KEY": gemini_upstream.API_KEY}) as url:
        yield fake, openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0)
    await upstream.close()


def test_gemini_catalog_price_is_the_hand_computed_one() -> None:
    """The expected figure is the catalog's: shared.pricing gives 0.00039 for the fake's usage."""
    usage = TokenUsage(prompt_tokens=1200, completion_tokens=120, cache_read_input_tokens=1000, reasoning_tokens=40)
    cost = price_usage_event(CATALOG, CallParts(model="gemini/gemini-2.5-flash", usage=usage, call_type="acompletion",
                                                custom_llm_provider="gemini")).cost.total
    assert cost == GEMINI_COST


async def test_gemini_chat_is_priced_exactly_in_header_and_spend_log(gemini: Any, pricing_chain: TallyStack) -> None:
    """generateContent with the key header; cached and thinking tokens priced; header = spend row = 0.00039."""
    fake, client = gemini
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="flash", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], max_tokens=200))
    completion = raw.parse()
    sent = fake.calls[-1]
    assert (sent["path"], sent["headers"]["x-goog-api-key"]) == ("/v1beta/models/gemini-2.5-flash:generateContent", gemini_upstream.API_KEY)
    assert sent["body"] == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                            "systemInstruction": {"parts": [{"text": "be brief"}]}, "generationConfig": {"maxOutputTokens": 200}}
    assert completion.choices[0].message.content == gemini_upstream.ANSWER
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1200, 120)
    assert completion.usage.prompt_tokens_details.cached_tokens == 1000
    assert completion.usage.completion_tokens_details.reasoning_tokens == 40
    assert raw.headers["x-litellm-response-cost"] == "0.00039"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (GEMINI_COST, 1200, 120)


async def test_gemini_stream_is_priced_exactly_in_its_last_chunk_and_spend_log(gemini: Any, pricing_chain: TallyStack) -> None:
    """streamGenerateContent?alt=sse becomes OpenAI chunks; the last event's usage wins: cost 0.00039 in chunk and row."""
    fake, client = gemini

    def stream() -> tuple[list[Any], str]:
        with client.chat.completions.with_streaming_response.create(
                model="flash", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}) as response:
            return list(response.parse()), response.headers["x-litellm-call-id"]

    chunks, request_id = await asyncio.to_thread(stream)
    assert fake.calls[-1]["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake.calls[-1]["query"] == {"alt": "sse"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == gemini_upstream.ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1200, 120)
    assert str(chunks[-1].usage.model_extra["cost"]) == "0.00039"
    assert await spend_of(pricing_chain, request_id) == (GEMINI_COST, 1200, 120)


async def test_gemini_embeddings_go_to_batch_embed_contents(gemini: Any, pricing_chain: TallyStack) -> None:
    """Two inputs become two batchEmbedContents requests; Gemini reports no tokens: 2 + 2 estimated, at 1.5e-07."""
    fake, client = gemini
    raw = await asyncio.to_thread(lambda: client.embeddings.with_raw_response.create(
        model="gemini-embed", input=["a cat", "a dog"], dimensions=2))
    embeddings = raw.parse()
    assert fake.calls[-1]["body"] == {"requests": [
        {"model": "models/gemini-embedding-001", "outputDimensionality": 2, "content": {"parts": [{"text": "a cat"}]}},
        {"model": "models/gemini-embedding-001", "outputDimensionality": 2, "content": {"parts": [{"text": "a dog"}]}}]}
    assert [e.embedding for e in embeddings.data] == [[0.25, 0.25], [0.5, 0.5]]
    assert raw.headers["x-litellm-response-cost"] == "0.0000006"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (Decimal("0.0000006"), 4, 0)


async def test_gemini_error_keeps_its_status_and_message(gemini: Any) -> None:
    """A 429 RESOURCE_EXHAUSTED answer reaches the client as 429 with Google's message, in OpenAI's shape."""
    fake, client = gemini
    fake.fail_next = (429, "Resource has been exhausted (e.g. check quota).")
    with pytest.raises(openai.RateLimitError) as caught:
        await asyncio.to_thread(lambda: client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "hi"}]))
    assert caught.value.status_code == 429
    assert caught.value.body["message"].endswith("Resource has been exhausted (e.g. check quota).")
    assert caught.value.body["type"] == "RESOURCE_EXHAUSTED"
