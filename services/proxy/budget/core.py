"""The budget arithmetic of one proxy replica: plain code, no I/O, exact Decimals.

Each budgeted entity (key, team, internal user, customer) has, on this replica, an `Account` for its
current window: what this replica has itself committed there (settled costs + reservations of calls
in flight), and which of its settled costs the ledger's total may not show yet.

A call is admitted for an entity with max_budget B, on a deployment of N replicas, when both hold:

  share:  N x (prior + own settled + reserved + estimate) <= B     (this replica's 1/N of B)
  total:  ledger total + own not-yet-counted + reserved + estimate <= B

or, when neither fits, as the window's *last* call on this replica: nothing of this entity is in
flight here, the share and the total are not yet used up. That call may pass B by at most its own
cost, which is the "one request per replica" of the bound proved in docs/budgets.md.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from shared.budget_windows import effective_start, next_reset

ZERO = Decimal(0)
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

    __slots__ = ("start", "end", "generation", "own", "reserved", "inflight", "prior", "pending", "pending_sum",
                 "spec", "reset_seen")

    def __init__(self) -> None:
        self.spec: BudgetSpec | None = None  # the limits the window was computed from
        self.reset_seen: datetime | None = None  # the global reset the window was computed with
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.generation = -1  # bumped at every window change: reservations of older ones lapse
        self.own = ZERO  # settled costs of calls this replica admitted in this window
        self.reserved = ZERO  # estimates of calls in flight
        self.inflight = 0
        self.prior = ZERO  # what this replica may have spent here before it (re)started
        self.pending: deque[tuple[datetime, Decimal]] = deque()  # settled, maybe not counted yet
        self.pending_sum = ZERO

    def roll(self, start: datetime | None, end: datetime | None, prior: Decimal) -> None:
        self.start, self.end = start, end
        self.generation += 1
        self.own = ZERO
        self.reserved = ZERO
        self.prior = prior
        self.pending.clear()
        self.pending_sum = ZERO

    def uncounted(self, as_of: datetime | None) -> Decimal:
        """Own settled costs the ledger total (counted up to `as_of`) does not show yet."""
        pending = self.pending
        if as_of is not None:
            while pending and pending[0][0] <= as_of:
                self.pending_sum -= pending.popleft()[1]
        return self.pending_sum

    def reserve(self, estimate: Decimal) -> Reservation:
        self.reserved += estimate
        self.inflight += 1
        return Reservation(self, self.generation, estimate)

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
    """One admission's hold on one account: released exactly once."""

    __slots__ = ("account", "generation", "estimate", "released")

    def __init__(self, account: Account, generation: int, estimate: Decimal) -> None:
        self.account = account
        self.generation = generation
        self.estimate = estimate
        self.released = False


class Verdict(NamedTuple):  # a tuple: built on every call, so cheap to make
    admitted: bool
    believed_spend: Decimal  # ledger total + own not yet counted + reserved (before this call)
    last_call: bool = False  # admitted as the window's last call on this replica


def judge(account: Account, counted: Decimal, as_of: datetime | None, max_budget: Decimal,
          estimate: Decimal, replicas: int) -> Verdict:
    """May a call estimated at `estimate` start? See the module docstring for the two rules."""
    reserved = account.reserved
    believed = counted + account.uncounted(as_of) + reserved
    mine = account.prior + account.own + reserved
    if replicas * (mine + estimate) <= max_budget and believed + estimate <= max_budget:
        return Verdict(True, believed, False)
    if account.inflight == 0 and replicas * mine < max_budget and believed < max_budget:
        return Verdict(True, believed, True)
    return Verdict(False, believed, False)


def restart_prior(counted: Decimal, replicas: int) -> Decimal:
    """What a replica that (re)started inside a window assumes it spent there before: its even
    share of the ledger's count. Exact when the load balancer spreads calls evenly."""
    return counted / replicas if replicas > 1 else counted
