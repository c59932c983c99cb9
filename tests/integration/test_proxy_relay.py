"""The proxy in-process against the fake upstream and real Kafka: the seed page's calls work
verbatim, each answer carries its exact cost, and each finished call is one usage event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.proxy.app import KEY_TABLE, build_app
from services.proxy.settings import ProxySettings
from shared import topics
from shared.config import parse_config
from shared.events import EntityChanged, UsageEvent, decode, encode
from shared.kafka import consumer as make_consumer
from shared.kafka import ensure_topics, idempotent_producer
from shared.keys import hash_key
from shared.master_key import MASTER_KEY_ALIAS
from shared.pricing import load_catalog
from shared.settings import CommonSettings
from stack.fake_upstream import CALLS
from stack.fake_upstream import build_app as build_upstream

pytestmark = pytest.mark.integration

MASTER = "sk-1234"
SEED_TAGS = ["jobID:214590dsff09fds", "taskName:run_page_classification"]
LLAMA3_COST = Decimal("0.0000074")  # groq/llama3-8b-8192: 20 * 5e-08 + 80 * 8e-08
GPT4O_MINI_COST = Decimal("0.000051")  # 20 * 1.5e-07 + 80 * 6e-07
CATALOG = load_catalog()


def model_list(upstream_url: str) -> list[dict[str, Any]]:
    base = f"{upstream_url}/v1"
    return [
        {"model_name": "llama3", "litellm_params": {"model": "groq/llama3-8b-8192", "api_base": base, "api_key": "up-key"}},
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base, "api_key": "up-key"}},
        {"model_name": "slow", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base, "timeout": 0.3}},
        {"model_name": "azure-gpt-4o", "litellm_params": {"model": "azure/my-gpt-4o", "api_base": upstream_url, "api_key": "az-key",
                                                          "api_version": "2024-10-21"},
         "model_info": {"base_model": "azure/gpt-4o"}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": upstream_url, "api_key": "ant-key"}},
        {"model_name": "text-embedding-3-small", "litellm_params": {"model": "openai/text-embedding-3-small", "api_base": base}},
        {"model_name": "dall-e-3", "litellm_params": {"model": "openai/dall-e-3", "api_base": base}},
    ]


async def start_server(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def kafka(kafka_bootstrap: str, topic_prefix: str) -> CommonSettings:
    """This test's own topics on the real broker (no database needed by the proxy)."""
    common = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await ensure_topics(common)
    return common


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    server = await start_server(build_upstream())
    yield server
    await server.close()


ProxyFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_proxy(kafka: CommonSettings, upstream: TestServer, tmp_path: Path) -> AsyncIterator[ProxyFactory]:
    """Start proxies (real port, in this loop); all are closed after the test."""
    servers: list[TestServer] = []

    async def start(common: CommonSettings | None = None, spool_dir: Path | None = None, reports_url: str | None = None,
                    extra_models: list[dict[str, Any]] | None = None, **overrides: Any) -> TestServer:
        url = str(upstream.make_url("")).rstrip("/")
        config = parse_config({"model_list": model_list(url) + (extra_models or [])}, {})
        settings = ProxySettings(common=common or kafka, config=config, master_key=MASTER, spool_dir=spool_dir or tmp_path / "spool",
                                 key_sync_timeout_s=overrides.pop("key_sync_timeout_s", 10.0),
                                 reports_url=reports_url or "http://127.0.0.1:9", **overrides)
        server = await start_server(build_app(settings, CATALOG))
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def proxy(start_proxy: ProxyFactory) -> TestServer:
    return await start_proxy()


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def usage_events(common: CommonSettings, done: Callable[[list[tuple[Any, UsageEvent]]], bool], timeout: float = 20.0) -> list[tuple[Any, UsageEvent]]:
    """Read the usage topic from the start until `done(records)` holds; fail after `timeout`."""
    consumer = make_consumer(common, topics.USAGE, group_id=None)
    await consumer.start()
    seen: list[tuple[Any, UsageEvent]] = []
    try:
        deadline = time.monotonic() + timeout
        while not done(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for usage events; saw {[e.request_id for _, e in seen]}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend((record, decode(record.value)) for record in records)
        return seen
    finally:
        await consumer.stop()


async def event_for(common: CommonSettings, request_id: str) -> tuple[Any, UsageEvent]:
    records = await usage_events(common, lambda seen: any(e.request_id == request_id for _, e in seen))
    return next((r, e) for r, e in records if e.request_id == request_id)


def seed_call(url: str) -> Any:
    """The seed page's Python example, verbatim apart from the base_url."""
    client = openai.OpenAI(api_key="sk-1234", base_url=url)
    return client.chat.completions.with_raw_response.create(
        model="llama3",
        messages=[{"role": "user", "content": "this is a test request, write a short poem"}],
        user="palantir",
        extra_body={"metadata": {"tags": ["jobID:214590dsff09fds", "taskName:run_page_classification"]}},
    )


async def test_seed_sdk_call_answers_with_the_exact_cost(proxy: TestServer) -> None:
    """openai.OpenAI(api_key="sk-1234") gets the completion and x-litellm-response-cost = 0.0000074."""
    raw = await asyncio.to_thread(seed_call, base_url(proxy))
    completion = raw.parse()
    assert completion.choices[0].message.content == "This is a fake answer from Tally's demo upstream."
    assert raw.headers["x-litellm-response-cost"] == "0.0000074"
    assert Decimal(raw.headers["x-litellm-response-cost"]) == LLAMA3_COST
    assert raw.headers["x-litellm-model-group"] == "llama3"
    assert raw.headers["x-litellm-model-api-base"].endswith("/v1")
    assert float(raw.headers["x-litellm-overhead-duration-ms"]) <= float(raw.headers["x-litellm-response-duration-ms"])


async def test_seed_call_becomes_one_usage_event_with_its_attribution(proxy: TestServer, kafka: CommonSettings) -> None:
    """The event carries request id, the master key's label (never its hash), end user, tags, deployment, tokens and the quoted cost."""
    raw = await asyncio.to_thread(seed_call, base_url(proxy))
    request_id = raw.headers["x-litellm-call-id"]
    record, event = await event_for(kafka, request_id)
    assert record.key == MASTER_KEY_ALIAS.encode()
    assert dict(record.headers)["request_id"] == request_id.encode()
    assert (event.call_type, event.status, event.stream) == ("acompletion", "success", False)
    assert (event.api_key_hash, event.user_id, event.end_user) == (MASTER_KEY_ALIAS, "default_user_id", "palantir")
    assert event.request_tags == SEED_TAGS
    assert (event.model_group, event.model, event.custom_llm_provider) == ("llama3", "groq/llama3-8b-8192", "groq")
    assert event.api_base == raw.headers["x-litellm-model-api-base"]
    assert event.response_model == "llama3-8b-8192"
    assert (event.usage.prompt_tokens, event.usage.completion_tokens) == (20, 80)
    assert event.quoted_cost == LLAMA3_COST
    assert event.quoted_catalog_version == CATALOG.version


async def test_routes_answer_without_the_v1_prefix_too(proxy: TestServer, upstream: TestServer) -> None:
    """/chat/completions and /v1/chat/completions are the same route; unknown fields reach the upstream."""
    async with aiohttp.ClientSession() as http:
        for path in ("/chat/completions", "/v1/chat/completions"):
            async with http.post(base_url(proxy) + path, headers={"Authorization": f"Bearer {MASTER}"},
                                 json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "x_fake": {"chunks": 2},
                                       "metadata": {"tags": ["t"]}}) as response:
                assert response.status == 200
                assert response.headers["x-litellm-response-cost"] == "0.000051"
    sent = upstream.app[CALLS][-1]
    assert sent["body"]["x_fake"] == {"chunks": 2}
    assert "metadata" not in sent["body"]
    assert sent["body"]["model"] == "gpt-4o-mini"
    assert sent["headers"]["Authorization"] == "Bearer up-key"


