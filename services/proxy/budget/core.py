"""The budget arithmetic of one proxy worker: plain code, no I/O, exact Decimals.

Each budgeted entity (key, team, internal user, customer, ...) has, in this worker, an `Account` for
its current window: what this worker has itself committed there (settled costs + reservations of
calls in flight), which of its settled costs the ledger's total may not show yet, and its *lease*:
how much of the window's budget the authority (leases.py, kept in Postgres) has granted it.

A call estimated at `e` is admitted for an entity with max_budget when it fits the lease:

  own settled + reserved + e <= lease

or, when the authority has nothing more to grant (`final`), as this worker's last call of the
window: nothing of the entity in flight here and the lease not yet used up. That call may pass the
lease by at most its own cost: the "one request per worker" of the bound in docs/budgets.md. A call
that fits neither is *short*: it waits (bounded) for a renewal instead of being refused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from shared.budget_windows import effective_start, next_reset

ZERO = Decimal(0)
MONEY, REQUESTS, TOKENS, SLOTS = "money", "requests", "tokens", "slots"  # what an account counts
RESETTABLE = frozenset({"key", "team"})  # what /global/spend/reset zeroes (as LiteLLM does)


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """An entity's limits, parsed once when its EntityChanged is applied."""

    kind: str  # "key" | "team" | "user" | "customer"
    entity_id: str
    max_budget: Decimal | None = None
    soft_budget: Decimal | None = None
    anchor: datetime | None = None  # created_at: budget windows are counted from it
    duration: timedelta | None = None
    blocked: bool = False

    @property
    def budgeted(self) -> bool:
        return self.max_budget is not None or self.soft_budget is not None


@dataclass(frozen=True, slots=True)
class LedgerTotal:
    """The latest EntityTotal for an entity (the ledger's count, lagging by well under a second)."""

    spend: Decimal
    as_of: datetime  # event time (start_time) of the latest priced call counted
    window_start: datetime | None = None
    budget_reset_at: datetime | None = None


