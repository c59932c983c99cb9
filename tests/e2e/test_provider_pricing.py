"""Each native provider, end to end: the openai SDK calls Tally, Tally calls the provider's fake in
its own wire protocol, and the cost header, the streamed usage chunk's cost and the spend log row
all equal the catalog's price for the usage the provider reported, to the last digit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from shared.pricing import CallParts, price_usage_event
from shared.events import TokenUsage
from tests.fixtures import bedrock_upstream, cohere_upstream, gemini_upstream, vertex_upstream
from tests.fixtures.priced_calls import MASTER, catalog, proxy_for, serve, spend_of, url_of
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

# gemini/gemini-2.5-flash, the fake's usage: 1200 prompt tokens of which 1000 cached, 80 candidates
# and 40 thoughts: 200 * 3e-07 + 1000 * 3e-08 + 80 * 2.5e-06 + 40 * 2.5e-06 (reasoning rate).
GEMINI_COST = Decimal("0.00039")
# vertex_ai/claude-sonnet-4@20250514, 20 input, 100 cache read, 30 cache write and 80 output tokens:
# 20 * 3e-06 + 100 * 3e-07 + 30 * 3.75e-06 + 80 * 1.5e-05
VERTEX_CLAUDE_COST = Decimal("0.0014025")


def catalog_price(model: str, provider: str, usage: TokenUsage) -> Decimal:
    """What the catalog charges a chat call of `model` for `usage` (the pricer's own function)."""
    parts = CallParts(model=model, usage=usage, call_type="acompletion", custom_llm_provider=provider)
    return price_usage_event(catalog(), parts).cost.total


async def streamed(client: openai.OpenAI, model: str, **extra: Any) -> tuple[list[Any], str]:
    """A streamed chat call asking for usage: its chunks and its call id."""
    def stream() -> tuple[list[Any], str]:
        with client.chat.completions.with_streaming_response.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True},
                **extra) as response:
            return list(response.parse()), response.headers["x-litellm-call-id"]

    return await asyncio.to_thread(stream)


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
    assert catalog_price("gemini/gemini-2.5-flash", "gemini", usage) == GEMINI_COST


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

    chunks, request_id = await streamed(client, "flash")
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


# bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0 (and us.anthropic.claude-3-7-sonnet, same rates), the
# fake's usage: 20 fresh input, 1000 cache read, 150 cache write and 80 output tokens:
# 20 * 3e-06 + 1000 * 3e-07 + 150 * 3.75e-06 + 80 * 1.5e-05.
BEDROCK_COST = Decimal("0.0021225")
AWS_ENV = {"AWS_ACCESS_KEY_ID": bedrock_upstream.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": bedrock_upstream.SECRET_KEY}


@pytest.fixture
async def bedrock(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[tuple[bedrock_upstream.FakeBedrock, openai.OpenAI]]:
    fake = bedrock_upstream.FakeBedrock()
    upstream = await serve(bedrock_upstream.build_app(fake))
    signed = {"api_base": url_of(upstream), "aws_region_name": bedrock_upstream.REGION,
              "aws_session_token": bedrock_upstream.SESSION_TOKEN}
    models = [
        {"model_name": "sonnet", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", **signed}},
        {"model_name": "sonnet-37", "litellm_params": {"model": "bedrock/converse/us.anthropic.claude-3-7-sonnet-20250219-v1:0", **signed}},
        {"model_name": "wrong-secret", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", **signed,
                                                          "aws_access_key_id": bedrock_upstream.ACCESS_KEY,
                                                          "aws_secret_access_key": "not-the-secret"}},
        {"model_name": "titan", "litellm_params": {"model": "bedrock/amazon.titan-embed-text-v2:0", **signed}},
        {"model_name": "sonnet-api-key", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
                                                            "api_base": url_of(upstream), "api_key": bedrock_upstream.API_KEY}},
    ]
    async with proxy_for(pricing_chain, models, tmp_path / "spool", env=AWS_ENV) as url:
        yield fake, openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0)
    await upstream.close()


