"""The budget hook: admit a call before it goes upstream, settle it once its cost is known.

`BudgetGate` is what the Relay is given; the BudgetGuard (guard.py) implements it from memory
(totals.v1, in-flight reservations, budget leases). Both calls are synchronous on purpose: the
request path does no I/O. The one exception is a call that does not fit this worker's budget lease:
`admit` raises AwaitRenewal, and the caller awaits `admit_after_renewal()` (bounded) instead of
being refused while budget is left unleased."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from services.proxy.auth.keys import CallerIdentity
from shared.events import UsageEvent

# Second settlements of one admission: the guard refuses them, the settlement counts them.
DOUBLE_SETTLEMENTS = ("proxy_double_settlements_total", "Second settlements of one admission, refused (each one is a bug)")


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """What a gate may look at before the upstream is called."""

    request_id: str
    caller: CallerIdentity
    model_group: str
    end_user: str | None
    tags: tuple[str, ...]
    call_type: str
    body: Mapping[str, Any] | None = None  # the request body: the budget sizes its reservation from it
    # Model groups the router may fall back to: the reservation covers the dearest of them too, since
    # the call is booked at the price of whichever deployment answers.
    fallback_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Admission:
    """A gate's yes. `reservation` is the gate's own token (e.g. an amount held back) for settle."""

    request: BudgetRequest
    soft_budget_exceeded: bool = False
    reservation: object = None
    lease_holder: str | None = None  # the budget lease holder that admitted it: named on its usage event


class AwaitRenewal(Exception):
    """Not a refusal: the call waits for a lease renewal, then is admitted or refused."""

    def __init__(self, retry: Callable[[Callable[[], None]], Awaitable[Admission]]) -> None:
        super().__init__("the call does not fit this worker's budget lease")
        self._retry = retry

    async def admit_after_renewal(self, still_open: Callable[[], None] = lambda: None) -> Admission:
        """The Admission, or the refusal (e.g. BudgetExceeded, 503 when no lease came in time).
        `still_open` runs before each new judgement and may raise to stop the call (shutdown began
        during the wait): then nothing is held."""
        return await self._retry(still_open)


class BudgetGate(Protocol):
    def admit(self, request: BudgetRequest) -> Admission:
        """Say yes (return an Admission) or no (raise a shared.errors.TallyError, e.g. 400/429), or
        raise AwaitRenewal to be asked again after a short wait."""
        ...

    def settle(self, admission: Admission, event: UsageEvent) -> Decimal | None:
        """The call finished (success or failure; event.quoted_cost is its cost or None).
        Release the reservation, count the cost, and return the key's spend including this
        call (for x-litellm-key-spend), or None when unknown."""
        ...
