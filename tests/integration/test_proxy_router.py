"""The router in-process against the fake upstream and real Kafka: retries within a model group,
fallbacks to other groups and cooldowns, with one usage event per call, booked to the deployment
that answered at its own price, never one for a failed attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from services.proxy.app import build_app
from services.proxy.settings import ProxySettings
from shared import topics
from shared.config import parse_config
from shared.events import EntityChanged, UsageEvent, encode
from shared.kafka import idempotent_producer
from shared.keys import hash_key
from shared.settings import CommonSettings
from stack.fake_upstream import CALLS
from tests.integration.test_proxy_relay import (  # noqa: F401 (fixtures)
    CATALOG, MASTER, base_url, kafka, start_server, upstream, usage_events,
)

pytestmark = pytest.mark.integration

# Custom prices per deployment: 20 prompt + 80 completion tokens cost a different, exact amount on each.
PRICES = {"primary-a": ("0.000001", "0.000002"), "primary-b": ("0.000003", "0.000004"), "backup": ("0.000005", "0.000006"),
          "slow-a": ("0.000001", "0.000002"), "slow-b": ("0.000003", "0.000004"), "solo": ("0.000001", "0.000002")}
COST = {"primary-a": Decimal("0.00018"), "primary-b": Decimal("0.00038"), "backup": Decimal("0.00058"),
        "slow-b": Decimal("0.00038")}
TOO_LONG = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens."
VIRTUAL_KEY = "sk-router-0001-abcdefghij"


def deployment(group: str, upstream_model: str, url: str, **params: Any) -> dict[str, Any]:
    prompt, completion = PRICES[upstream_model]
    return {"model_name": group, "model_info": {"id": upstream_model},
            "litellm_params": {"model": f"openai/{upstream_model}", "api_base": f"{url}/v1", "api_key": "up-key",
                               "input_cost_per_token": prompt, "output_cost_per_token": completion, **params}}


def router_config(url: str, **router_settings: Any) -> dict[str, Any]:
    return {
        "model_list": [deployment("gpt", "primary-a", url), deployment("gpt", "primary-b", url), deployment("backup", "backup", url),
                       deployment("slow", "slow-a", url, timeout=0.3), deployment("slow", "slow-b", url),
                       deployment("solo", "solo", url, num_retries=2)],
        "router_settings": {"num_retries": 1, "fallbacks": [{"gpt": ["backup"]}], "context_window_fallbacks": [{"gpt": ["backup"]}],
                            "allowed_fails": 0, "cooldown_time": 60, **router_settings},
    }


RouterProxy = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_router(kafka: CommonSettings, upstream: TestServer, tmp_path: Path) -> AsyncIterator[RouterProxy]:
    """A proxy whose config has router_settings (rotation starts at each group's first deployment)."""
    servers: list[TestServer] = []

    async def start(**router_settings: Any) -> TestServer:
        config = parse_config(router_config(str(upstream.make_url("")).rstrip("/"), **router_settings), {})
        settings = ProxySettings(common=kafka, config=config, master_key=MASTER, spool_dir=tmp_path / "spool",
                                 key_sync_timeout_s=10.0, reports_url="http://127.0.0.1:9")
        servers.append(await start_server(build_app(settings, CATALOG)))
        return servers[-1]

    yield start
    for server in servers:
        await server.close()


async def chat(proxy: TestServer, by_model: dict[str, Any], key: str = MASTER, model: str = "gpt",
               **body: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(proxy) + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                                   "x_fake": {"by_model": by_model}, **body}) as response:
            if body.get("stream"):
                return response.status, dict(response.headers), {"text": await response.text()}
            return response.status, dict(response.headers), await response.json()


def upstream_models(upstream: TestServer) -> list[str]:
    return [call["body"]["model"] for call in upstream.app[CALLS]]


async def only_event(kafka: CommonSettings, request_id: str) -> UsageEvent:
    """The call's one usage event; the topic holds no other (a failed attempt emits none)."""
    records = await usage_events(kafka, lambda seen: any(e.request_id == request_id for _, e in seen))
    assert [e.request_id for _, e in records] == [request_id]
    return records[0][1]