def test_bedrock_catalog_price_is_the_hand_computed_one() -> None:
    """The expected figure is the catalog's: shared.pricing gives 0.0021225 for the fake's usage."""
    usage = TokenUsage(prompt_tokens=1170, completion_tokens=80, cache_read_input_tokens=1000, cache_creation_input_tokens=150)
    for model in ("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock/converse/us.anthropic.claude-3-7-sonnet-20250219-v1:0"):
        assert catalog_price(model, "bedrock", usage) == BEDROCK_COST


async def test_bedrock_converse_is_signed_and_priced_exactly(bedrock: Any, pricing_chain: TallyStack) -> None:
    """Converse with a SigV4 signature the fake verifies; cache read/write tokens priced: header = spend row = 0.0021225."""
    fake, client = bedrock
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="sonnet", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], max_tokens=300))
    completion = raw.parse()
    sent = fake.calls[-1]
    assert sent["path"] == "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert sent["headers"]["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={bedrock_upstream.ACCESS_KEY}/")
    assert sent["body"] == {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "be brief"}],
                            "inferenceConfig": {"maxTokens": 300}}
    assert completion.choices[0].message.content == bedrock_upstream.ANSWER
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1170, 80)
    assert raw.headers["x-litellm-response-cost"] == "0.0021225"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (BEDROCK_COST, 1170, 80)


async def test_bedrock_converse_stream_event_frames_are_priced_exactly(bedrock: Any, pricing_chain: TallyStack) -> None:
    """bedrock/converse/: ConverseStream's event-stream frames become OpenAI chunks; the metadata usage costs 0.0021225."""
    fake, client = bedrock

    chunks, request_id = await streamed(client, "sonnet-37")
    assert fake.calls[-1]["path"] == "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == bedrock_upstream.ANSWER
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1170, 80)
    assert str(chunks[-1].usage.model_extra["cost"]) == "0.0021225"
    assert await spend_of(pricing_chain, request_id) == (BEDROCK_COST, 1170, 80)


async def test_bedrock_titan_embedding_is_signed_and_priced_on_its_token_count(bedrock: Any, pricing_chain: TallyStack) -> None:
    """InvokeModel for Titan: inputText and dimensions; inputTextTokenCount 5 at 2e-08 = 0.0000001, as the spend row."""
    fake, client = bedrock
    raw = await asyncio.to_thread(lambda: client.embeddings.with_raw_response.create(model="titan", input="a small cat", dimensions=256))
    sent = fake.calls[-1]
    assert (sent["path"], sent["body"]) == ("/model/amazon.titan-embed-text-v2%3A0/invoke", {"inputText": "a small cat", "dimensions": 256})
    assert len(raw.parse().data[0].embedding) == 256
    assert raw.headers["x-litellm-response-cost"] == "0.0000001"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (Decimal("0.0000001"), 5, 0)
    with pytest.raises(openai.BadRequestError, match="one text per request"):
        await asyncio.to_thread(lambda: client.embeddings.create(model="titan", input=["a", "b"]))


async def test_bedrock_wrong_secret_is_refused_by_the_signature_check(bedrock: Any) -> None:
    """A signature made with the wrong secret is a 403 InvalidSignature from the fake, passed on with its message."""
    _, client = bedrock
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await asyncio.to_thread(lambda: client.chat.completions.create(model="wrong-secret", messages=[{"role": "user", "content": "hi"}]))
    assert "The request signature we calculated does not match" in caught.value.body["message"]


async def test_bedrock_api_key_is_sent_as_a_bearer_token(bedrock: Any) -> None:
    """With api_key (a Bedrock API key) the request carries it as a bearer token and is not SigV4-signed."""
    fake, client = bedrock
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="sonnet-api-key", messages=[{"role": "user", "content": "hi"}]))
    assert fake.calls[-1]["headers"]["Authorization"] == f"Bearer {bedrock_upstream.API_KEY}"
    assert raw.headers["x-litellm-response-cost"] == "0.0021225"


