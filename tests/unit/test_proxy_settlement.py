"""Exactly one settlement per admission: whatever an upstream sends, raises or leaves hanging, each
admitted call releases its budget reservation and parallel slot once and is recorded once, with
the last usage it reported. The proxy's relay runs in-process against a hostile in-process
upstream, with a fake usage emitter (no Kafka)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.proxy.app import LLM_ROUTES, RELAY, SETTINGS, drain_calls
from services.proxy.auth.keys import Authenticator, KeyTable
from services.proxy.budget.admission import DOUBLE_SETTLEMENTS, AwaitRenewal, BudgetRequest
from services.proxy.budget.core import Account
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.estimate import group_rates
from services.proxy.budget.guard import BudgetGuard
from services.proxy.budget.totals import TotalsView
from services.proxy.budget.wiring import add_budget_metrics
from services.proxy.calls.attribution import attribute
from services.proxy.calls.cost import CostQuoter
from services.proxy.calls.call import Call
from services.proxy.calls.relay import Relay
from services.proxy.calls.routes import LlmRoutes
from services.proxy.providers.openai_usage import MAX_TOKENS, usage_from_openai
from services.proxy.routing.router import Router
from services.proxy.settings import ProxySettings
from services.proxy.transport.http1 import Pool
from shared.config import parse_config
from shared.errors import openai_errors
from shared.events import EntityChanged, TokenUsage, UsageEvent, utcnow
from shared.keys import hash_key
from shared.metrics import Registry
from shared.pricing import load_catalog

CATALOG = load_catalog()
MASTER = "sk-master-key-for-settlement-tests"
LIMITED = "sk-limited-key-0001"  # max_parallel_requests=2
CHAT = [{"role": "user", "content": "hi"}]


# -- a hostile upstream --------------------------------------------------------------------------

def _chunk(usage: dict[str, Any] | None, content: str = "x") -> bytes:
    chunk: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18",
                             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def upstream_chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[SEEN].append(body)
    case = body.get("x_case")
    if case == "hang":
        await asyncio.Event().wait()  # never answers: ended only by cancellation
    if case == "slow":
        await asyncio.sleep(0.3)  # the upstream's own latency: a call that finishes during the drain
    if not body.get("stream"):
        usage: Any = {"prompt_tokens": 100, "completion_tokens": 40}
        if case == "details_list":
            usage = {"prompt_tokens": 100, "completion_tokens": 40, "prompt_tokens_details": [7],
                     "completion_tokens_details": "none"}
        elif case == "strings":
            usage = {"prompt_tokens": "100", "completion_tokens": 40, "cache_read_input_tokens": "x"}
        elif case == "huge":
            usage = {"prompt_tokens": 2**62, "completion_tokens": -5}
        return web.json_response({"id": "r1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
                                  "usage": usage})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if case == "continuous":  # vLLM's continuous_usage_stats: usage on every chunk, growing
        for completion in (10, 20, 30, 40):
            await response.write(_chunk({"prompt_tokens": 100, "completion_tokens": completion,
                                         "total_tokens": 100 + completion}))
    elif case == "bad_json_usage":
        await response.write(_chunk(None) + b'data: {"choices": [], "usage": {"prompt_tokens": 10,\n\n')
    elif case == "hang_stream":
        await response.write(_chunk({"prompt_tokens": 100, "completion_tokens": 10}))
        await asyncio.Event().wait()
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


SEEN: web.AppKey[list[dict[str, Any]]] = web.AppKey("seen", list)


# -- the proxy around it -------------------------------------------------------------------------

class FakeEmitter:
    """The usage log: keeps every event; refuses when told a reason."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.reason: str | None = None

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)

    def refusal(self) -> str | None:
        return self.reason


