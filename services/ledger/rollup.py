"""Rollup arithmetic, pure: a batch of newly inserted spend logs → one delta per daily-rollup row
and one new running total per entity. Each rollup row and each entity is touched once per batch,
and the adapter writes them in sorted order, so two ledger instances never deadlock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.ledger.rows import endpoint_of, logged_model
from services.ledger.windows import effective_start, next_reset
from shared.events import PricedUsageEvent

# Daily tables and the name of their entity column.
DAILY_TABLES: dict[str, str] = {
    "LiteLLM_DailyUserSpend": "user_id",
    "LiteLLM_DailyTeamSpend": "team_id",
    "LiteLLM_DailyTagSpend": "tag",
    "LiteLLM_DailyEndUserSpend": "end_user_id",
    "LiteLLM_DailyApiKeySpend": "api_key_id",
}
ENTITY_TYPES = ("key", "team", "user", "customer", "tag")
RESETTABLE = frozenset({"key", "team"})  # /global/spend/reset zeroes keys and teams only


@dataclass(frozen=True)
class LogFacts:
    """What rollups and totals need from one spend log."""

    request_id: str
    api_key: str
    user_id: str | None
    team_id: str | None
    end_user: str | None
    tags: tuple[str, ...]
    start_time: datetime
    model: str
    model_group: str
    provider: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    spend: Decimal
    success: bool

    @classmethod
    def of(cls, event: PricedUsageEvent) -> LogFacts:
        u = event.usage_event
        return cls(
            request_id=u.request_id, api_key=u.api_key_hash, user_id=u.user_id, team_id=u.team_id,
            end_user=u.end_user, tags=tuple(dict.fromkeys(u.request_tags)), start_time=u.start_time,
            model=logged_model(u), model_group=u.model_group, provider=u.custom_llm_provider or "",
            endpoint=endpoint_of(u.call_type), prompt_tokens=u.usage.prompt_tokens,
            completion_tokens=u.usage.completion_tokens,
            cache_read_input_tokens=u.usage.cache_read_input_tokens,
            cache_creation_input_tokens=u.usage.cache_creation_input_tokens,
            spend=event.cost.total, success=u.status == "success",
        )

    def day(self) -> str:
        return self.start_time.astimezone(timezone.utc).strftime("%Y-%m-%d")

    def entities(self) -> Iterable[tuple[str, str]]:
        """(entity_type, entity_id) whose running total this log adds to."""
        yield "key", self.api_key
        if self.team_id:
            yield "team", self.team_id
        if self.user_id:
            yield "user", self.user_id
        if self.end_user:
            yield "customer", self.end_user
        for tag in self.tags:
            yield "tag", tag


# (table, entity, date, api_key, model, custom_llm_provider, endpoint): the tables' unique key.
DailyKey = tuple[str, str, str, str, str, str, str]


@dataclass
class DailyDelta:
    model_group: str
    first_seen: datetime
    last_seen: datetime
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    spend: Decimal = Decimal(0)
    api_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0

    def add(self, log: LogFacts) -> None:
        self.prompt_tokens += log.prompt_tokens
        self.completion_tokens += log.completion_tokens
        self.cache_read_input_tokens += log.cache_read_input_tokens
        self.cache_creation_input_tokens += log.cache_creation_input_tokens
        self.spend += log.spend
        self.api_requests += 1
        self.successful_requests += 1 if log.success else 0
        self.failed_requests += 0 if log.success else 1
        self.first_seen = min(self.first_seen, log.start_time)
        self.last_seen = max(self.last_seen, log.start_time)


def daily_entities(log: LogFacts) -> Iterable[tuple[str, str]]:
    """(daily table, entity id) rows this log rolls into. Logs without a user, team or customer
    are not rolled into that table (LiteLLM's daily tables hold only named entities)."""
    if log.user_id:
        yield "LiteLLM_DailyUserSpend", log.user_id
    if log.team_id:
        yield "LiteLLM_DailyTeamSpend", log.team_id
    for tag in log.tags:
        yield "LiteLLM_DailyTagSpend", tag
    if log.end_user:
        yield "LiteLLM_DailyEndUserSpend", log.end_user
    yield "LiteLLM_DailyApiKeySpend", log.api_key


def daily_deltas(logs: Iterable[LogFacts]) -> dict[DailyKey, DailyDelta]:
    """One delta per daily-rollup row; sorted keys are the order the adapter writes them in."""
    deltas: dict[DailyKey, DailyDelta] = {}
    for log in logs:
        day = log.day()
        for table, entity in daily_entities(log):
            key = (table, entity, day, log.api_key, log.model, log.provider, log.endpoint)
            delta = deltas.get(key)
            if delta is None:
                delta = deltas[key] = DailyDelta(log.model_group, log.start_time, log.start_time)
            delta.add(log)
    return dict(sorted(deltas.items()))


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


def entity_logs(logs: Iterable[LogFacts]) -> dict[tuple[str, str], list[tuple[datetime, Decimal]]]:
    """(entity_type, entity_id) → the (event time, spend) of each new log, keys sorted."""
    grouped: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = {}
    for log in logs:
        for entity in log.entities():
            grouped.setdefault(entity, []).append((log.start_time, log.spend))
    return dict(sorted(grouped.items()))


def last_reset_for(entity_type: str, last_reset: datetime | None) -> datetime | None:
    return last_reset if entity_type in RESETTABLE else None


def advance(state: EntityState, new: list[tuple[datetime, Decimal]], last_reset: datetime | None) -> EntityState:
    """The state after adding newly inserted logs. Invariant kept: spend = the sum of the entity's
    logs with event time ≥ effective_start(anchor, duration, as_of, last reset)."""
    if not new:
        return state
    reset = last_reset_for(state.entity_type, last_reset)
    as_of = max([t for t, _ in new] + ([state.as_of] if state.as_of else []))
    start = effective_start(state.anchor, state.duration, as_of, reset)
    # The window can only move forward; when it does, no earlier log lies in the new one (they
    # are all ≤ the old as_of, which is before the new window began), so the old spend drops out.
    spend = state.spend if start == state.window_start else Decimal(0)
    spend += sum((s for t, s in new if start is None or t >= start), Decimal(0))
    return replace(state, spend=spend, window_start=start, as_of=as_of,
                   budget_reset_at=next_reset(state.anchor, state.duration, as_of))


def recomputed(state: EntityState, as_of: datetime | None, last_reset: datetime | None) -> tuple[EntityState, datetime | None]:
    """Where to sum from when an entity's anchor, duration or reset changed: returns the state
    without spend and the start time the adapter sums the entity's logs from."""
    start = effective_start(state.anchor, state.duration, as_of, last_reset_for(state.entity_type, last_reset))
    return replace(state, as_of=as_of, window_start=start, spend=Decimal(0),
                   budget_reset_at=next_reset(state.anchor, state.duration, as_of)), start