async def test_bedrock_exception_mid_stream_ends_the_stream_after_what_came_before(bedrock: Any) -> None:
    """A throttlingException frame mid-stream ends the stream; the client has the text sent before it."""
    fake, client = bedrock
    fake.stream_exception = "throttlingException"

    def stream() -> list[Any]:
        return list(client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "hi"}], stream=True))

    chunks = await asyncio.to_thread(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "This is a "


@pytest.fixture
async def vertex(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[tuple[vertex_upstream.FakeVertex, openai.OpenAI, str]]:
    fake = vertex_upstream.FakeVertex()
    upstream = await serve(vertex_upstream.build_app(fake))
    fake.base_url = url_of(upstream)
    credentials = tmp_path / "service-account.json"
    credentials.write_text(json.dumps(fake.service_account()))
    wrong = tmp_path / "other-account.json"
    wrong.write_text(json.dumps({**fake.service_account(), "private_key": vertex_upstream.FakeVertex().keys[0]}))
    common = {"api_base": url_of(upstream), "vertex_project": vertex_upstream.PROJECT, "vertex_location": vertex_upstream.LOCATION}
    models = [
        {"model_name": "vertex-flash", "litellm_params": {"model": "vertex_ai/gemini-2.5-flash", **common, "vertex_credentials": str(credentials)}},
        {"model_name": "vertex-claude", "litellm_params": {"model": "vertex_ai/claude-sonnet-4@20250514", **common,
                                                           "vertex_credentials": str(credentials)}},
        {"model_name": "vertex-wrong-key", "litellm_params": {"model": "vertex_ai/gemini-2.5-flash", **common, "vertex_credentials": str(wrong)}},
    ]
    async with proxy_for(pricing_chain, models, tmp_path / "spool") as url:
        yield fake, openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0), url
    await upstream.close()


def test_vertex_catalog_prices_are_the_hand_computed_ones() -> None:
    """vertex_ai/gemini-2.5-flash prices the Gemini fake's usage at 0.00039; vertex_ai/claude-sonnet-4 the cached usage at 0.0014025."""
    gemini = TokenUsage(prompt_tokens=1200, completion_tokens=120, cache_read_input_tokens=1000, reasoning_tokens=40)
    claude = TokenUsage(prompt_tokens=150, completion_tokens=80, cache_read_input_tokens=100, cache_creation_input_tokens=30)
    for model, usage, cost in (("vertex_ai/gemini-2.5-flash", gemini, GEMINI_COST), ("vertex_ai/claude-sonnet-4@20250514", claude, VERTEX_CLAUDE_COST)):
        assert catalog_price(model, "vertex_ai", usage) == cost


async def test_vertex_gemini_uses_the_service_account_token_and_is_priced_exactly(vertex: Any, pricing_chain: TallyStack) -> None:
    """One token from the token endpoint (JWT verified) serves plain and streamed calls; both cost 0.00039 as their rows."""
    fake, client, _ = vertex
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="vertex-flash", messages=[{"role": "user", "content": "hi"}]))
    sent = fake.calls[-1]
    assert sent["path"] == f"/v1/projects/{vertex_upstream.PROJECT}/locations/{vertex_upstream.LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["Authorization"] == "Bearer ya29.fake-0"
    assert raw.headers["x-litellm-response-cost"] == "0.00039"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (GEMINI_COST, 1200, 120)

    chunks, request_id = await streamed(client, "vertex-flash")
    assert fake.calls[-1]["query"] == {"alt": "sse"}
    assert str(chunks[-1].usage.model_extra["cost"]) == "0.00039"
    assert await spend_of(pricing_chain, request_id) == (GEMINI_COST, 1200, 120)
    assert fake.token_requests == 1


async def test_vertex_claude_goes_to_raw_predict_and_cache_tokens_are_priced(vertex: Any, pricing_chain: TallyStack) -> None:
    """Claude on Vertex: rawPredict with anthropic_version and no model; cached usage costs 0.0014025, plain and streamed."""
    fake, client, _ = vertex
    steer = {"x_fake": {"anthropic_usage": {"input_tokens": 20, "output_tokens": 80, "cache_read_input_tokens": 100,
                                            "cache_creation_input_tokens": 30}}}
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="vertex-claude", messages=[{"role": "user", "content": "hi"}], extra_body=steer))
    sent = fake.calls[-1]
    assert sent["path"].endswith("/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict")
    assert (sent["body"]["anthropic_version"], "model" in sent["body"]) == ("vertex-2023-10-16", False)
    assert raw.parse().usage.prompt_tokens == 150
    assert raw.headers["x-litellm-response-cost"] == "0.0014025"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (VERTEX_CLAUDE_COST, 150, 80)

    chunks, request_id = await streamed(client, "vertex-claude", extra_body=steer)
    assert fake.calls[-1]["path"].endswith(":streamRawPredict")
    assert str(chunks[-1].usage.model_extra["cost"]) == "0.0014025"
    assert await spend_of(pricing_chain, request_id) == (VERTEX_CLAUDE_COST, 150, 80)


