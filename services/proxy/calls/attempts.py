"""The attempts of one call: retries within its model group, then fallbacks to other groups
(policy.py decides), each attempt on a deployment the router picks (router.py), failing ones put to
rest (cooldown.py).

A failed attempt is neither charged nor recorded: while `call.retry_open` is set, the relay's
`fail` leaves the call unsettled, and only the outcome that reaches the client settles it: the
answer of the deployment that answered (`call.target` is then that deployment), or the last
failure. A stream is retried only before its first byte reaches the client (the relay clears
`retry_open` when it builds the stream's head). Budgets were reserved once, before the first
attempt, for the requested group."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from services.proxy.calls.call import Call
from services.proxy.errors import UpstreamError
from services.proxy.routing.policy import CallPlan, context_window_exceeded, falls_back, retry_delay_after, retryable
from services.proxy.routing.router import Router, Target

if TYPE_CHECKING:
    from services.proxy.calls.relay import Relay

ATTEMPTED_RETRIES, ATTEMPTED_FALLBACKS = "x-litellm-attempted-retries", "x-litellm-attempted-fallbacks"


async def attempt_until_answered(relay: Relay, call: Call, plan: CallPlan,
                                 attempt: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The first answer among the attempts the plan allows; else the last failure, settled and raised."""
    router = relay.router
    fallbacks = list(plan.fallbacks)
    window_fallbacks = list(plan.context_window_fallbacks)
    tried: set[str] = set()
    retries_left: int | None = None  # known once the group's first deployment fails
    call.retry_open = True
    try:
        while True:
            target = call.target
            try:
                return await (counted(router, target, attempt) if router.least_busy else attempt())
            except UpstreamError as exc:
                if not call.retry_open:  # the stream had started: its end was settled where it failed
                    raise
                error = exc
            note_failure(router, target, error.status)
            tried.add(target.model_id)
            if retries_left is None:
                retries_left = plan.retries_for(target.num_retries)
            if retries_left > 0 and retryable(error.status):
                retries_left -= 1
                call.attempted_retries += 1
                call.target = router.pick(target.model_group, tried=tried)
                if call.target.model_id in tried:  # nobody else to ask: give it a moment, or what it asked for
                    await asyncio.sleep(retry_delay_after(call.attempted_retries, error.retry_after_s))
                continue
            if window_fallbacks and context_window_exceeded(error.status, error.message):
                next_group = window_fallbacks.pop(0)
            elif fallbacks and falls_back(error.status, error.message):
                next_group = fallbacks.pop(0)
            else:
                break
            call.attempted_fallbacks += 1
            retries_left = None
            call.target = router.pick(next_group, tried=tried)
    finally:
        call.retry_open = False
    relay.fail(call, error.status, error.message, stream=call.body.get("stream") is True)
    error.headers = {"x-litellm-call-id": call.request_id, **attempt_headers(call)}
    raise error


async def single_attempt(router: Router, call: Call, attempt: Callable[[], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
    """A call with no retry or fallback configured: its one attempt settles itself."""
    try:
        return await (counted(router, call.target, attempt) if router.least_busy else attempt())
    except UpstreamError as error:
        note_failure(router, call.target, error.status)
        error.headers = {"x-litellm-call-id": call.request_id, **attempt_headers(call)}
        raise


async def counted(router: Router, target: Target, attempt: Callable[[], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """An attempt counted in flight on its deployment while it runs (least-busy reads the count)."""
    in_flight = router.in_flight
    in_flight[target.model_id] = in_flight.get(target.model_id, 0) + 1
    try:
        return await attempt()
    finally:
        in_flight[target.model_id] -= 1


def note_failure(router: Router, target: Target, status: int) -> None:
    if router.cooldowns is not None:
        router.cooldowns.failed(target.model_id, status, len(router.targets(target.model_group)))


def attempt_headers(call: Call) -> dict[str, str]:
    return {ATTEMPTED_RETRIES: str(call.attempted_retries), ATTEMPTED_FALLBACKS: str(call.attempted_fallbacks)}
