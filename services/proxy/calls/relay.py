"""A call on the LLM routes: authenticate, route, admit, call the upstream, quote the cost, answer, record.

Everything the hot path needs is prepared at start-up (targets, headers, timeouts, one connection
pool per upstream origin); a call does one JSON parse of the request, one serialisation of the
upstream body, one parse of the upstream answer (passed to the client byte for byte when it is
already OpenAI-shaped), one pricing, and one queue append for the usage event.

Every admitted call is settled exactly once (settlement.py): by `finish` or `fail`, or, when it
leaves its handler any other way (an exception, a cancellation), by `relay` itself as a failure."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import structlog
from aiohttp import web

from services.proxy.auth.keys import KEY_CATCH_UP_S, Authenticator, CallerIdentity, KeyCatchUp, authenticate_with_catch_up
from services.proxy.budget.admission import AwaitRenewal, BudgetGate, BudgetRequest
from services.proxy.calls.attempts import attempt_headers, attempt_until_answered, single_attempt
from services.proxy.calls.attribution import attribute, upstream_body
from services.proxy.calls.call import Call
from services.proxy.calls.cost import CostQuoter
from services.proxy.calls.limits import check as check_limits
from services.proxy.calls.messages import MessagesCall, auth_headers
from services.proxy.calls.response_ids import Owner
from services.proxy.calls.responses import ResponsesCall
from services.proxy.calls.mock import mock_completion
from services.proxy.calls.settlement import SettlementBook
from services.proxy.calls.streaming import relay_stream
from services.proxy.errors import InvalidRequest, KeyRefused, ServiceUnavailable, UpstreamError
from services.proxy.providers import wire
from services.proxy.providers.sse import format_money
from services.proxy.routing.policy import CallPlan, plan_for, request_timeout
from services.proxy.routing.router import ANTHROPIC, CHAT, EMBEDDING, IMAGE, TEXT, Router
from services.proxy.settings import ProxySettings
from services.proxy.transport.answer import Answer
from services.proxy.transport.http1 import Pool, Response, UpstreamConnectionError
from services.proxy.usage_log.emitter import UsageEmitter
from services.proxy.usage_log.record import usage_event
from shared.errors import TallyError
from shared.events import TokenUsage, UsageEvent, utcnow
from shared.metrics import Registry

log = structlog.get_logger(__name__)

_REQUIRED = {CHAT: "messages", TEXT: "prompt", EMBEDDING: "input", IMAGE: "prompt"}
_random = random.Random(os.urandom(32))  # request ids need uniqueness, not secrecy; urandom per call is slow
_UUID4_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)


def new_request_id() -> str:
    """A random (version 4) UUID without a syscall per call."""
    value = (_random.getrandbits(128) & _UUID4_MASK) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def read_body(request: web.Request) -> bytes:
    """`request.read()`, without its loop of readany() calls when the whole body has already
    arrived (a chat request usually comes in one packet with its head). The size limit is
    aiohttp's: over client_max_size, 413."""
    content = request.content
    if not content.is_eof():
        return await request.read()
    raw = content.read_nowait()
    limit = request.client_max_size
    if limit and len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(limit, len(raw))
    return raw