async def test_streamed_cost_is_in_the_last_usage_chunk(proxy: TestServer, kafka: CommonSettings) -> None:
    """A stream with include_usage ends with a usage chunk carrying "cost": 0.000051."""
    def stream() -> tuple[list[Any], str]:
        client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
                stream_options={"include_usage": True}) as response:
            return list(response.parse()), response.headers["x-litellm-call-id"]

    chunks, request_id = await asyncio.to_thread(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "This is a fake answer from Tally's demo upstream."
    assert chunks[-1].usage.total_tokens == 100
    assert Decimal(str(chunks[-1].usage.model_extra["cost"])) == GPT4O_MINI_COST
    _, event = await event_for(kafka, request_id)
    assert (event.stream, event.quoted_cost, event.usage.completion_tokens) == (True, GPT4O_MINI_COST, 80)
    assert event.completion_start_time is not None


async def test_stream_without_include_usage_hides_the_usage_chunk_but_records_it(proxy: TestServer, kafka: CommonSettings) -> None:
    """The client sees OpenAI's plain stream; the event still has the upstream's usage."""
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(proxy) + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": True}) as response:
            text = await response.text()
            request_id = response.headers["x-litellm-call-id"]
    assert '"usage"' not in text
    assert text.endswith("data: [DONE]\n\n")
    _, event = await event_for(kafka, request_id)
    assert (event.usage.prompt_tokens, event.usage.completion_tokens, event.quoted_cost) == (20, 80, LLAMA3_COST)


async def test_client_gone_mid_stream_still_records_the_call(proxy: TestServer, kafka: CommonSettings) -> None:
    """A client that disconnects after the first chunk leaves a usage event with the real usage."""
    async with aiohttp.ClientSession() as http:
        response = await http.post(base_url(proxy) + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                                   json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                                         "x_fake": {"chunk_delay_ms": 30, "chunks": 20}})
        request_id = response.headers["x-litellm-call-id"]
        await response.content.readany()
        response.close()  # drop the connection mid-stream
    _, event = await event_for(kafka, request_id)
    assert (event.status, event.stream, event.usage.completion_tokens, event.quoted_cost) == ("success", True, 80, LLAMA3_COST)


async def test_stream_pieces_reach_the_client_as_they_arrive(proxy: TestServer) -> None:
    """With 150 ms between upstream pieces, the first piece reaches the client long before the
    last one was sent: nothing is held back but the final bytes."""
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        async with http.post(base_url(proxy) + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                                   "x_fake": {"chunk_delay_ms": 150, "chunks": 6}}) as response:
            first = await response.content.readany()
            first_at = time.perf_counter() - started
            rest = await response.read()
            total = time.perf_counter() - started
    assert first.startswith(b"data: ")
    assert total - first_at >= 0.6  # five more delays of 150 ms came after the first piece
    assert (first + rest).endswith(b"data: [DONE]\n\n")


async def test_mock_response_is_priced_and_recorded_without_calling_upstream(proxy: TestServer, upstream: TestServer, kafka: CommonSettings) -> None:
    """mock_response answers 10 + 20 tokens from the proxy itself, priced (0.0000135) and recorded."""
    before = len(upstream.app[CALLS])
    client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_body={"mock_response": "It's simple to use!"}))
    assert raw.parse().choices[0].message.content == "It's simple to use!"
    assert raw.headers["x-litellm-response-cost"] == "0.0000135"
    assert len(upstream.app[CALLS]) == before
    _, event = await event_for(kafka, raw.headers["x-litellm-call-id"])
    assert (event.usage.prompt_tokens, event.usage.completion_tokens, event.quoted_cost) == (10, 20, Decimal("0.0000135"))


async def test_upstream_error_keeps_its_status_and_is_recorded_as_failure(proxy: TestServer, kafka: CommonSettings) -> None:
    """An upstream 429 reaches the SDK as RateLimitError and becomes a failure event with no cost."""
    client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy), max_retries=0)
    with pytest.raises(openai.RateLimitError) as error:
        await asyncio.to_thread(lambda: client.chat.completions.create(
            model="llama3", messages=[{"role": "user", "content": "hi"}], extra_body={"x_fake": {"status": 429, "message": "slow down"}}))
    assert "slow down" in error.value.message
    records = await usage_events(kafka, lambda seen: len(seen) >= 1)
    event = records[0][1]
    assert (event.status, event.error_status, event.quoted_cost) == ("failure", 429, None)


async def test_upstream_timeout_answers_504(proxy: TestServer, kafka: CommonSettings) -> None:
    """A deployment with timeout 0.3 s and an upstream taking 2 s answers 504 and records a failure."""
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(proxy) + "/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "slow", "messages": [{"role": "user", "content": "hi"}], "x_fake": {"delay_ms": 2000}}) as response:
            assert response.status == 504
            assert (await response.json())["error"]["type"] == "timeout"
    records = await usage_events(kafka, lambda seen: len(seen) >= 1)
    assert records[0][1].error_status == 504