@dataclass
class Proxy:
    url: str
    app: web.Application
    relay: Relay
    guard: BudgetGuard
    registry: Registry
    emitter: FakeEmitter
    upstream: web.Application
    session: aiohttp.ClientSession
    tasks: list[asyncio.Task] = field(default_factory=list)  # type: ignore[type-arg]

    def metric(self, name: str) -> float:
        """The value /metrics shows for `name` (one series)."""
        values = [value for metric, _help, _kind, _labels, value in self.registry.samples() if metric == f"tally_{name}"]
        assert len(values) == 1, f"{name}: {values}"
        return values[0]

    def held(self) -> tuple[float, float, float, float]:
        """(admissions in flight, parallel slots held, budget reserved, double settlements)."""
        return (self.metric("proxy_admissions_in_flight"), self.metric("proxy_parallel_requests_held"),
                self.metric("proxy_budget_reserved"), self.metric("proxy_double_settlements_total"))

    async def post(self, body: dict[str, Any], key: str = LIMITED, path: str = "/chat/completions") -> tuple[int, bytes]:
        async with self.session.post(self.url + path, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
            return response.status, await response.read()


async def wait_until(condition, what: str, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # poll interval, bounded by the deadline


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    upstream_app = web.Application()
    upstream_app[SEEN] = []
    upstream_app.router.add_post("/v1/chat/completions", upstream_chat)
    upstream = TestServer(upstream_app, host="127.0.0.1")
    await upstream.start_server()
    base = str(upstream.make_url("")).rstrip("/")
    config = parse_config({"model_list": [
        {"model_name": "vllm", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{base}/v1"}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": base, "api_key": "k"}},
    ]}, {})
    settings = ProxySettings(config=config, master_key=MASTER, shutdown_drain_s=0.2)
    keys = KeyTable()
    keys.apply(EntityChanged(entity_type="key", entity_id=hash_key(LIMITED), state={"max_parallel_requests": 2}))
    registry = Registry()
    router = Router.from_deployments(config.model_list, {})
    totals = TotalsView()
    guard = BudgetGuard(EntityDirectory(), totals, CATALOG, group_rates(CATALOG, router.all_targets()),
                        double_settlements=registry.counter(*DOUBLE_SETTLEMENTS))
    add_budget_metrics(registry, guard, totals)
    emitter = FakeEmitter()
    pools: dict[str, Pool] = {}
    for target in router.all_targets():
        pools.setdefault(target.origin, Pool(target.origin))
    relay = Relay(settings, router, Authenticator(MASTER, keys), CostQuoter(CATALOG), gate=guard,
                  emitter=emitter, pools=pools, registry=registry)  # type: ignore[arg-type]
    app = web.Application(middlewares=[openai_errors])
    app[RELAY], app[SETTINGS] = relay, settings
    routes = LlmRoutes(relay)
    for path, name in LLM_ROUTES:
        app.router.add_post(path, getattr(routes, name))
    app.on_shutdown.append(drain_calls)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession()
    harness = Proxy(str(server.make_url("")).rstrip("/"), app, relay, guard, registry, emitter, upstream_app, session)
    yield harness
    for task in harness.tasks:
        task.cancel()
    await asyncio.gather(*harness.tasks, return_exceptions=True)
    await session.close()
    await server.close()
    await asyncio.gather(*(pool.close() for pool in pools.values()))
    await upstream.close()


def usage_chunks(raw: bytes) -> list[dict[str, Any]]:
    return [chunk["usage"] for line in raw.split(b"\n\n") if line.startswith(b"data: {")
            for chunk in [orjson.loads(line[6:])] if "usage" in chunk]


# -- streams: the last usage chunk wins -----------------------------------------------------------

async def test_usage_on_every_chunk_is_settled_once_with_the_last_chunk(proxy: Proxy) -> None:
    """Usage on each of 4 chunks: one event, 100 + 40 tokens at $0.000039, the cost in the last chunk, nothing held."""
    status, raw = await proxy.post({"model": "vllm", "messages": CHAT, "stream": True, "x_case": "continuous",
                                    "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    assert status == 200
    chunks = usage_chunks(raw)
    assert [c["completion_tokens"] for c in chunks] == [10, 20, 30, 40]
    assert [c["cost"] for c in chunks] == [0.000021, 0.000027, 0.000033, 0.000039]  # quoted, not settled
    assert len(proxy.emitter.events) == 1
    event = proxy.emitter.events[0]
    assert (event.status, event.usage.prompt_tokens, event.usage.completion_tokens) == ("success", 100, 40)
    assert event.quoted_cost == Decimal("0.000039")
    assert raw.count(b'"cost":0.000039') == 1  # the final chunk's exact digits are the recorded cost
    assert event.response_model == "gpt-4o-mini-2024-07-18"
    assert proxy.held() == (0, 0, 0, 0)


async def test_a_parallel_limited_key_keeps_working_after_many_continuous_streams(proxy: Proxy) -> None:
    """Five streams with usage on every chunk on a max_parallel_requests=2 key: all 200, five events, no slot below or above zero."""
    for _ in range(5):
        status, _raw = await proxy.post({"model": "vllm", "messages": CHAT, "stream": True, "x_case": "continuous",
                                         "stream_options": {"include_usage": True}})
        assert status == 200
    assert len(proxy.emitter.events) == 5
    assert proxy.guard._accounts["parallel"][hash_key(LIMITED)].inflight == 0
    assert proxy.held() == (0, 0, 0, 0)


async def test_bad_json_in_a_usage_chunk_is_relayed_and_the_call_recorded_once(proxy: Proxy) -> None:
    """An unreadable usage chunk passes untouched; the call is one success with estimated usage; nothing held."""
    status, raw = await proxy.post({"model": "vllm", "messages": CHAT, "stream": True, "x_case": "bad_json_usage"})
    assert status == 200
    assert b'"usage": {"prompt_tokens": 10,\n\n' in raw
    [event] = proxy.emitter.events
    # Estimated: a prompt token per 4 characters, a completion token per "data:" event seen ([DONE] included).
    assert (event.status, event.usage.prompt_tokens, event.usage.completion_tokens) == ("success", 1, 3)
    assert event.metadata["usage_estimated"] is True
    assert proxy.held() == (0, 0, 0, 0)


# -- whatever raises between admission and answer -------------------------------------------------

async def test_an_api_the_deployment_lacks_is_refused_before_a_slot_is_held(proxy: Proxy) -> None:
    """/embeddings on an Anthropic model, three times on a max_parallel_requests=2 key: three 400s that
    hold no slot and record nothing, then a chat call passes."""
    for _ in range(3):
        status, raw = await proxy.post({"model": "claude", "input": "hi"}, path="/embeddings")
        assert status == 400
        assert orjson.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _raw = await proxy.post({"model": "vllm", "messages": CHAT})
    assert status == 200
    assert [(e.status, e.error_status, e.quoted_cost) for e in proxy.emitter.events] == [("success", None, Decimal("0.000039"))]
    assert proxy.upstream[SEEN][0].get("input") is None  # the refused calls never reached the upstream
    assert proxy.held() == (0, 0, 0, 0)


@pytest.mark.parametrize(("case", "prompt", "completion", "cost"), [
    ("details_list", 100, 40, Decimal("0.000039")),  # non-dict prompt/completion details
    ("strings", 0, 40, Decimal("0.000024")),  # non-numeric counts count as absent
    ("huge", MAX_TOKENS, 0, Decimal("150")),  # clamped at 10**9 tokens; negative is absent
])
async def test_hostile_usage_counts_are_answered_and_recorded_once(proxy: Proxy, case: str, prompt: int, completion: int,
                                                                   cost: Decimal) -> None:
    """Usage the upstream got wrong never raises: 200, one event with the normalised counts, nothing held."""
    status, _raw = await proxy.post({"model": "vllm", "messages": CHAT, "x_case": case})
    assert status == 200
    [event] = proxy.emitter.events
    assert (event.usage.prompt_tokens, event.usage.completion_tokens, event.quoted_cost) == (prompt, completion, cost)
    assert proxy.held() == (0, 0, 0, 0)


# -- the usage log refuses ------------------------------------------------------------------------

async def test_a_usage_log_that_cannot_accept_events_refuses_the_call_before_the_upstream(proxy: Proxy) -> None:
    """emitter.refusal() gives a reason: 503 service_unavailable naming it; no upstream call, no event, nothing held."""
    proxy.emitter.reason = "the spool disk is full"
    status, raw = await proxy.post({"model": "vllm", "messages": CHAT})
    assert status == 503
    assert orjson.loads(raw) == {"error": {
        "message": "the proxy cannot record calls right now (the spool disk is full); retry later",
        "type": "service_unavailable", "param": None, "code": "503"}}
    assert (proxy.upstream[SEEN], proxy.emitter.events) == ([], [])
    assert proxy.held() == (0, 0, 0, 0)


# -- shutdown -------------------------------------------------------------------------------------

async def test_shutdown_cancels_a_call_past_the_drain_time_and_records_it_once(proxy: Proxy) -> None:
    """A plain call that never gets its answer: after the 0.2 s drain it is cancelled, one 503 failure, nothing held."""
    call = asyncio.create_task(proxy.post({"model": "vllm", "messages": CHAT, "x_case": "hang"}))
    proxy.tasks.append(call)
    await wait_until(lambda: proxy.relay.book.in_flight == 1, "the call to be admitted")
    assert proxy.held()[:2] == (1, 1)
    await drain_calls(proxy.app)
    [event] = proxy.emitter.events
    assert (event.status, event.error_status, event.error_message) == ("failure", 503, "cancelled: the proxy shut down")
    assert proxy.held() == (0, 0, 0, 0)
    with pytest.raises(aiohttp.ClientError):
        await call  # the connection is closed: the call had no answer
    status, raw = await proxy.post({"model": "vllm", "messages": CHAT})  # once shutdown began, new calls are refused
    assert (status, orjson.loads(raw)["error"]["type"]) == (503, "service_unavailable")
    assert len(proxy.emitter.events) == 1


async def test_shutdown_cancels_a_stream_past_the_drain_time_with_the_usage_seen(proxy: Proxy) -> None:
    """A stream that stops after one usage chunk: cancelled at the drain's end, one failure with that chunk's usage."""
    call = asyncio.create_task(proxy.post({"model": "vllm", "messages": CHAT, "stream": True, "x_case": "hang_stream"}))
    proxy.tasks.append(call)
    await wait_until(lambda: proxy.relay.book.in_flight == 1 and len(proxy.upstream[SEEN]) == 1, "the stream to start")
    await drain_calls(proxy.app)
    [event] = proxy.emitter.events
    assert (event.status, event.error_status, event.stream) == ("failure", 503, True)
    assert (event.usage.prompt_tokens, event.usage.completion_tokens) == (100, 10)
    assert proxy.held() == (0, 0, 0, 0)


async def test_shutdown_lets_a_call_within_the_drain_time_finish(proxy: Proxy) -> None:
    """A call answered 0.3 s into a 5 s drain: the client gets its answer and one success is recorded."""
    object.__setattr__(proxy.app[SETTINGS], "shutdown_drain_s", 5.0)  # frozen settings: this test's longer drain
    call = asyncio.create_task(proxy.post({"model": "vllm", "messages": CHAT, "x_case": "slow"}))
    proxy.tasks.append(call)
    await wait_until(lambda: proxy.relay.book.in_flight == 1, "the call to be admitted")
    await drain_calls(proxy.app)
    status, raw = await call
    assert (status, orjson.loads(raw)["usage"]["completion_tokens"]) == (200, 40)
    assert [(e.status, e.quoted_cost) for e in proxy.emitter.events] == [("success", Decimal("0.000039"))]
    assert proxy.held() == (0, 0, 0, 0)


# -- a second settlement is refused ---------------------------------------------------------------

async def _call(proxy: Proxy) -> Call:
    caller = proxy.relay.auth.authenticate({"Authorization": f"Bearer {LIMITED}"})
    target = proxy.relay.router.pick("vllm")
    body = {"model": "vllm", "messages": CHAT}
    attribution = attribute(body, {}, caller)
    request = BudgetRequest("req-1", caller, "vllm", None, (), "acompletion", body)
    try:
        admission = proxy.guard.admit(request)
    except AwaitRenewal as short:  # the key's first call: its max_parallel_requests lease comes first
        admission = await short.admit_after_renewal()
    proxy.relay.book.opened()
    return Call("req-1", "acompletion", caller, target, attribution, admission, body, utcnow(), 0.0, None)


async def test_a_second_settlement_of_a_call_is_refused_logged_and_counted(proxy: Proxy) -> None:
    """finish then fail on one call: one event, the slot released once (never below zero), one double counted."""
    call = await _call(proxy)
    assert proxy.held()[:2] == (1, 1)
    proxy.relay.finish(call, TokenUsage(prompt_tokens=100, completion_tokens=40))
    proxy.relay.fail(call, 502, "late failure")
    assert [e.status for e in proxy.emitter.events] == ["success"]
    assert proxy.held() == (0, 0, 0, 1)


async def test_the_gate_refuses_to_release_one_admission_twice(proxy: Proxy) -> None:
    """BudgetGuard.settle twice with one admission: the slot and reservations are released once, one double counted."""
    call = await _call(proxy)
    event = proxy.relay.finish(call, TokenUsage(prompt_tokens=1))[0]
    proxy.guard.settle(call.admission, event)
    assert proxy.guard._accounts["parallel"][hash_key(LIMITED)].inflight == 0
    assert proxy.held() == (0, 0, 0, 1)


def test_an_account_releases_a_reservation_once() -> None:
    """Account.settle on a released reservation returns False and changes nothing."""
    account = Account()
    account.roll(None, None)
    reservation = account.reserve(Decimal("0.5"))
    assert account.settle(reservation, Decimal("0.25"), utcnow()) is True
    assert account.settle(reservation, Decimal("0.25"), utcnow()) is False
    assert (account.reserved, account.inflight, account.own) == (Decimal(0), 0, Decimal("0.25"))


# -- usage_from_openai is total -------------------------------------------------------------------

@pytest.mark.parametrize(("usage", "expected"), [
    ({"prompt_tokens": 100, "completion_tokens": 40}, (100, 40, 0, 0)),
    ({"prompt_tokens": 100, "prompt_tokens_details": [1], "completion_tokens_details": "x"}, (100, 0, 0, 0)),
    ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 30}}, (100, 0, 30, 0)),
    ({"prompt_tokens": "100", "completion_tokens": None, "cache_read_input_tokens": [1]}, (0, 0, 0, 0)),
    ({"prompt_tokens": -1, "completion_tokens": True}, (0, 0, 0, 0)),
    ({"prompt_tokens": math.nan, "completion_tokens": math.inf, "cache_creation_input_tokens": -math.inf}, (0, 0, 0, 0)),
    ({"prompt_tokens": 12.9, "completion_tokens": 1e23}, (12, MAX_TOKENS, 0, 0)),
    ({"prompt_tokens": 2**64, "completion_tokens": MAX_TOKENS, "completion_tokens_details": {"reasoning_tokens": 2**70}},
     (MAX_TOKENS, MAX_TOKENS, 0, MAX_TOKENS)),
    ("not usage", (0, 0, 0, 0)),
    ([{"prompt_tokens": 5}], (0, 0, 0, 0)),
])
def test_usage_from_openai_never_raises(usage: Any, expected: tuple[int, int, int, int]) -> None:
    """Whatever the usage object holds: whole counts in [0, 10**9], absent when not a finite number."""
    result = usage_from_openai(usage)
    assert (result.prompt_tokens, result.completion_tokens, result.cache_read_input_tokens, result.reasoning_tokens) == expected
    TokenUsage.model_validate(result.model_dump())  # a valid TokenUsage
