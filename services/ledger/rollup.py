"""Running-total arithmetic, pure: an entity's state plus the spend logs a batch inserted → its new
running total in its budget window. (The daily rollups are plain sums: Postgres computes them,
see batch_sql.py.) Each entity is touched once per batch, in sorted order, so two ledger
instances never deadlock."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from shared.budget_windows import effective_start, next_reset

# Daily tables and the name of their entity column.
DAILY_TABLES: dict[str, str] = {
    "LiteLLM_DailyUserSpend": "user_id",
    "LiteLLM_DailyTeamSpend": "team_id",
    "LiteLLM_DailyTagSpend": "tag",
    "LiteLLM_DailyEndUserSpend": "end_user_id",
    "LiteLLM_DailyApiKeySpend": "api_key_id",
    "LiteLLM_DailyOrganizationSpend": "organization_id",
}
ENTITY_TYPES = ("key", "team", "user", "customer", "tag", "organization")
# The entity type each daily table sums.
DAILY_ENTITY: dict[str, str] = {
    "LiteLLM_DailyUserSpend": "user", "LiteLLM_DailyTeamSpend": "team", "LiteLLM_DailyTagSpend": "tag",
    "LiteLLM_DailyEndUserSpend": "customer", "LiteLLM_DailyApiKeySpend": "key",
    "LiteLLM_DailyOrganizationSpend": "organization",
}
RESETTABLE = frozenset({"key", "team"})  # /global/spend/reset zeroes keys and teams only


@dataclass(frozen=True)
class EntityState:
    """An entity's running total as stored: spend since `window_start`, latest event `as_of`."""

    entity_type: str
    entity_id: str
    anchor: datetime | None = None  # created_at
    duration: timedelta | None = None
    spend: Decimal = Decimal(0)
    window_start: datetime | None = None
    as_of: datetime | None = None
    budget_reset_at: datetime | None = None


@dataclass(frozen=True)
class NewLogs:
    """An entity's logs inserted by one batch, summed by Postgres: earliest and latest event time
    and their spend."""

    first: datetime
    last: datetime
    spend: Decimal


def last_reset_for(entity_type: str, last_reset: datetime | None) -> datetime | None:
    return last_reset if entity_type in RESETTABLE else None


def next_window(state: EntityState, latest: datetime, last_reset: datetime | None) -> tuple[datetime, datetime | None]:
    """(as_of, window start) once logs up to event time `latest` are counted."""
    as_of = max(latest, state.as_of) if state.as_of is not None else latest
    return as_of, effective_start(state.anchor, state.duration, as_of, last_reset_for(state.entity_type, last_reset))


def counts_all(new: NewLogs, start: datetime | None) -> bool:
    """Every new log lies in the window: their whole sum counts (the usual case). Otherwise the
    adapter sums only the logs at or after `start`."""
    return start is None or new.first >= start


def advanced(state: EntityState, as_of: datetime, start: datetime | None, counted: Decimal) -> EntityState:
    """The state after adding `counted`, the new logs' spend at or after `start`. Invariant kept:
    spend = the sum of the entity's logs with event time ≥ effective_start(anchor, duration,
    as_of, last reset)."""
    # The window can only move forward; when it does, no earlier log lies in the new one (they
    # are all ≤ the old as_of, which is before the new window began), so the old spend drops out.
    spend = state.spend if start == state.window_start else Decimal(0)
    return replace(state, spend=spend + counted, window_start=start, as_of=as_of,
                   budget_reset_at=next_reset(state.anchor, state.duration, as_of))


def advance(state: EntityState, new: list[tuple[datetime, Decimal]], last_reset: datetime | None) -> EntityState:
    """The definition, log by log ((event time, spend) pairs): the adapter reaches the same state
    from per-entity sums (`NewLogs`) through `next_window`, `counts_all` and `advanced`."""
    if not new:
        return state
    as_of, start = next_window(state, max(t for t, _ in new), last_reset)
    return advanced(state, as_of, start, sum((s for t, s in new if start is None or t >= start), Decimal(0)))


def recomputed(state: EntityState, as_of: datetime | None, last_reset: datetime | None) -> tuple[EntityState, datetime | None]:
    """Where to sum from when an entity's anchor, duration or reset changed: returns the state
    without spend and the start time the adapter sums the entity's logs from."""
    start = effective_start(state.anchor, state.duration, as_of, last_reset_for(state.entity_type, last_reset))
    return replace(state, as_of=as_of, window_start=start, spend=Decimal(0),
                   budget_reset_at=next_reset(state.anchor, state.duration, as_of)), start