async def test_bad_input_is_a_4xx_and_records_nothing(proxy: TestServer, kafka: CommonSettings) -> None:
    """Malformed JSON, missing/unknown model, wrong types, too big, unknown route, an API Anthropic lacks: 4xx, no usage event."""
    auth = {"Authorization": f"Bearer {MASTER}"}
    url = base_url(proxy)
    cases = [
        ("/chat/completions", b"{not json", 400, None),
        ("/chat/completions", orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), 400, "Available models: [azure-gpt-4o, claude, dall-e-3"),
        ("/chat/completions", orjson.dumps({"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}), 400, "Available models: [azure-gpt-4o"),
        ("/chat/completions", orjson.dumps({"model": "llama3", "messages": "hi"}), 400, "messages"),
        ("/chat/completions", orjson.dumps({"model": "llama3", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}), 400, "stream"),
        ("/chat/completions", orjson.dumps({"model": "llama3", "messages": [{"role": "user", "content": "x" * (65 * 1024 * 1024)}]}), 413, None),
        ("/v1/nothing/here", b"{}", 404, "Route not found"),
        ("/completions", orjson.dumps({"model": "claude", "prompt": "x"}), 400, "Anthropic models serve chat completions only"),
        ("/embeddings", orjson.dumps({"model": "claude", "input": "x"}), 400, "Anthropic models serve chat completions only"),
    ]
    async with aiohttp.ClientSession() as http:
        for path, body, status, needle in cases:
            async with http.post(url + path, data=body, headers=auth) as response:
                payload = await response.json()
                assert response.status == status, (path, body[:60], payload)
                assert set(payload["error"]) == {"message", "type", "param", "code"}
                if needle:
                    assert needle in payload["error"]["message"]
        async with http.post(url + "/chat/completions", headers={"Authorization": "Bearer sk-wrong"},
                             json={"model": "llama3", "messages": [{"role": "user", "content": "x"}]}) as response:
            assert response.status == 401
        async with http.post(url + "/chat/completions", headers=auth, json={"model": "llama3", "messages": [{"role": "user", "content": "ok"}]}) as response:
            good = response.headers["x-litellm-call-id"]
    records = await usage_events(kafka, lambda seen: any(e.request_id == good for _, e in seen))
    assert [e.request_id for _, e in records] == [good]


async def test_embeddings_and_images_are_priced(proxy: TestServer) -> None:
    """Embeddings are priced on prompt tokens, images per image of the requested size and quality."""
    client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
    raw = await asyncio.to_thread(lambda: client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"]))
    assert raw.headers["x-litellm-response-cost"] == "0.00000032"  # 16 tokens * 2e-08
    raw = await asyncio.to_thread(lambda: client.images.with_raw_response.generate(model="dall-e-3", prompt="a cat", size="1024x1024"))
    assert Decimal(raw.headers["x-litellm-response-cost"]) == Decimal("3.81469E-8") * 1024 * 1024


async def test_azure_deployment_is_called_on_its_path_with_api_key(proxy: TestServer, upstream: TestServer) -> None:
    """azure/<deployment> goes to its deployment path with api-key, and is priced as its base_model."""
    client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="azure-gpt-4o", messages=[{"role": "user", "content": "hi"}]))
    call = upstream.app[CALLS][-1]
    assert call["path"] == "/openai/deployments/my-gpt-4o/chat/completions"
    assert call["headers"]["api-key"] == "az-key"
    # priced as its base_model azure/gpt-4o: 20 * 2.5e-06 + 80 * 1e-05
    assert raw.headers["x-litellm-response-cost"] == "0.00085"


async def test_anthropic_chat_is_translated_and_cache_tokens_priced(proxy: TestServer, upstream: TestServer, kafka: CommonSettings) -> None:
    """A chat call to an Anthropic model goes out as a Messages request; cached tokens get their own rates."""
    client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
    steer = {"anthropic_usage": {"input_tokens": 20, "output_tokens": 80, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 30}}
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], extra_body={"x_fake": steer}))
    completion = raw.parse()
    sent = upstream.app[CALLS][-1]
    assert sent["path"] == "/v1/messages"
    assert (sent["headers"]["x-api-key"], sent["body"]["system"]) == ("ant-key", [{"type": "text", "text": "be brief"}])
    assert completion.usage.prompt_tokens == 150
    # 20 * 3e-06 + 100 * 3e-07 + 30 * 3.75e-06 + 80 * 1.5e-05
    assert raw.headers["x-litellm-response-cost"] == "0.0014025"
    _, event = await event_for(kafka, raw.headers["x-litellm-call-id"])
    assert (event.usage.cache_read_input_tokens, event.usage.cache_creation_input_tokens) == (100, 30)