def validate(call_type: str, body: Any) -> str:
    """The requested model, after the shape checks that must fail before any upstream call."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required and must be a string", param="model")
    field = _REQUIRED[call_type]
    value = body.get(field)
    if call_type == CHAT:
        if not isinstance(value, list) or not value:
            raise InvalidRequest("messages must be a non-empty list of message objects", param="messages")
        for message in value:
            if not isinstance(message, dict):
                raise InvalidRequest("messages must be a non-empty list of message objects", param="messages")
    elif call_type == IMAGE:
        if not isinstance(value, str) or not value:
            raise InvalidRequest("prompt must be a non-empty string", param="prompt")
    elif not isinstance(value, (str, list)) or not value:
        raise InvalidRequest(f"{field} must be a string or a list", param=field)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    return model


class Relay:
    """The call machinery of the LLM routes (routes.py). Built at start-up, once the collaborators
    it is given are open: the budget gate that admits and settles, the usage emitter that records,
    one keep-alive pool per upstream origin, and the key table's follower (None: no catch-up)."""

    def __init__(self, settings: ProxySettings, router: Router, auth: Authenticator, quoter: CostQuoter, *,
                 gate: BudgetGate, emitter: UsageEmitter, pools: Mapping[str, Pool],
                 key_sync: KeyCatchUp | None = None, registry: Registry | None = None) -> None:
        self.settings = settings
        self.router = router
        self.auth = auth
        self.quoter = quoter
        self.gate = gate
        self.emitter = emitter
        self.pools = pools
        self.key_sync = key_sync
        self.background: set[asyncio.Task[None]] = set()  # streams finishing after their client left
        self.book = SettlementBook(registry)
        self.stopping = False  # set when shutdown begins: new calls are refused, streams are not handed off
        # Plain calls: the whole call. Streams: until the headers, then between two reads.
        # A deployment's own timeout, else router_settings.timeout, else litellm_settings.request_timeout.
        default_timeout = router.policy.timeout_s or settings.upstream_timeout_s
        self.timeouts = {t.model_id: t.timeout_s or default_timeout for t in router.all_targets()}
        self.debug_log = settings.common.log_level.lower() == "debug"

    # -- the call -------------------------------------------------------------------------------

    async def relay(self, request: web.Request, call_type: str, inbound: type[MessagesCall | ResponsesCall] | None = None
                    ) -> web.StreamResponse:
        """One call; `inbound` is the API the caller speaks when it is not OpenAI chat's (/v1/messages, /v1/responses)."""
        t0 = time.perf_counter()
        start_time = utcnow()
        headers = request.headers if inbound is None else auth_headers(request.headers)
        try:
            caller = self.auth.authenticate(headers)
        except KeyRefused:  # the slow path: the key table may be a moment behind another replica
            caller = await authenticate_with_catch_up(self.auth, headers, self.key_sync, KEY_CATCH_UP_S)
        raw = await read_body(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
        api = None
        if inbound is not None:
            api = inbound(body, request.headers, Owner(self.settings.master_key or "", caller.api_key_hash))
            body = api.openai_body
        try:
            model = validate(call_type, body)
        except InvalidRequest as exc:
            if exc.param == "model":
                exc.message += f". Available models: [{', '.join(filter(caller.allows_model, self.router.model_names))}]"
            raise
        target = self.router.pick(model, caller.allows_model)
        if target.wire == ANTHROPIC and call_type != CHAT:  # refused before anything is held or recorded
            raise InvalidRequest(f"model {model!r} is served by Anthropic, which has no such API: Anthropic models serve "
                                 "chat completions only (/chat/completions, /v1/messages)", param="model")
        if api is not None and isinstance(api, ResponsesCall) and api.previous is not None:  # continue where the conversation is stored
            stored = self.router.deployment(api.previous.model_id)
            target = stored if stored is not None and stored.model_group == target.model_group else target
        self.auth.check_model(caller, model)
        attribution = attribute(body, request.headers, caller)
        check_limits(self.settings.edge_limits, call_type, body, attribution, caller)  # before anything is paid for
        plan = self.plan(caller, model, body, target.num_retries)
        timeout_s = None if "timeout" not in body else request_timeout(body["timeout"])
        sent = upstream_body(body, call_type)
        self.check_open()
        request_id = new_request_id()
        fallback_groups = () if plan is None else (*plan.fallbacks, *plan.context_window_fallbacks)
        budget_request = BudgetRequest(request_id, caller, model, attribution.end_user, attribution.request_tags, call_type, body,
                                       fallback_groups)
        try:
            admission = self.gate.admit(budget_request)
        except AwaitRenewal as short:  # the budget lease is too small for this call: wait (bounded) for more
            admission = await short.admit_after_renewal(self.check_open)
        # From here on the call holds budget and limits: it is settled exactly once, whatever happens.
        self.book.opened()
        call = Call(request_id, call_type, caller, target, attribution, admission, sent, start_time, t0, request.remote, api,
                    timeout_s=timeout_s)
        task = asyncio.current_task()
        tasks = self.book.tasks
        tasks.add(task)  # type: ignore[arg-type]
        error: BaseException | None = None
        try:
            if attribution.mock_response is not None and call_type in (CHAT, TEXT) and api is None:
                return await self._mock(request, call)
            if call.body.get("stream") is True:
                attempt = functools.partial(relay_stream, self, request, call)
            else:
                attempt = functools.partial(self._plain, call)
            if plan is None:
                return await single_attempt(self.router, call, attempt)
            return await attempt_until_answered(self, call, plan, attempt)
        except BaseException as exc:
            error = exc
            raise
        finally:
            tasks.discard(task)  # type: ignore[arg-type]
            if not call.settled and not call.detached:
                self.abandon(call, error)

    def plan(self, caller: CallerIdentity, model: str, body: dict[str, Any], deployment_retries: int | None = None
             ) -> CallPlan | None:
        """The call's retries and fallbacks (None: one attempt), checked before anything is held: a
        fallback group the request names must exist and be one the caller's key may use (the
        config's fallbacks are passed over where the key may not)."""
        policy = self.router.policy
        if (policy.plain and not deployment_retries and "num_retries" not in body and "fallbacks" not in body
                and "context_window_fallback_dict" not in body):
            return None
        plan = plan_for(policy, model, body, caller.allows_model)
        for group in (*plan.fallbacks, *plan.context_window_fallbacks):
            if not self.router.knows(group):
                raise InvalidRequest(f"fallback model {group!r} is not configured", param="fallbacks")
            self.auth.check_model(caller, group)
        if plan.retries_for(deployment_retries) == 0 and not plan.fallbacks and not plan.context_window_fallbacks:
            return None
        return plan

    def check_open(self) -> None:
        """Refuse a call, before anything is held or paid for, that could not be recorded."""
        if self.stopping:
            raise ServiceUnavailable("the proxy is shutting down; retry the call (another replica will take it)")
        reason = self.emitter.refusal()
        if reason is not None:
            raise ServiceUnavailable(f"the proxy cannot record calls right now ({reason}); retry later")

    async def _plain(self, call: Call) -> web.Response:
        target = call.target
        if target.native is not None:
            await target.native.prepare()
        shape = wire if call.inbound is None else call.inbound  # the caller's API: OpenAI chat's, or another
        path, payload, header_lines = shape.upstream_request(target, call.call_type, call.body, stream=False)
        pool = self.pools[target.origin]
        t_up = time.perf_counter()
        response: Response | None = None
        deadline = pool.deadline(call.timeout_s or self.timeouts[target.model_id])
        try:
            response = await pool.post(path, payload, header_lines, deadline)
            raw = await response.read()
        except TimeoutError as exc:
            if response is not None:
                response.release()
            self.fail(call, 504, f"upstream {target.api_base} did not answer within the timeout")
            raise UpstreamError(f"Request timed out: upstream {target.api_base} did not answer in time", 504, type="timeout") from exc
        except UpstreamConnectionError as exc:
            if response is not None:
                response.release()
            self.fail(call, 502, f"upstream {target.api_base} unreachable: {exc}")
            raise UpstreamError(f"upstream {target.api_base} unreachable: {exc}", 502, type="api_connection_error") from exc
        except BaseException:  # cancelled (shutdown): relay() settles the call; the connection is closed
            if response is not None:
                response.release()
            raise
        status = response.status
        upstream_s = time.perf_counter() - t_up
        if status >= 400:
            error = wire.upstream_error(target, status, raw, response.headers)
            self.fail(call, status, error.message)
            raise error
        try:
            if call.inbound is None:
                data, usage, response_model = wire.parse_response(target, call.call_type, call.body, raw, response.headers)
            else:
                data, usage, response_model = call.inbound.parse_response(target, call.call_type, call.body, raw)
        except UpstreamError as error:
            self.fail(call, error.status, error.message)
            raise
        return self.answer(call, data, usage, response_model, upstream_s)

    async def _mock(self, request: web.Request, call: Call) -> web.StreamResponse:
        content = call.attribution.mock_response or ""
        if call.body.get("stream") is True:
            return await relay_stream(self, request, call, mock=content)
        completion = mock_completion(call.call_type, call.target.model_group, content, call.request_id)
        usage = TokenUsage(prompt_tokens=10, completion_tokens=20)
        return self.answer(call, orjson.dumps(completion), usage, None, 0.0)

    # -- the outcome ----------------------------------------------------------------------------

    def answer(self, call: Call, data: bytes, usage: TokenUsage, response_model: str | None, upstream_s: float) -> Answer:
        event, cost, key_spend = self.finish(call, usage, response_model=response_model)
        headers = self.call_headers(call, cost, key_spend)
        total = time.perf_counter() - call.t0
        headers["x-litellm-response-duration-ms"] = f"{total * 1000:.3f}"
        headers["x-litellm-overhead-duration-ms"] = f"{(total - upstream_s) * 1000:.3f}"
        # Every value is the call id or a number: no line to check for newlines.
        return Answer(call.target.answer_lines + "".join([f"{name}: {value}\r\n" for name, value in headers.items()]), data)

    def headers(self, call: Call, cost: Decimal | None, key_spend: Decimal | None) -> dict[str, str]:
        """Every x-litellm-* header of the call, the deployment's included. A stream asks for them
        as its first byte is about to leave: from then on, no other attempt may follow."""
        call.retry_open = False
        return {**call.target.response_headers, **self.call_headers(call, cost, key_spend)}

    def call_headers(self, call: Call, cost: Decimal | None, key_spend: Decimal | None) -> dict[str, str]:
        """The x-litellm-* headers that vary by call."""
        headers = {"x-litellm-call-id": call.request_id, **attempt_headers(call)}
        if cost is not None:
            headers["x-litellm-response-cost"] = format_money(cost)
        if key_spend is not None:
            headers["x-litellm-key-spend"] = format_money(key_spend)
        if call.caller.max_budget is not None:
            headers["x-litellm-key-max-budget"] = format_money(call.caller.max_budget)
        if call.admission.soft_budget_exceeded:
            headers["x-litellm-soft-budget-exceeded"] = "true"
        return headers

    def finish(self, call: Call, usage: TokenUsage, *, response_model: str | None = None, stream: bool = False,
               completion_start_time: datetime | None = None, metadata_extra: dict | None = None
               ) -> tuple[UsageEvent, Decimal | None, Decimal | None]:
        """Price, settle and record a successful call. Returns (event, cost, key spend)."""
        event = usage_event(
            request_id=call.request_id, call_type=call.call_type, caller=call.caller, attribution=call.attribution,
            target=call.target, start_time=call.start_time, end_time=utcnow(), usage=usage, stream=stream,
            completion_start_time=completion_start_time, response_model=response_model,
            soft_budget_exceeded=call.admission.soft_budget_exceeded, requester_ip_address=call.requester_ip,
            metadata_extra=metadata_extra, lease_holder=call.admission.lease_holder,
        )
        event, cost = self.quoter.quote(event)
        if not self.book.close(call):
            return event, cost, None
        key_spend = self.gate.settle(call.admission, event)
        self.record(event)
        return event, cost, key_spend

    def abandon(self, call: Call, error: BaseException | None) -> None:
        """Settle, as a failure without cost, a call that left its handler without an outcome."""
        if isinstance(error, TallyError):
            status, message = error.status, error.message
        elif isinstance(error, asyncio.CancelledError):
            status, message = (503, "cancelled: the proxy shut down") if self.stopping else (499, "cancelled before it was answered")
        elif error is None:
            status, message = 500, "the call ended without an outcome"
        else:
            status, message = 500, f"internal error: {type(error).__name__}: {error}"
        self.fail(call, status, message, stream=call.body.get("stream") is True)

    def fail(self, call: Call, status: int, message: str, usage: TokenUsage | None = None, *, stream: bool = False) -> None:
        """Record a failed call (no cost quoted) and release the budget admission; a failed attempt
        that another may follow is neither (attempts.py)."""
        if call.retry_open:
            log.info("upstream_attempt_failed", request_id=call.request_id, model_group=call.target.model_group,
                     api_base=call.target.api_base, status=status, error=message[:300])
            return
        event = usage_event(
            request_id=call.request_id, call_type=call.call_type, caller=call.caller, attribution=call.attribution,
            target=call.target, start_time=call.start_time, end_time=utcnow(), usage=usage or TokenUsage(),
            stream=stream, error_status=status, error_message=message[:2000],
            soft_budget_exceeded=call.admission.soft_budget_exceeded, requester_ip_address=call.requester_ip,
            lease_holder=call.admission.lease_holder,
        )
        if not self.book.close(call):
            return
        self.gate.settle(call.admission, event)
        self.record(event)
        log.warning("upstream_failed", request_id=call.request_id, model_group=call.target.model_group,
                    api_base=call.target.api_base, status=status, error=message[:300])

    def record(self, event: UsageEvent) -> None:
        self.emitter.emit(event)
        if self.debug_log:
            log.debug("call", request_id=event.request_id, model_group=event.model_group, status=event.status,
                      cost=str(event.quoted_cost), prompt_tokens=event.usage.prompt_tokens,
                      completion_tokens=event.usage.completion_tokens)