async def test_server_error_is_retried_on_the_other_deployment(start_router: RouterProxy, upstream: TestServer,
                                                               kafka: CommonSettings) -> None:
    """A 500 from one deployment is retried on the other; the call is booked once, to the one that answered."""
    proxy = await start_router()
    status, headers, _ = await chat(proxy, {"primary-a": {"status": 500}})
    assert status == 200
    assert upstream_models(upstream) == ["primary-a", "primary-b"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("1", "0")
    assert (headers["x-litellm-model-id"], headers["x-litellm-response-cost"]) == ("primary-b", "0.00038")
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.status, event.model_id, event.model, event.model_group) == ("success", "primary-b", "openai/primary-b", "gpt")
    assert event.api_base == headers["x-litellm-model-api-base"]
    assert event.quoted_cost == COST["primary-b"]


async def test_rate_limits_exhaust_retries_then_fall_back(start_router: RouterProxy, upstream: TestServer,
                                                          kafka: CommonSettings) -> None:
    """429 on both deployments of a group: one retry, then the fallback group answers at its own price."""
    proxy = await start_router()
    status, headers, body = await chat(proxy, {"primary-a": {"status": 429}, "primary-b": {"status": 429}})
    assert status == 200
    assert body["model"] == "backup"
    assert upstream_models(upstream) == ["primary-a", "primary-b", "backup"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("1", "1")
    assert (headers["x-litellm-model-group"], headers["x-litellm-response-cost"]) == ("backup", "0.00058")
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.model_group, event.model_id, event.quoted_cost) == ("backup", "backup", COST["backup"])


async def test_when_everything_fails_one_failure_is_recorded(start_router: RouterProxy, upstream: TestServer,
                                                             kafka: CommonSettings) -> None:
    """Every attempt fails: the client gets the last error with the attempt headers; one failure event, no cost."""
    proxy = await start_router()
    status, headers, body = await chat(proxy, {m: {"status": 503, "message": f"{m} down"} for m in ("primary-a", "primary-b", "backup")})
    assert status == 503
    assert body["error"]["message"].endswith(": backup down")  # the last attempt's error
    assert upstream_models(upstream) == ["primary-a", "primary-b", "backup", "backup"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("2", "1")
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.status, event.error_status, event.quoted_cost, event.model_group) == ("failure", 503, None, "backup")


async def test_a_bad_request_is_neither_retried_nor_falls_back(start_router: RouterProxy, upstream: TestServer,
                                                               kafka: CommonSettings) -> None:
    """A 400 the request caused goes back to the client after one upstream call."""
    proxy = await start_router()
    status, headers, _ = await chat(proxy, {"primary-a": {"status": 400, "message": "temperature must be at most 2"}})
    assert status == 400
    assert upstream_models(upstream) == ["primary-a"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("0", "0")
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.status, event.error_status) == ("failure", 400)


async def test_context_window_error_goes_to_the_context_window_fallback(start_router: RouterProxy, upstream: TestServer) -> None:
    """A prompt too long for the model is not retried but sent to context_window_fallbacks."""
    proxy = await start_router(fallbacks=[])
    status, headers, _ = await chat(proxy, {"primary-a": {"status": 400, "message": TOO_LONG}})
    assert status == 200
    assert upstream_models(upstream) == ["primary-a", "backup"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("0", "1")
    assert headers["x-litellm-model-group"] == "backup"


async def test_a_timed_out_attempt_is_retried(start_router: RouterProxy, upstream: TestServer, kafka: CommonSettings) -> None:
    """A deployment that does not answer within its timeout gives way to the next one."""
    proxy = await start_router()
    status, headers, _ = await chat(proxy, {"slow-a": {"delay_ms": 2000}}, model="slow")
    assert status == 200
    assert upstream_models(upstream) == ["slow-a", "slow-b"]
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.model_id, event.quoted_cost) == ("slow-b", COST["slow-b"])