async def test_anthropic_stream_is_translated_to_openai_chunks(proxy: TestServer) -> None:
    """Anthropic's stream events arrive as OpenAI chunks, the last with usage and cost."""
    def stream() -> list[Any]:
        client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
        return list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=True,
                                                   stream_options={"include_usage": True}))

    chunks = await asyncio.to_thread(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "This is a fake answer from Tally's demo upstream."
    assert Decimal(str(chunks[-1].usage.model_extra["cost"])) == Decimal("0.00126")  # 20 * 3e-06 + 80 * 1.5e-05


async def test_virtual_key_from_the_entities_topic(start_proxy: ProxyFactory, kafka: CommonSettings) -> None:
    """A key published on entities.v1 is accepted, limited to its models, and attributed to its owner."""
    raw_key = "sk-virtual-0001-abcdefghij"
    producer = idempotent_producer(kafka)
    await producer.start()
    try:
        change = EntityChanged(entity_type="key", entity_id=hash_key(raw_key), state={
            "token": hash_key(raw_key), "key_alias": "ci", "user_id": "ishaan", "team_id": "team-1", "models": ["llama3"],
            "metadata": {"tags": ["ci-key"], "spend_logs_metadata": {"env": "ci"}}, "spend": "1.5"})
        await producer.send_and_wait(kafka.topic(topics.ENTITIES), encode(change), key=f"key:{change.entity_id}".encode())
    finally:
        await producer.stop()
    proxy = await start_proxy()  # start-up waits for the key table to catch up
    assert proxy.app[KEY_TABLE].synced
    client = openai.OpenAI(api_key=raw_key, base_url=base_url(proxy), max_retries=0)
    raw = await asyncio.to_thread(lambda: client.chat.completions.with_raw_response.create(
        model="llama3", messages=[{"role": "user", "content": "hi"}], user="palantir"))
    with pytest.raises(openai.AuthenticationError) as refused:  # LiteLLM's 401 for a model the key may not use
        await asyncio.to_thread(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]))
    assert refused.value.body["type"] == "key_model_access_denied"
    _, event = await event_for(kafka, raw.headers["x-litellm-call-id"])
    assert (event.api_key_hash, event.key_alias, event.user_id, event.team_id) == (hash_key(raw_key), "ci", "ishaan", "team-1")
    assert (event.request_tags, event.spend_logs_metadata) == (["ci-key"], {"env": "ci"})


async def test_models_lists_what_the_key_may_use(proxy: TestServer) -> None:
    """GET /models answers OpenAI's list shape with every configured model for the master key, in
    the config's order (LiteLLM's)."""
    client = openai.OpenAI(api_key=MASTER, base_url=base_url(proxy))
    models = await asyncio.to_thread(lambda: [m.id for m in client.models.list()])
    assert models == ["llama3", "gpt-4o-mini", "slow", "azure-gpt-4o", "claude", "text-embedding-3-small", "dall-e-3"]