async def test_vertex_token_refused_is_a_502_naming_it(vertex: Any) -> None:
    """A JWT signed with a key the account does not have is refused by the token endpoint: 502, nothing sent to the model."""
    fake, client, _ = vertex
    with pytest.raises(openai.APIStatusError) as caught:
        await asyncio.to_thread(lambda: client.chat.completions.create(model="vertex-wrong-key", messages=[{"role": "user", "content": "hi"}]))
    assert caught.value.status_code == 502
    assert "could not get a Vertex AI access token" in caught.value.body["message"]
    assert "Invalid JWT Signature" in caught.value.body["message"]
    assert fake.calls == []


# cohere/command-r-08-2024: usage.tokens 25 input and 80 output: 25 * 1.5e-07 + 80 * 6e-07
COHERE_COST = Decimal("0.00005175")


@pytest.fixture
async def cohere(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[tuple[cohere_upstream.FakeCohere, openai.OpenAI]]:
    fake = cohere_upstream.FakeCohere()
    upstream = await serve(cohere_upstream.build_app(fake))
    models = [{"model_name": "command-r", "litellm_params": {"model": "cohere/command-r-08-2024", "api_base": url_of(upstream)}},
              {"model_name": "cohere-embed", "litellm_params": {"model": "cohere/embed-english-v3.0", "api_base": url_of(upstream)}}]
    async with proxy_for(pricing_chain, models, tmp_path / "spool", env={"COHERE_API_KEY": cohere_upstream.API_KEY}) as url:
        yield fake, openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0)
    await upstream.close()


def test_cohere_catalog_price_is_the_hand_computed_one() -> None:
    """The expected figure is the catalog's (cohere_chat entries): 0.00005175 for 25 input and 80 output tokens."""
    assert catalog_price("cohere/command-r-08-2024", "cohere", TokenUsage(prompt_tokens=25, completion_tokens=80)) == COHERE_COST


async def test_cohere_v2_chat_plain_and_streamed_is_priced_exactly(cohere: Any, pricing_chain: TallyStack) -> None:
    """/v2/chat with the key from COHERE_API_KEY; usage.tokens priced: 0.00005175 in header, last chunk and spend rows."""
    fake, client = cohere
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="command-r", messages=[{"role": "user", "content": "hi"}], top_p=0.5, stop="END"))
    sent = fake.calls[-1]
    assert (sent["path"], sent["headers"]["Authorization"]) == ("/v2/chat", f"Bearer {cohere_upstream.API_KEY}")
    assert sent["body"] == {"model": "command-r-08-2024", "messages": [{"role": "user", "content": "hi"}], "p": 0.5, "stop_sequences": ["END"]}
    assert raw.parse().choices[0].message.content == cohere_upstream.ANSWER
    assert raw.headers["x-litellm-response-cost"] == "0.00005175"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (COHERE_COST, 25, 80)
    chunks, request_id = await streamed(client, "command-r")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == cohere_upstream.ANSWER
    assert Decimal(str(chunks[-1].usage.model_extra["cost"])) == COHERE_COST
    assert await spend_of(pricing_chain, request_id) == (COHERE_COST, 25, 80)


async def test_cohere_embeddings_are_priced_on_billed_units(cohere: Any, pricing_chain: TallyStack) -> None:
    """/v2/embed with input_type search_document; meta.billed_units.input_tokens 8 at 1e-07 = 0.0000008."""
    fake, client = cohere
    raw = await asyncio.to_thread(lambda: client.embeddings.with_raw_response.create(model="cohere-embed", input=["a cat", "a dog"]))
    assert fake.calls[-1]["body"] == {"model": "embed-english-v3.0", "texts": ["a cat", "a dog"], "input_type": "search_document",
                                      "embedding_types": ["float"]}
    assert [len(e.embedding) for e in raw.parse().data] == [4, 4]
    assert raw.headers["x-litellm-response-cost"] == "0.0000008"
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (Decimal("0.0000008"), 8, 0)
