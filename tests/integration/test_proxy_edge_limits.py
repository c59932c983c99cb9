"""Hostile calls through the real proxy app, fake upstream and real Kafka: each is a 400 naming the
limit, the upstream is never called, and no usage event is written; embeddings and images asked
to stream are priced as plain calls; upstream text Postgres refuses is repaired before it is
recorded; an unknown model's error names only the caller's models."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from services.proxy.calls.limits import EdgeLimits
from shared import topics
from shared.events import EntityChanged, encode
from shared.kafka import idempotent_producer
from shared.keys import hash_key
from shared.settings import CommonSettings
from stack.fake_upstream import CALLS
from tests.integration.test_proxy_relay import (  # noqa: F401  (kafka, upstream, start_proxy, proxy are fixtures)
    MASTER, ProxyFactory, base_url, event_for, kafka, proxy, start_proxy, upstream, usage_events,
)

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "hi"}]
NUL = "contains a NUL character (\\u0000), which Postgres cannot store"


async def post(proxy: TestServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(proxy) + path, data=orjson.dumps(body), headers={**AUTH, **(headers or {})}) as response:
            return response.status, await response.json()


async def raw_post(proxy: TestServer, path: str, body: bytes, header_lines: bytes) -> tuple[int, dict[str, Any]]:
    """A request written byte for byte, for header bytes no HTTP client sends (invalid UTF-8)."""
    url = urlsplit(base_url(proxy))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n"
                     + f"Authorization: Bearer {MASTER}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
                     + header_lines + b"\r\n" + body)
        answer = await reader.read()
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(payload)


async def only_this_event_follows(proxy: TestServer, kafka: CommonSettings) -> None:
    """An ordinary call made now is the only usage event on the topic: nothing before it was recorded."""
    status, _ = await post(proxy, "/chat/completions", {"model": "llama3", "messages": HI, "user": "after"})
    assert status == 200
    records = await usage_events(kafka, lambda seen: any(e.end_user == "after" for _, e in seen))
    assert [e.end_user for _, e in records] == ["after"]


QUOTES = '"' * 300_000
HOSTILE = [
    ("the issue's call", {"mock_response": "x", "user": "a\x00b", "metadata": {"p": QUOTES}}, {}, f"user {NUL}", "user"),
    ("300,000 quotes of metadata", {"metadata": {"p": QUOTES}}, {},
     "metadata is 600,008 bytes as recorded (spend_logs_metadata included); the limit is 65,536 (TALLY_MAX_METADATA_BYTES)", "metadata"),
    ("80,000 tags", {"metadata": {"tags": [f"jobID:{i}" for i in range(80_000)]}}, {},
     "the call has 80,000 distinct tags (metadata.tags, tags, x-litellm-tags and the key's); the limit is 64 (TALLY_MAX_TAGS)",
     "metadata.tags"),
    ("a long tag", {"tags": ["t" * 257]}, {}, f"tag {'t' * 40!r}... is 257 characters; the limit is 256 (TALLY_MAX_TAG_CHARS)",
     "metadata.tags"),
    ("a non-string tag", {"metadata": {"tags": ["ok", 7]}}, {}, "metadata.tags must be a list of strings", "metadata.tags"),
    ("a long user", {"user": "u" * 1025}, {}, "user is 1,025 characters; the limit is 1,024 (TALLY_MAX_IDENTIFIER_CHARS)", "user"),
    ("a long session id", {"litellm_session_id": "s" * 1025}, {},
     "session_id is 1,025 characters; the limit is 1,024 (TALLY_MAX_IDENTIFIER_CHARS)", "session_id"),
    ("NUL deep in spend_logs_metadata", {"metadata": {"spend_logs_metadata": {"a": [{"b": "\x00"}]}}}, {},
     f"metadata.spend_logs_metadata.a[0].b {NUL}", "metadata.spend_logs_metadata"),
    ("NUL in a metadata key", {"metadata": {"k\x00": 1}}, {}, f"the key metadata.'k\\x00' {NUL}", "metadata"),
    ("NUL in the spend-logs header", {}, {"x-litellm-spend-logs-metadata": '{"a": "\\u0000"}'},
     f"metadata.spend_logs_metadata.a {NUL}", "metadata.spend_logs_metadata"),
    ("metadata 40 levels deep", {"metadata": orjson.loads(b'{"a":' * 40 + b"1" + b"}" * 40)}, {},
     "metadata" + ".a" * 32 + " is nested more than 32 levels deep; the limit is 32 (TALLY_MAX_METADATA_DEPTH)", "metadata"),
]


@pytest.mark.parametrize("name, extra, headers, message, param", HOSTILE, ids=[case[0] for case in HOSTILE])
async def test_hostile_call_is_refused_before_the_upstream_and_records_nothing(
        proxy: TestServer, upstream: TestServer, kafka: CommonSettings, name: str, extra: dict[str, Any],
        headers: dict[str, str], message: str, param: str) -> None:
    """A call over a limit is a 400 in OpenAI's shape naming the limit; nothing is called or recorded."""
    status, payload = await post(proxy, "/chat/completions", {"model": "llama3", "messages": HI, **extra}, headers)
    assert status == 400
    assert payload == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": "400"}}
    assert upstream.app[CALLS] == []
    await only_this_event_follows(proxy, kafka)


