"""Budget leases: the authority's arithmetic. Plain code, no I/O, exact Decimals.

One entity's budget window is shared by *holders* (one per proxy worker process). Each holder has
one row: `granted` (what it may commit: settled costs plus reservations of calls in flight), and
what it last reported it has `used` (settled) and holds `inflight` (reserved). A row is charged

    charge = max(granted, used + inflight)

which is never less than what its holder can have spent, but for the one call it may take past
`granted` as the window's last call (the holder admits only within `granted` otherwise).
The authority knows the window's spend is at most

    known = max(ledger total, sum of charges)

and grants a holder only from `max_budget - known`. Returning a lease (idle, shutdown) is a renewal
that sets `granted` to what the holder has committed, so its charge falls to what it really used.
A row whose holder stopped renewing for the lease TTL is *dead*. Its holder admits nothing on a
lease it has not renewed for 0.8 TTL (guard.py), so all it can have spent is what it reported
`used` plus the calls it answered after that report, and the ledger counts those from their usage
events, which name the holder. Events a killed worker had not sent yet wait in its journal until
the worker restarted in its place sends them (within seconds), so a dead row stays charged in full
for `DRAIN_GRACE` more; then, of a kind the ledger counts (`counted` is the ledger's count of the
holder's spend in the window), once the ledger has counted at least what the holder reported, it is
charged

    dead charge = counted  (>= used)

and its unused grant is free again. The row stays (for `DEAD_KEPT`) so that events the ledger
counts later still raise its charge at the next renewal; then it is folded into one settled row at
its charge. A dead row the ledger does not count (rpm, tpm, per-model and member budgets) is folded
at once at its full charge. A holder that renews its own row past the grace keeps only what it has
committed: its old grant may be someone else's by now (within the grace the row was charged in
full, so it keeps its lease: its calls admitted while the renewal was on its way are within it). docs/budgets.md has the proof."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

ZERO = Decimal(0)
SETTLED = "~settled"  # the holder name of the row dead leases are folded into
SLICE_FRACTION = Decimal(1) / Decimal(8)  # a grant is this much of what is left, at least the call asked for
# How long after its expiry a dead row stays charged in full: the time a killed worker's successor
# takes to start and send the events its journal kept (a few seconds), with room to spare.
DRAIN_GRACE = timedelta(seconds=10)
DEAD_KEPT = timedelta(hours=1)  # how long a dead row waits for late ledger counts before it is folded


@dataclass(frozen=True, slots=True)
class LeaseRow:
    holder: str
    granted: Decimal
    used: Decimal = ZERO
    inflight: Decimal = ZERO
    expires_at: datetime | None = None
    counted: Decimal | None = None  # the ledger's count of the holder's spend in the window; None: not counted

    @property
    def charge(self) -> Decimal:
        return max(self.granted, self.used + self.inflight)

    def dead_charge(self, now: datetime) -> Decimal:
        """What a dead holder may have spent, as far as the ledger knows (module docstring). While the
        ledger shows less than the holder reported, it lags (a broker or ledger outage): its count says
        nothing yet about the calls after the report, so the row stays charged in full."""
        if self.counted is None or not self.drained(now) or self.counted < self.used:
            return self.charge
        return self.counted

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def drained(self, now: datetime) -> bool:
        """Dead long enough that what its holder answered is in the ledger's count."""
        return self.expires_at is not None and self.expires_at + DRAIN_GRACE <= now


