"""Embeddings on Vertex AI (`:predict`) and on Bedrock (Cohere Embed through InvokeModel), end to
end: the openai SDK calls Tally, Tally calls the provider's fake in its own wire protocol, and the
cost header and the spend log row equal the catalog's price for the tokens the provider reported."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from shared.events import TokenUsage
from tests.e2e.test_provider_pricing import catalog_price
from tests.fixtures import bedrock_upstream, vertex_upstream
from tests.fixtures.priced_calls import MASTER, proxy_for, serve, spend_of, url_of
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

TEXTS = ["a small cat", "the quick brown fox"]  # the fakes count 4 and 5 tokens (words plus one)
# 9 tokens at 1e-07 (vertex_ai text-embedding-004; bedrock cohere.embed-english-v3)
NINE_TOKENS_COST = Decimal("0.0000009")


@pytest.fixture
async def proxy(tmp_path: Path, pricing_chain: TallyStack) -> AsyncIterator[dict[str, Any]]:
    vertex = vertex_upstream.FakeVertex()
    vertex_server = await serve(vertex_upstream.build_app(vertex))
    vertex.base_url = url_of(vertex_server)
    credentials = tmp_path / "service-account.json"
    credentials.write_text(json.dumps(vertex.service_account()))
    bedrock = bedrock_upstream.FakeBedrock()
    bedrock_server = await serve(bedrock_upstream.build_app(bedrock))
    signed = {"api_base": url_of(bedrock_server), "aws_region_name": bedrock_upstream.REGION,
              "aws_session_token": bedrock_upstream.SESSION_TOKEN}
    models = [
        {"model_name": "vertex-embed", "litellm_params": {
            "model": "vertex_ai/text-embedding-004", "api_base": url_of(vertex_server), "vertex_project": vertex_upstream.PROJECT,
            "vertex_location": vertex_upstream.LOCATION, "vertex_credentials": str(credentials)}},
        {"model_name": "cohere-embed", "litellm_params": {"model": "bedrock/cohere.embed-english-v3", **signed}},
    ]
    env = {"AWS_ACCESS_KEY_ID": bedrock_upstream.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": bedrock_upstream.SECRET_KEY}
    async with proxy_for(pricing_chain, models, tmp_path / "spool", env=env) as url:
        yield {"client": openai.OpenAI(api_key=MASTER, base_url=url, max_retries=0), "vertex": vertex, "bedrock": bedrock}
    await vertex_server.close()
    await bedrock_server.close()


def test_the_catalog_prices_nine_tokens_at_the_hand_computed_figure() -> None:
    """The expected figure is the catalog's: 9 tokens of either model cost 0.0000009."""
    for model, provider in (("vertex_ai/text-embedding-004", "vertex_ai"), ("bedrock/cohere.embed-english-v3", "bedrock")):
        assert catalog_price(model, provider, TokenUsage(prompt_tokens=9)) == NINE_TOKENS_COST


async def test_vertex_embeddings_go_to_predict_priced_on_statistics_token_count(proxy: dict[str, Any], pricing_chain: TallyStack) -> None:
    """Two texts in one :predict with the service account's token; token_count 4 + 5 = 9 tokens: header = row = 0.0000009."""
    client = proxy["client"]
    raw = await asyncio.to_thread(lambda: client.embeddings.with_raw_response.create(model="vertex-embed", input=TEXTS, dimensions=256))
    sent = proxy["vertex"].calls[-1]
    assert sent["path"] == (f"/v1/projects/{vertex_upstream.PROJECT}/locations/{vertex_upstream.LOCATION}"
                            "/publishers/google/models/text-embedding-004:predict")
    assert sent["body"] == {"instances": [{"content": t} for t in TEXTS], "parameters": {"outputDimensionality": 256}}
    assert sent["headers"]["Authorization"].startswith("Bearer ya29.fake-")
    answer = raw.parse()
    assert [len(d.embedding) for d in answer.data] == [256, 256]
    assert (answer.usage.prompt_tokens, raw.headers["x-litellm-response-cost"]) == (9, "0.0000009")
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (NINE_TOKENS_COST, 9, 0)


async def test_bedrock_cohere_embeds_several_texts_priced_on_the_reported_token_count(proxy: dict[str, Any],
                                                                                     pricing_chain: TallyStack) -> None:
    """Both texts in one signed InvokeModel (Cohere's body, no model); the 9 tokens Bedrock reports cost 0.0000009, as the row."""
    client = proxy["client"]
    raw = await asyncio.to_thread(lambda: client.embeddings.with_raw_response.create(model="cohere-embed", input=TEXTS))
    sent = proxy["bedrock"].calls[-1]
    assert sent["path"] == "/model/cohere.embed-english-v3/invoke"
    assert sent["headers"]["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={bedrock_upstream.ACCESS_KEY}/")
    assert sent["body"] == {"texts": TEXTS, "input_type": "search_document", "embedding_types": ["float"]}
    answer = raw.parse()
    assert [len(d.embedding) for d in answer.data] == [1024, 1024]
    assert (answer.usage.prompt_tokens, raw.headers["x-litellm-response-cost"]) == (9, "0.0000009")
    assert await spend_of(pricing_chain, raw.headers["x-litellm-call-id"]) == (NINE_TOKENS_COST, 9, 0)


async def test_embedding_models_refuse_chat_and_bad_input_with_a_400(proxy: dict[str, Any]) -> None:
    """Chat on an embedding deployment, or input that is not text, is a 400 before anything is sent."""
    client = proxy["client"]
    calls = (len(proxy["vertex"].calls), len(proxy["bedrock"].calls))
    for model in ("vertex-embed", "cohere-embed"):
        with pytest.raises(openai.BadRequestError, match="do not serve chat completions"):
            await asyncio.to_thread(lambda: client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]))
        with pytest.raises(openai.BadRequestError, match="string or a list of strings"):
            await asyncio.to_thread(lambda: client.embeddings.create(model=model, input=[[1, 2, 3]]))
    assert (len(proxy["vertex"].calls), len(proxy["bedrock"].calls)) == calls