async def test_header_bytes_that_are_not_utf8_are_refused(proxy: TestServer, upstream: TestServer, kafka: CommonSettings) -> None:
    """A tag header with the byte 0xff (a lone surrogate once decoded) is a 400, not an unencodable event."""
    body = orjson.dumps({"model": "llama3", "messages": HI})
    status, payload = await raw_post(proxy, "/chat/completions", body, b"x-litellm-tags: ok, a\xffb\r\n")
    assert status == 400
    assert payload["error"]["message"] == "tag 'a\\udcffb' contains an unpaired surrogate, which is not valid Unicode text"
    assert upstream.app[CALLS] == []
    await only_this_event_follows(proxy, kafka)


async def test_limits_are_taken_from_the_settings(start_proxy: ProxyFactory, upstream: TestServer) -> None:
    """A proxy started with TALLY_MAX_TAGS=2 (as edge_limits) refuses a third tag and names its value."""
    proxy = await start_proxy(edge_limits=EdgeLimits(max_tags=2))
    status, payload = await post(proxy, "/chat/completions", {"model": "llama3", "messages": HI, "tags": ["a", "b", "c"]})
    assert (status, payload["error"]["message"]) == (
        400, "the call has 3 distinct tags (metadata.tags, tags, x-litellm-tags and the key's); the limit is 2 (TALLY_MAX_TAGS)")
    assert upstream.app[CALLS] == []


async def test_the_seed_page_call_passes(proxy: TestServer, kafka: CommonSettings) -> None:
    """The seed page's tags and a spend_logs_metadata object go through and are recorded as sent."""
    tags = ["jobID:214590dsff09fds", "taskName:run_page_classification"]
    status, _ = await post(proxy, "/chat/completions", {"model": "llama3", "messages": HI, "user": "palantir",
                                                        "metadata": {"tags": tags, "spend_logs_metadata": {"hello": "world"}}})
    assert status == 200
    records = await usage_events(kafka, lambda seen: len(seen) >= 1)
    event = records[0][1]
    assert (event.end_user, event.request_tags, event.spend_logs_metadata) == ("palantir", tags, {"hello": "world"})


@pytest.mark.parametrize("path, body, cost", [
    ("/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}, Decimal("0.00000032")),  # 16 tokens * 2e-08
    ("/images/generations", {"model": "dall-e-3", "prompt": "a cat", "size": "1024x1024"}, Decimal("3.81469E-8") * 1024 * 1024),
], ids=["embeddings", "images"])
async def test_stream_true_on_a_plain_call_is_relayed_and_priced_plain(
        proxy: TestServer, upstream: TestServer, kafka: CommonSettings, path: str, body: dict[str, Any], cost: Decimal) -> None:
    """stream: true on embeddings or images is ignored: a JSON answer with its cost, the upstream
    asked without stream, and a priced, non-stream usage event."""
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(proxy) + path, headers=AUTH,
                             json={**body, "stream": True, "stream_options": {"include_usage": True}}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert Decimal(response.headers["x-litellm-response-cost"]) == cost
            request_id = response.headers["x-litellm-call-id"]
            await response.json()
    sent = upstream.app[CALLS][-1]["body"]
    assert "stream" not in sent and "stream_options" not in sent
    _, event = await event_for(kafka, request_id)
    assert (event.status, event.stream, event.quoted_cost) == ("success", False, cost)


async def test_upstream_text_postgres_refuses_is_repaired_before_it_is_recorded(proxy: TestServer, kafka: CommonSettings) -> None:
    """An upstream naming its model "emb\\u0000" * 200 is answered as sent; the event holds the name
    cut to 256 characters with U+FFFD for NUL. Its error text with NUL is repaired too."""
    model = "emb\x00" * 200
    status, payload = await post(proxy, "/embeddings", {"model": "text-embedding-3-small", "input": "a", "x_fake": {"model": model}})
    assert (status, payload["model"]) == (200, model)
    status, _ = await post(proxy, "/chat/completions", {"model": "llama3", "messages": HI, "x_fake": {"status": 500, "message": "bad\x00"}})
    assert status == 500
    records = await usage_events(kafka, lambda seen: len(seen) >= 2)
    events = {e.status: e for _, e in records}
    assert events["success"].response_model == ("emb\ufffd" * 64)
    assert events["failure"].error_message == f"groq error from {events['failure'].api_base}: bad\ufffd"


async def test_unknown_model_error_names_only_the_keys_models(start_proxy: ProxyFactory, kafka: CommonSettings) -> None:
    """A key limited to llama3 asking for gpt-5 (or no model) sees llama3 alone in the error; the master key sees every model."""
    raw_key = "sk-limited-0001-abcdefghij"
    producer = idempotent_producer(kafka)
    await producer.start()
    try:
        change = EntityChanged(entity_type="key", entity_id=hash_key(raw_key),
                               state={"token": hash_key(raw_key), "models": ["llama3"]})
        await producer.send_and_wait(kafka.topic(topics.ENTITIES), encode(change), key=f"key:{change.entity_id}".encode())
    finally:
        await producer.stop()
    proxy = await start_proxy()
    limited = {"Authorization": f"Bearer {raw_key}"}
    status, payload = await post(proxy, "/chat/completions", {"model": "gpt-5", "messages": HI}, limited)
    assert (status, payload["error"]["message"]) == (400, "Invalid model name passed in model=gpt-5. Call `/v1/models` to view "
                                                          "available models for your key. Available models: [llama3]")
    status, payload = await post(proxy, "/chat/completions", {"messages": HI}, limited)
    assert (status, payload["error"]["message"]) == (400, "model is required and must be a string. Available models: [llama3]")
    status, payload = await post(proxy, "/chat/completions", {"model": "gpt-5", "messages": HI})
    assert payload["error"]["message"].endswith(
        "Available models: [azure-gpt-4o, claude, dall-e-3, gpt-4o-mini, llama3, slow, text-embedding-3-small]")