@dataclass(frozen=True, slots=True)
class LeaseAsk:
    """One holder's renewal (or return) for one entity's window.

    `keep` is what the holder keeps of its lease before anything new: its whole current lease when
    it asks for more, what it has committed when it returns the rest. The holder never commits past
    `keep` while the renewal is in flight, so the row never charges less than it may spend."""

    holder: str
    max_budget: Decimal
    counted: Decimal  # the ledger's total for the window, as the holder last saw it (a lower bound on spend)
    keep: Decimal
    used: Decimal
    inflight: Decimal
    want: Decimal  # the smallest useful new headroom (a call's estimate); 0 when returning
    most: Decimal | None = None  # the most headroom worth holding (the holder's recent use); None: no cap
    concurrent: bool = False  # slots, not spend: a dead holder's calls ended with it, so its lease is dropped
    ledger_counted: bool = False  # the ledger counts each holder's spend of this entity (shared.events.HOLDER_COUNTED_ENTITY_TYPES)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    granted: Decimal  # the holder's whole lease for the window now (keep + headroom)
    headroom: Decimal  # what this renewal added
    final: bool  # nothing of the budget is left unleased: no renewal can give more now
    known: Decimal  # the authority's bound on the window's spend, this grant included
    others_unused: Decimal = ZERO  # what live other holders were granted and had not used, as last reported


def needing_counts(rows: list[LeaseRow], ask: LeaseAsk, now: datetime) -> list[str]:
    """The holders whose ledger count `grant` needs for this ask: the other dead rows past the
    drain grace of an entity the ledger counts (none otherwise)."""
    if not ask.ledger_counted:
        return []
    return [row.holder for row in rows if row.drained(now) and row.holder not in (SETTLED, ask.holder)]


def with_counts(rows: list[LeaseRow], holders: list[str], counts: Mapping[str, Decimal]) -> list[LeaseRow]:
    """`rows` with the ledger's count set on each of `holders` (0 where it counted nothing)."""
    return [replace(row, counted=counts.get(row.holder, ZERO)) if row.holder in holders else row for row in rows]


def slice_of(free: Decimal, want: Decimal, fraction: Decimal = SLICE_FRACTION, most: Decimal | None = None) -> Decimal:
    """New headroom from `free`: a fraction of it (no more than `most`), at least `want`, never
    more than all of it."""
    if free <= ZERO or want <= ZERO:
        return ZERO
    share = free * fraction if most is None else min(free * fraction, most)
    return min(free, max(want, share))


def grant(rows: list[LeaseRow], ask: LeaseAsk, now: datetime,
          fraction: Decimal = SLICE_FRACTION) -> tuple[LeaseGrant, list[LeaseRow]]:
    """The authority's answer to `ask`, and the window's rows after it (dead rows charged or folded,
    the holder's row written). `rows` are all of the window's rows, locked by the caller."""
    settled = ZERO
    others = ZERO
    unused = ZERO
    keep = ask.keep
    kept: list[LeaseRow] = []
    for row in rows:
        if row.holder == ask.holder:
            if row.drained(now):  # charged as dead past the grace: what it did not commit may be others' now
                keep = min(keep, ask.used + ask.inflight)
            continue
        if row.holder == SETTLED:
            settled += row.charge
        elif row.expired(now):
            if ask.concurrent:
                continue  # slots: a dead holder's calls ended with it
            if not ask.ledger_counted or row.expires_at + DEAD_KEPT <= now:  # type: ignore[operator]
                settled += row.dead_charge(now)
            else:
                others += row.dead_charge(now)
                kept.append(row)
        else:
            others += row.charge
            unused += max(ZERO, row.granted - row.used - row.inflight)
            kept.append(row)
    mine = max(keep, ask.used + ask.inflight)  # its charge: a last call may have passed `keep`
    known = max(ask.counted, settled + others + mine)
    free = ask.max_budget - known
    headroom = slice_of(free, ask.want, fraction, ask.most)
    # Added to what the holder keeps, not to what it reported: a last call's excess is charged, and
    # paid from the new headroom, never turned into more lease (else the reservation's slack, once
    # the call settles below its estimate, would let the holder pass its lease again).
    granted = keep + headroom
    final = headroom >= free
    if settled:
        kept.append(LeaseRow(SETTLED, settled))
    kept.append(LeaseRow(ask.holder, granted, ask.used, ask.inflight))
    return LeaseGrant(granted, headroom, final, known + headroom, unused), kept