async def test_the_requests_timeout_bounds_each_attempt(start_router: RouterProxy, upstream: TestServer) -> None:
    """timeout in the body (not sent upstream) cuts a slow attempt short; the retry answers."""
    proxy = await start_router()
    status, headers, _ = await chat(proxy, {"primary-a": {"delay_ms": 2000}}, timeout=0.3)
    assert status == 200
    assert upstream_models(upstream) == ["primary-a", "primary-b"]
    assert "timeout" not in upstream.app[CALLS][-1]["body"]
    assert headers["x-litellm-model-id"] == "primary-b"


async def test_a_stream_is_retried_before_its_first_byte(start_router: RouterProxy, upstream: TestServer,
                                                         kafka: CommonSettings) -> None:
    """A stream whose first deployment answers 500 is served by the next; one event, the answering deployment's."""
    proxy = await start_router()
    status, headers, body = await chat(proxy, {"primary-a": {"status": 500}}, stream=True,
                                       stream_options={"include_usage": True})
    assert status == 200
    assert body["text"].endswith("data: [DONE]\n\n")
    assert '"cost":0.00038' in body["text"].replace(" ", "")
    assert headers["x-litellm-attempted-retries"] == "1"
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.model_id, event.stream, event.quoted_cost) == ("primary-b", True, COST["primary-b"])


async def test_a_stream_that_started_is_never_retried(start_router: RouterProxy, upstream: TestServer,
                                                       kafka: CommonSettings) -> None:
    """A stream that stalls after its first chunk reached the client ends there: no second deployment, one failure event."""
    proxy = await start_router()
    status, headers, body = await chat(proxy, {"slow-a": {"chunks": 3, "chunk_delay_ms": 2000}}, model="slow", stream=True)
    assert status == 200
    assert body["text"].startswith("data: ")
    assert upstream_models(upstream) == ["slow-a"]
    assert headers["x-litellm-attempted-retries"] == "0"
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.status, event.error_status, event.stream, event.model_id) == ("failure", 504, True, "slow-a")


async def test_a_failing_deployment_rests(start_router: RouterProxy, upstream: TestServer) -> None:
    """With allowed_fails 0, a deployment that failed once takes no call during its cooldown."""
    proxy = await start_router()
    for _ in range(3):
        status, headers, _ = await chat(proxy, {"primary-a": {"status": 500}})
        assert status == 200
    assert upstream_models(upstream) == ["primary-a", "primary-b", "primary-b", "primary-b"]
    assert headers["x-litellm-attempted-retries"] == "0"


