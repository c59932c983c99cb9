"""Exactly one settlement per admission, and the drain at shutdown.

Every call the budget gate admits holds something until it is settled: budget reservations, a
max_parallel_requests slot, a place in `proxy_admissions_in_flight`. `SettlementBook.close(call)`
is the one gate every settlement passes (Relay.finish and Relay.fail): the first closes the call,
any later one is refused, logged at error level and counted in
`proxy_double_settlements_total` (a second settlement is always a bug: it would free headroom that
another call holds, and record the call twice). Relay.relay settles, as a failure, whatever call
leaves its handler unsettled (an exception, a cancellation), so nothing stays held until restart.

At shutdown `drain` lets the calls in flight finish for up to the drain time, then cancels the rest;
a cancelled call settles itself on the way out (as a failure with the usage seen so far), before
the usage emitter closes. See docs/settlement.md."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

import structlog

from services.proxy.budget.admission import DOUBLE_SETTLEMENTS
from shared.metrics import Metric, Registry

log = structlog.get_logger(__name__)

CANCEL_GRACE_S = 5.0  # how long cancelled calls get to record themselves at shutdown


class Settleable(Protocol):
    request_id: str
    settled: bool


class SettlementBook:
    """This process's admitted calls: how many are in flight, their tasks, and the refused doubles."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.in_flight = 0
        self.tasks: set[asyncio.Task] = set()  # type: ignore[type-arg]  # handlers serving an admitted call
        if registry is not None:
            self.doubles = registry.counter(*DOUBLE_SETTLEMENTS)
            registry.gauge("proxy_admissions_in_flight", "Calls admitted and not yet settled",
                           callback=lambda: float(self.in_flight))
        else:
            self.doubles = Metric(DOUBLE_SETTLEMENTS[0], DOUBLE_SETTLEMENTS[1], "counter")

    def opened(self) -> None:
        self.in_flight += 1

    def close(self, call: Settleable) -> bool:
        """True for the call's first settlement; False (logged, counted) for any later one."""
        if call.settled:
            self.doubles.inc()
            log.error("double_settlement", request_id=call.request_id, refused="a second settlement of one call")
            return False
        call.settled = True
        self.in_flight -= 1
        return True


async def drain(tasks: Iterable[asyncio.Task], timeout: float, grace: float = CANCEL_GRACE_S) -> tuple[int, int]:  # type: ignore[type-arg]
    """Wait up to `timeout` for `tasks` to end, then cancel those left and wait up to `grace` for
    them to settle themselves. Returns (finished, cancelled)."""
    pending = {task for task in tasks if not task.done()}
    if not pending:
        return 0, 0
    done, left = await asyncio.wait(pending, timeout=timeout) if timeout > 0 else (set(), pending)
    for task in left:
        task.cancel()
    if left:
        _, stuck = await asyncio.wait(left, timeout=grace)
        if stuck:
            log.error("calls_not_settled_at_shutdown", calls=len(stuck), waited_s=grace)
    return len(done), len(left)