def window_of(spec: BudgetSpec, now: datetime, last_reset: datetime | None) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the window holding `now`: the ledger's own rule (shared.budget_windows),
    so proxy and ledger put a call in the same window. None start: counting since forever."""
    reset = last_reset if spec.kind in RESETTABLE else None
    start = effective_start(spec.anchor, spec.duration, now, reset)
    end = next_reset(spec.anchor, spec.duration, now)
    return start, end


def counted_spend(total: LedgerTotal | None, start: datetime | None) -> Decimal:
    """The ledger's spend that belongs to the window starting at `start`. A total whose latest
    counted call is older than the window counts nothing in it (the window rolled, or a reset)."""
    if total is None:
        return ZERO
    if start is not None and total.as_of < start:
        return ZERO
    return total.spend


PENDING_BUCKET = timedelta(milliseconds=50)


class Account:
    """This replica's own side of one entity's budget in one window."""

    __slots__ = ("start", "end", "generation", "own", "reserved", "inflight", "pending", "pending_sum",
                 "spec", "reset_seen", "lease", "final", "scarce", "slice", "want", "admitted", "renewal", "expires")

    def __init__(self) -> None:
        self.spec: BudgetSpec | None = None  # the limits the window was computed from
        self.reset_seen: datetime | None = None  # the global reset the window was computed with
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.generation = -1  # bumped at every window change: reservations of older ones lapse
        self.own = ZERO  # settled costs of calls this replica admitted in this window
        self.reserved = ZERO  # estimates of calls in flight
        self.inflight = 0
        self.pending: deque[tuple[datetime, Decimal]] = deque()  # settled, maybe not counted yet
        self.pending_sum = ZERO
        self.lease = ZERO  # granted by the authority for this window: own + reserved stays within it
        self.final = False  # the authority's last word: nothing left unleased, nor unused by other workers
        self.scarce = False  # nothing left unleased: keep no more than one call's worth beyond what is committed
        self.slice = ZERO  # the headroom the last renewal added (renewals start before it runs out)
        self.want = ZERO  # the largest estimate reserved in this window: what a renewal asks for at least
        self.admitted = 0  # admissions so far (the lease keeper tells an idle account by it)
        self.renewal: object = None  # the lease keeper's renewal in flight, if any
        self.expires = 0.0  # (monotonic) the lease may have expired at the authority from then on

    def roll(self, start: datetime | None, end: datetime | None) -> None:
        """A new window: nothing committed, nothing leased (the old window's lease lapses with it)."""
        self.start, self.end = start, end
        self.generation += 1
        self.own = ZERO
        self.reserved = ZERO
        self.pending.clear()
        self.pending_sum = ZERO
        self.lease = ZERO
        self.final = False
        self.scarce = False
        self.slice = ZERO
        self.want = ZERO

    @property
    def committed(self) -> Decimal:
        return self.own + self.reserved

    def uncounted(self, as_of: datetime | None) -> Decimal:
        """Own settled costs the ledger total (counted up to `as_of`) does not show yet."""
        pending = self.pending
        if as_of is not None:
            while pending and pending[0][0] <= as_of:
                self.pending_sum -= pending.popleft()[1]
        return self.pending_sum

    def reserve(self, estimate: Decimal, measure: str = MONEY) -> Reservation:
        self.reserved += estimate
        self.inflight += 1
        self.admitted += 1
        if estimate > self.want:
            self.want = estimate
        return Reservation(self, self.generation, estimate, measure)

    def settle(self, reservation: Reservation, cost: Decimal, event_time: datetime) -> bool:
        """Release a reservation and count the call's real cost, if its window is still current.
        Returns False, changing nothing, for a reservation already released: a second release
        would free headroom that another call holds (the caller reports it as a bug)."""
        if reservation.released:
            return False
        reservation.released = True
        self.inflight -= 1
        if reservation.generation != self.generation:
            return True  # the window rolled (or spend was reset) while the call ran: it belongs to the old one
        self.reserved -= reservation.estimate
        if cost:
            self.own += cost
            self.pending_sum += cost
            pending = self.pending
            if pending and abs(event_time - pending[-1][0]) < PENDING_BUCKET:
                # One entry per ~50 ms of calls, so memory stays bounded while the ledger is slow
                # or down. The merged entry waits for the later of the two times: until then the
                # ledger may count part of it too, which can only overstate spend, never hide it.
                last_time, last_cost = pending[-1]
                pending[-1] = (max(last_time, event_time), last_cost + cost)
            else:
                pending.append((event_time, cost))
        return True


class Reservation:
    """One admission's hold on one account: released exactly once, with the call's cost in the
    account's measure (money for a budget, 1 for rpm, its tokens for tpm)."""

    __slots__ = ("account", "generation", "estimate", "measure", "released")

    def __init__(self, account: Account, generation: int, estimate: Decimal, measure: str = MONEY) -> None:
        self.account = account
        self.generation = generation
        self.estimate = estimate
        self.measure = measure
        self.released = False


class Verdict(NamedTuple):  # a tuple: built on every call, so cheap to make
    admitted: bool
    believed_spend: Decimal  # ledger total + own not yet counted + reserved (before this call)
    last_call: bool = False  # admitted as the window's last call in this worker
    short: bool = False  # not refused: the lease is too small, a renewal may make it fit


def judge(account: Account, counted: Decimal, as_of: datetime | None, estimate: Decimal, waited: bool = False) -> Verdict:
    """May a call estimated at `estimate` start? See the module docstring. `waited`: renewals were
    just awaited for this call, so a call that still does not fit is refused, not short again (and
    may be the last call once nothing is left unleased, though other workers still hold some)."""
    reserved = account.reserved
    believed = counted + account.uncounted(as_of) + reserved
    committed = account.own + reserved
    if committed + estimate <= account.lease:
        return Verdict(True, believed)
    if account.final or (waited and account.scarce):
        if account.inflight == 0 and committed < account.lease:
            return Verdict(True, believed, True)
        return Verdict(False, believed)
    return Verdict(False, believed, short=not waited)