async def test_request_fallbacks_replace_the_configs(start_router: RouterProxy, upstream: TestServer) -> None:
    """num_retries 0 and fallbacks in the body: no retry, straight to the request's fallback group."""
    proxy = await start_router(fallbacks=[])
    status, headers, _ = await chat(proxy, {"primary-a": {"status": 500}}, num_retries=0, fallbacks=["backup"])
    assert status == 200
    assert upstream_models(upstream) == ["primary-a", "backup"]
    assert "fallbacks" not in upstream.app[CALLS][-1]["body"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-attempted-fallbacks"]) == ("0", "1")


async def test_a_key_cannot_fall_back_to_a_model_it_may_not_use(start_router: RouterProxy, upstream: TestServer,
                                                                kafka: CommonSettings) -> None:
    """A fallback outside the key's models is refused (401, as LiteLLM) before any upstream call; a retried call is charged once."""
    await publish_key(kafka, models=["gpt"])
    proxy = await start_router(fallbacks=[], cooldown_time=0)  # no cooldown: the deployments take turns
    status, _, body = await chat(proxy, {}, key=VIRTUAL_KEY, fallbacks=["backup"])
    assert (status, body["error"]["type"]) == (401, "key_model_access_denied")  # LiteLLM's answer for a model off the key's list
    assert upstream_models(upstream) == []
    status, headers, _ = await chat(proxy, {"primary-a": {"status": 500}}, key=VIRTUAL_KEY)
    assert status == 200
    assert headers["x-litellm-key-spend"] == "0.00038"  # primary-b's price, once; nothing for primary-a's failure
    status, headers, _ = await chat(proxy, {"primary-a": {"status": 500}, "primary-b": {"status": 500}}, key=VIRTUAL_KEY)
    assert status == 500
    status, headers, _ = await chat(proxy, {}, key=VIRTUAL_KEY)
    assert headers["x-litellm-key-spend"] == "0.00076"  # the failed call cost nothing, its reservation is back
    assert await settlement_gauges(proxy) == {name: 0.0 for name in SETTLEMENT_GAUGES}


SETTLEMENT_GAUGES = ("tally_proxy_admissions_in_flight", "tally_proxy_budget_reserved", "tally_proxy_double_settlements_total")


async def settlement_gauges(proxy: TestServer) -> dict[str, float]:
    """The proxy's admission and reservation gauges and its double-settlement counter, from /metrics."""
    async with aiohttp.ClientSession() as http:
        async with http.get(base_url(proxy) + "/metrics", headers={"Authorization": f"Bearer {MASTER}"}) as response:
            text = await response.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in SETTLEMENT_GAUGES:
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def publish_key(kafka: CommonSettings, *, models: list[str]) -> None:
    change = EntityChanged(entity_type="key", entity_id=hash_key(VIRTUAL_KEY), state={
        "token": hash_key(VIRTUAL_KEY), "key_alias": "router", "models": models, "max_budget": "10"})
    producer = idempotent_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topic(topics.ENTITIES), encode(change), key=f"key:{change.entity_id}".encode())
    finally:
        await producer.stop()


async def test_a_deployments_num_retries_waits_for_its_retry_after(start_router: RouterProxy, upstream: TestServer,
                                                                   kafka: CommonSettings) -> None:
    """litellm_params.num_retries 2 on a lone deployment (the config says 0): two 429s with Retry-After 0.2 s are
    retried after 0.2 s each (not the 0.5 s + 1 s backoff), the third answers, booked once."""
    proxy = await start_router(num_retries=0)
    started = time.monotonic()
    status, headers, _ = await chat(proxy, {"solo": {"status": 429, "fail_first": 2, "retry_after": "0.2"}}, model="solo")
    elapsed = time.monotonic() - started
    assert status == 200
    assert upstream_models(upstream) == ["solo", "solo", "solo"]
    assert (headers["x-litellm-attempted-retries"], headers["x-litellm-response-cost"]) == ("2", "0.00018")
    assert 0.4 <= elapsed < 1.4
    event = await only_event(kafka, headers["x-litellm-call-id"])
    assert (event.status, event.model_id, event.quoted_cost) == ("success", "solo", Decimal("0.00018"))


async def test_the_requests_num_retries_wins_over_the_deployments(start_router: RouterProxy, upstream: TestServer) -> None:
    """num_retries 0 in the request: the deployment's own 2 do not apply; the first 429 reaches the client."""
    proxy = await start_router(num_retries=0)
    status, headers, _ = await chat(proxy, {"solo": {"status": 429, "fail_first": 2}}, model="solo", num_retries=0)
    assert (status, headers["x-litellm-attempted-retries"]) == (429, "0")
    assert upstream_models(upstream) == ["solo"]


async def test_a_stream_waits_for_retry_after_before_its_first_byte(start_router: RouterProxy, upstream: TestServer) -> None:
    """A streamed call's 429 with Retry-After 0.2 s is retried on the lone deployment after 0.2 s (not the 0.5 s backoff)."""
    proxy = await start_router(num_retries=0)
    started = time.monotonic()
    status, headers, body = await chat(proxy, {"solo": {"status": 429, "fail_first": 1, "retry_after": "0.2"}}, model="solo", stream=True)
    elapsed = time.monotonic() - started
    assert (status, headers["x-litellm-attempted-retries"]) == (200, "1")
    assert body["text"].rstrip().endswith("data: [DONE]")
    assert upstream_models(upstream) == ["solo", "solo"]
    assert 0.2 <= elapsed < 0.5
