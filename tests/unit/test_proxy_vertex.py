"""Vertex AI: service-account credentials, token refresh ahead of expiry, and the two publishers' wires."""

import json
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from services.proxy.errors import ConfigurationError, InvalidRequest, UpstreamError
from services.proxy.providers.google_auth import AccessTokens, service_account_info
from services.proxy.providers.vertex import VertexAnthropicWire, VertexEmbeddingWire, VertexGeminiWire, vertex_wire
from shared.config import LiteLLMParams
from tests.fixtures.vertex_upstream import FakeVertex

ACCOUNT = FakeVertex(base_url="http://127.0.0.1:9").service_account()


def test_credentials_come_from_json_text_or_the_environment_and_must_be_a_service_account():
    """vertex_credentials may be the JSON itself; without it GOOGLE_APPLICATION_CREDENTIALS; else a clear start-up error."""
    assert service_account_info(json.dumps(ACCOUNT), {}, "here")["client_email"] == ACCOUNT["client_email"]
    with pytest.raises(ConfigurationError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        service_account_info(None, {}, "here")
    with pytest.raises(ConfigurationError, match="service_account"):
        service_account_info('{"type": "authorized_user"}', {}, "here")


def test_publishers_and_locations_pick_the_url():
    """claude-* goes to publisher anthropic's rawPredict; location global uses the global host; project from the account."""
    params = LiteLLMParams(model="vertex_ai/claude-sonnet-4@20250514", vertex_credentials=json.dumps(ACCOUNT), vertex_location="global")
    wire = vertex_wire("claude-sonnet-4@20250514", params, {}, "here")
    assert isinstance(wire, VertexAnthropicWire)
    assert wire.urls["acompletion"] == ("https://aiplatform.googleapis.com/v1/projects/tally-test/locations/global/"
                                        "publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict")
    path, body = wire.request("acompletion", {"messages": [{"role": "user", "content": "hi"}], "stream": True}, True)
    assert path.endswith(":streamRawPredict")
    assert orjson.loads(body) == {"anthropic_version": "vertex-2023-10-16", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                  "max_tokens": 4096, "stream": True}
    gemini = vertex_wire("gemini-2.5-flash", LiteLLMParams(model="vertex_ai/gemini-2.5-flash", vertex_credentials=json.dumps(ACCOUNT)), {}, "here")
    assert isinstance(gemini, VertexGeminiWire)
    assert gemini.stream_path == "/v1/projects/tally-test/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


class _Credentials:
    """google-auth credentials as AccessTokens sees them: token, expiry, refresh(request)."""

    def __init__(self, expires_in: timedelta | None) -> None:
        self.token = "old" if expires_in is not None else None
        self.expiry = None if expires_in is None else (datetime.now(timezone.utc) + expires_in).replace(tzinfo=None)
        self.refreshed = 0

    def refresh(self, request: object) -> None:
        self.refreshed += 1
        self.token, self.expiry = f"new-{self.refreshed}", (datetime.now(timezone.utc) + timedelta(hours=1)).replace(tzinfo=None)


@pytest.mark.parametrize(("expires_in", "token_after_ready"), [(None, "new-1"), (timedelta(seconds=10), "new-1"),
                                                               (timedelta(minutes=2), "old"), (timedelta(minutes=30), "old")])
async def test_a_token_is_fetched_when_missing_and_refreshed_ahead_of_expiry(expires_in, token_after_ready):
    """No token or one about to expire: fetched before the call. Under 5 minutes left: the call uses it, a refresh runs meanwhile."""
    tokens = AccessTokens(ACCOUNT, "here")
    tokens.credentials = _Credentials(expires_in)
    await tokens.ready()
    assert tokens.credentials.token == token_after_ready
    if tokens._refreshing is not None:
        await tokens._refreshing
    assert tokens.credentials.refreshed == (0 if expires_in == timedelta(minutes=30) else 1)


def test_embedding_models_go_to_predict_and_count_statistics_tokens():
    """text-embedding-* is a :predict deployment: one instance per text, dimensions as outputDimensionality, usage the token_count sum."""
    wire = vertex_wire("text-embedding-004", LiteLLMParams(model="vertex_ai/text-embedding-004", vertex_credentials=json.dumps(ACCOUNT)), {}, "here")
    assert isinstance(wire, VertexEmbeddingWire) and wire.call_types == frozenset({"aembedding"})
    path, body = wire.request("aembedding", {"input": ["a", "b c"], "dimensions": 8, "task_type": "RETRIEVAL_QUERY"}, False)
    assert path == "/v1/projects/tally-test/locations/us-central1/publishers/google/models/text-embedding-004:predict"
    assert orjson.loads(body) == {"instances": [{"task_type": "RETRIEVAL_QUERY", "content": "a"}, {"task_type": "RETRIEVAL_QUERY", "content": "b c"}],
                                  "parameters": {"outputDimensionality": 8}}
    answer = wire.response("aembedding", {}, {"predictions": [
        {"embeddings": {"values": [0.5], "statistics": {"token_count": 2, "truncated": False}}},
        {"embeddings": {"values": [0.25], "statistics": {"token_count": 3}}}, "junk", {"embeddings": {"statistics": {"token_count": -5}}}]})
    assert answer["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert [d["embedding"] for d in answer["data"]] == [[0.5], [0.25], []]
    with pytest.raises(InvalidRequest, match="list of strings"):
        wire.request("aembedding", {"input": [1, 2]}, False)
    with pytest.raises(UpstreamError, match="do not serve chat"):
        wire.request("acompletion", {"messages": []}, False)