async def test_spend_routes_are_forwarded_to_reports(start_proxy: ProxyFactory) -> None:
    """Method, path, query, body, auth header and status reach the reports service and come back."""
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "path": request.path, "query": request.query_string,
                                  "auth": request.headers.get("Authorization"), "body": (await request.read()).decode()}, status=202)

    reports_app = web.Application()
    reports_app.router.add_route("*", "/{tail:.*}", echo)
    reports = await start_server(reports_app)
    try:
        proxy = await start_proxy(reports_url=base_url(reports))
        async with aiohttp.ClientSession() as http:
            async with http.get(base_url(proxy) + "/global/spend/report?start_date=2024-04-01&end_date=2024-06-30&group_by=team",
                                headers={"Authorization": "Bearer sk-1234"}) as response:
                assert response.status == 202
                assert await response.json() == {"method": "GET", "path": "/global/spend/report", "auth": "Bearer sk-1234", "body": "",
                                                 "query": "start_date=2024-04-01&end_date=2024-06-30&group_by=team"}
            async with http.post(base_url(proxy) + "/global/spend/reset", headers={"Authorization": "Bearer sk-1234"}, data=b"{}") as response:
                assert (await response.json())["body"] == "{}"
            async with http.get(base_url(proxy) + "/ui") as response:
                assert (await response.json())["path"] == "/ui"
    finally:
        await reports.close()


async def test_health_probes(proxy: TestServer) -> None:
    """/health/liveliness is alive; /health/readiness and /health are 200 with Kafka up and keys synced."""
    async with aiohttp.ClientSession() as http:
        for path in ("/health/liveliness", "/health/readiness", "/health"):
            async with http.get(base_url(proxy) + path) as response:
                assert response.status == 200, (path, await response.text())


async def test_probes_answer_in_litellms_shapes(proxy: TestServer) -> None:
    """liveliness is LiteLLM's "I'm alive!"; readiness has LiteLLM's fields, and the catalog version quoting calls."""
    async with aiohttp.ClientSession() as http:
        async with http.get(base_url(proxy) + "/health/liveliness") as response:
            alive = await response.json()
        async with http.get(base_url(proxy) + "/health/readiness") as response:
            ready = await response.json()
    assert alive == "I'm alive!"
    assert {k: ready[k] for k in ("status", "db", "cache", "success_callbacks", "catalog_version")} == {
        "status": "healthy", "db": "connected", "cache": None, "success_callbacks": [], "catalog_version": CATALOG.version}
    assert ready["litellm_version"].startswith("tally-")


async def test_closed_idle_upstream_connection_is_retried_once(start_proxy: ProxyFactory, kafka: CommonSettings) -> None:
    """An upstream that drops keep-alive connections between calls is still answered every time."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        body = orjson.dumps({"id": "x", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [],
                             "usage": {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100}})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        served += 1
        writer.close()  # without saying Connection: close, as a server timing out idle connections does

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        proxy = await start_proxy(extra_models=[{"model_name": "flaky", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{port}/v1"}}])
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.post(base_url(proxy) + "/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                                     json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}) as response:
                    assert response.status == 200
                    assert response.headers["x-litellm-response-cost"] == "0.000051"
        assert served == 3
    finally:
        server.close()


async def test_unreachable_upstream_is_a_502_and_a_failure_event(start_proxy: ProxyFactory, kafka: CommonSettings) -> None:
    """Nothing listening at the api_base: 502 in OpenAI's shape, recorded as a failure."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await start_proxy(extra_models=[{"model_name": "gone", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{port}/v1"}}])
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(proxy) + "/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "gone", "messages": [{"role": "user", "content": "hi"}]}) as response:
            assert response.status == 502
            assert (await response.json())["error"]["type"] == "api_connection_error"
    records = await usage_events(kafka, lambda seen: len(seen) >= 1)
    assert (records[0][1].status, records[0][1].error_status) == ("failure", 502)


async def test_langchain_chat_openai_example_is_tracked(proxy: TestServer, kafka: CommonSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed page's LangChain example (langchain_openai's ChatOpenAI, .invoke) is attributed like the SDK's."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-1234")
    chat = ChatOpenAI(openai_api_base=base_url(proxy), model="llama3", user="palantir",
                      extra_body={"metadata": {"tags": ["jobID:214590dsff09fds", "taskName:run_page_classification"]}})
    messages = [SystemMessage(content="You are a helpful assistant that im using to make a test request to."),
                HumanMessage(content="test from litellm. tell me why it's amazing in 1 sentence")]
    response = await asyncio.to_thread(chat.invoke, messages)
    assert response.content == "This is a fake answer from Tally's demo upstream."
    records = await usage_events(kafka, lambda seen: len(seen) >= 1)
    event = records[0][1]
    assert (event.end_user, event.request_tags, event.quoted_cost) == ("palantir", SEED_TAGS, LLAMA3_COST)
