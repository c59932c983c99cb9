"""This worker's side of the budget leases: renewals off the request path.

`renew` asks the authority (a LeaseStore) for more of an account's budget window, one renewal per
account at a time (callers waiting on the same account share it). `run` is the background loop
that keeps leases useful and small:

- renews ahead of need, when an account's headroom falls below half of its last slice (or below
  its largest estimate), so a busy key rarely waits;
- heartbeats a lease that still holds headroom or calls in flight, reporting what it used, so it
  does not expire while its holder lives (the authority treats a lease not renewed within the TTL
  as its dead holder's, and the guard admits nothing on one not renewed for 0.8 TTL); at each
  heartbeat it measures the account's recent use here and trims the lease to `horizon_s` of it (at
  least one call), and asks for no more than that when it renews ahead of need: a worker that dies
  holds little unused;
- returns what an idle account holds (nothing admitted for `idle_s`, nothing in flight): its grant
  falls to what it used, and the rest is free for every other worker;
- trims a lease to what is committed plus one call once the authority said nothing is left
  unleased (`scarce`), so the last of a budget goes to whichever worker the calls reach;
- forgets, after `final_fresh_s`, that the authority had nothing left to grant, so the next call
  that does not fit asks again (another worker may have returned a lease since).

`close` (at shutdown, after the calls in flight were drained) returns every lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

import structlog

from services.proxy.budget.core import SLOTS, ZERO, Account, counted_spend
from services.proxy.budget.lease_store import LeasesUnavailable, LeaseStore, WindowKey
from services.proxy.budget.leases import LeaseAsk
from services.proxy.budget.rate_limits import KINDS as RATE_KINDS
from services.proxy.budget.totals import TotalsView
from shared.events import HOLDER_COUNTED_ENTITY_TYPES, utcnow

log = structlog.get_logger(__name__)

CONCURRENT_KIND = RATE_KINDS[SLOTS]  # max_parallel_requests: a dead holder's slots come back at expiry
EXPIRY_MARGIN = 0.8  # a worker stops using a slots lease after this much of the TTL without a renewal


class LeaseKeeper:
    def __init__(self, store: LeaseStore, holder: str, totals: TotalsView, *, ttl_s: float = 10.0,
                 idle_s: float = 1.0, tick_s: float = 0.05, final_fresh_s: float = 0.25, horizon_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.holder = holder
        self.totals = totals
        self.ttl_s = ttl_s
        self.idle_s = idle_s
        self.tick_s = tick_s
        self.final_fresh_s = final_fresh_s
        self.horizon_s = horizon_s
        self.clock = clock
        # Accounts this worker holds headroom or calls in flight for, when each last reported, its
        # admissions as last seen and since when they have not changed; and when each heard "final".
        self._held: dict[int, Account] = {}
        self._reported: dict[int, float] = {}
        self._seen: dict[int, tuple[int, float]] = {}
        self._beat: dict[int, tuple[float, Decimal]] = {}  # last heartbeat: when, and what was committed then
        self._need: dict[int, Decimal] = {}  # horizon_s of the account's use here, as the last heartbeats measured
        self._finals: dict[int, tuple[Account, float]] = {}
        self.renewals = 0
        self.failures = 0

    # -- renewals ------------------------------------------------------------------------------

    async def renew(self, account: Account, want: Decimal) -> None:
        """Ask for at least `want` more (0: only report); shares a renewal already in flight."""
        task = account.renewal
        if not isinstance(task, asyncio.Task) or task.done():
            task = self._start(account, want)
        await asyncio.shield(task)

    async def _renew(self, account: Account, want: Decimal, trim_to: Decimal | None = None,
                     most: Decimal | None = None) -> None:
        """`trim_to`: first lower the lease to it (a return: what is committed), before asking;
        `most`: the most new headroom worth holding."""
        spec = account.spec
        if spec is None or spec.max_budget is None:
            return
        generation = account.generation
        if trim_to is not None and trim_to < account.lease:
            account.lease = trim_to  # from now on nothing more is admitted on the old grant
        total = self.totals.get(spec.kind, spec.entity_id)
        ask = LeaseAsk(self.holder, spec.max_budget, counted_spend(total, account.start), keep=account.lease,
                       used=account.own, inflight=account.reserved, want=want, most=most,
                       concurrent=spec.kind == CONCURRENT_KIND, ledger_counted=spec.kind in HOLDER_COUNTED_ENTITY_TYPES)
        window = WindowKey(spec.kind, spec.entity_id, account.start, account.end)
        sent = self.clock()
        try:
            result = await self.store.renew(window, ask, self.ttl_s)
        except LeasesUnavailable:
            self.failures += 1
            raise
        self.renewals += 1
        if account.generation != generation:
            return  # the window rolled while the renewal ran: the grant is for one that is over
        key = id(account)
        # The authority's TTL runs from its commit, after `sent`; a margin covers the clocks' drift.
        account.expires = sent + self.ttl_s * EXPIRY_MARGIN
        account.lease = result.granted
        account.scarce = result.final
        # Refuse without asking again only when no other worker holds a call's worth unused either:
        # those that do give it back (trim) once they hear that nothing is left.
        account.final = result.final and result.others_unused < max(want, account.want)
        if result.headroom > ZERO:
            account.slice = result.headroom
        now = self.clock()
        self._reported[key] = now
        if result.final:
            self._finals[key] = (account, now)
        if account.lease > account.own:
            self._held[key] = account
        else:
            self._forget(key)

    def _forget(self, key: int) -> None:
        self._held.pop(key, None)
        self._reported.pop(key, None)
        self._seen.pop(key, None)
        self._beat.pop(key, None)
        self._need.pop(key, None)

    # -- the background loop -------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)  # a period, not a wait for a condition
            self.tick()

    def tick(self) -> None:
        """One pass over the accounts holding something: renew ahead, heartbeat, return if idle."""
        now = self.clock()
        for key, (account, since) in list(self._finals.items()):
            if now - since >= self.final_fresh_s:
                account.final = False
                del self._finals[key]
        for key, account in list(self._held.items()):
            task = account.renewal
            if isinstance(task, asyncio.Task) and not task.done():
                continue
            if account.end is not None and utcnow() >= account.end:  # the window is over: so is its lease
                self._forget(key)
                continue
            admitted, idle_since = self._seen.get(key, (-1, now))
            if account.admitted != admitted or account.inflight:
                self._seen[key] = (account.admitted, now)
                idle_since = now
            headroom = account.lease - account.committed
            if now - idle_since >= self.idle_s:
                self._start(account, ZERO, trim_to=account.committed)
            elif account.scarce and headroom > account.want:
                self._start(account, ZERO, trim_to=account.committed + account.want)
            elif not account.scarce and headroom < max(account.slice / 2, account.want):  # scarce: calls ask
                need = self._need.get(key)
                self._start(account, max(account.want, min(account.slice, need) if need else account.slice), most=need)
            elif now - self._reported.get(key, now) >= self.ttl_s / 3:
                self._heartbeat(key, account, now)

    def _heartbeat(self, key: int, account: Account, now: float) -> None:
        """Report, and keep no more headroom than horizon_s of the use measured since the last heartbeat."""
        committed = account.committed
        trim_to = None
        then = self._beat.get(key)
        if then is not None and now > then[0]:
            rate = max(ZERO, committed - then[1]) / Decimal(str(now - then[0]))
            need = self._need[key] = max(account.want, rate * Decimal(str(self.horizon_s)))
            if committed + need < account.lease:
                trim_to = committed + need
                account.slice = need  # renewals ahead of need start from this size now
        self._beat[key] = (now, committed)
        self._start(account, ZERO, trim_to=trim_to)

    def _start(self, account: Account, want: Decimal, trim_to: Decimal | None = None,
               most: Decimal | None = None) -> asyncio.Task:  # type: ignore[type-arg]
        task = account.renewal = asyncio.ensure_future(self._renew(account, want, trim_to, most))
        task.add_done_callback(_log_failure)
        return task

    async def close(self, timeout: float = 5.0) -> None:
        """Return every lease (the calls were drained before this): what was not used is free at once."""
        pending = [t for t in (a.renewal for a in self._held.values()) if isinstance(t, asyncio.Task) and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        returns = [asyncio.ensure_future(self._renew(account, ZERO, trim_to=account.committed))
                   for account in list(self._held.values())]
        if not returns:
            return
        done, left = await asyncio.wait(returns, timeout=timeout)
        for task in left:
            task.cancel()
        failed = sum(1 for task in done if task.exception() is not None)
        log.info("budget_leases_returned", returned=len(done) - failed, failed=failed + len(left))


def _log_failure(task: asyncio.Task) -> None:  # type: ignore[type-arg]
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("budget_lease_renewal_failed", error=str(exc)[:300])
