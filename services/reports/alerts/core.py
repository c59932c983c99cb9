"""Which budget crossings a running total shows, pure: an entity's budget (from entities.v1) and
its total (from totals.v1) in, the crossings it has reached in this window out, each with the key
that makes it one alert per entity per window. No I/O: the follower loads, calls, saves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.budget_windows import BadDuration, parse_duration
from shared.events import EntityChanged, EntityTotal

# LiteLLM's event_group (Litellm_EntityType) of each Tally entity type.
EVENT_GROUPS = {"key": "key", "team": "team", "user": "user", "customer": "end_user"}
# LiteLLM's prefix of each event message (budget_alert_types.py).
MESSAGE_PREFIX = {"key": "Key Budget: ", "team": "Team Budget: ", "user": "User Budget: ", "customer": "Customer Budget: "}
FOREVER = "-"  # the window of an entity without budget_duration and without a reset


@dataclass(frozen=True)
class Budget:
    """What an alert needs to know of an entity: its limits and the names LiteLLM's payload shows."""

    entity_type: str
    entity_id: str
    max_budget: Decimal | None = None
    soft_budget: Decimal | None = None
    duration: timedelta | None = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    user_email: str | None = None


@dataclass(frozen=True)
class Rules:
    """From `alerting_args`: the fractions of max_budget that alert (ascending) and when a
    projection is trusted (at least this fraction of the window elapsed)."""

    thresholds: tuple[Decimal, ...] = (Decimal("0.85"), Decimal("0.95"))
    projection_min_elapsed: Decimal = Decimal("0.1")


@dataclass(frozen=True)
class Crossing:
    kind: str  # part of the idempotency key: "threshold:0.5", "soft_budget", "max_budget", "projected"
    event: str  # LiteLLM's WebhookEvent.event
    message: str
    projected_spend: Decimal | None = None
    projected_exceeded_date: datetime | None = None


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def budget_of(change: EntityChanged) -> Budget | None:
    """The entity's budget from its admin state; None when deleted. A field the admin routes would
    have refused (they validate) counts as unset rather than stopping the follower."""
    if change.deleted:
        return None
    state = change.state
    try:
        duration = parse_duration(_text(state.get("budget_duration")))
    except BadDuration:
        duration = None
    user_id = change.entity_id if change.entity_type == "user" else _text(state.get("user_id"))
    team_id = change.entity_id if change.entity_type == "team" else _text(state.get("team_id"))
    return Budget(change.entity_type, change.entity_id, _money(state.get("max_budget")), _money(state.get("soft_budget")),
                  duration, _text(state.get("key_alias")), user_id, team_id, _text(state.get("team_alias")),
                  _text(state.get("user_email")))


def _percent(fraction: Decimal) -> str:
    return format((fraction * 100).normalize(), "f")


def projection(budget: Budget, total: EntityTotal, rules: Rules) -> tuple[Decimal, datetime] | None:
    """(spend projected at the window's end at the burn rate so far, when it reaches max_budget),
    for a windowed budget once enough of the window has passed; None otherwise."""
    if budget.max_budget is None or budget.duration is None or total.window_start is None or total.spend <= 0:
        return None
    elapsed = total.as_of - total.window_start
    if elapsed <= timedelta(0) or Decimal(elapsed / budget.duration) < rules.projection_min_elapsed:
        return None
    window = Decimal(budget.duration.total_seconds())
    seconds = Decimal(elapsed.total_seconds())
    projected = total.spend * window / seconds
    reaches = total.window_start + timedelta(seconds=float(seconds * budget.max_budget / total.spend))
    return projected, reaches


def crossings(budget: Budget, total: EntityTotal, rules: Rules) -> list[Crossing]:
    """Every crossing the total has reached, lowest first: the thresholds, the soft budget, the
    max budget, and (still under it) a projection past it. The same total always gives the same
    list, so deciding again after a restart or a replay finds the same keys."""
    prefix = MESSAGE_PREFIX[budget.entity_type]
    found: list[tuple[Decimal, Crossing]] = []
    spend, limit = total.spend, budget.max_budget
    if limit is not None and limit > 0:
        for fraction in rules.thresholds:
            if spend >= limit * fraction:
                found.append((limit * fraction, Crossing(f"threshold:{fraction.normalize()}", "threshold_crossed",
                                                         f"{prefix}{_percent(fraction)}% Threshold Crossed")))
    if budget.soft_budget is not None and spend >= budget.soft_budget:
        found.append((budget.soft_budget, Crossing("soft_budget", "soft_budget_crossed",
                                                   f"Soft Budget Crossed: Total Soft Budget:`{budget.soft_budget}`")))
    if limit is not None and spend >= limit:
        found.append((limit, Crossing("max_budget", "budget_crossed", f"{prefix}Budget Crossed\n Total Budget:`{limit}`")))
    elif limit is not None:
        projected = projection(budget, total, rules)
        if projected is not None and projected[0] > limit:
            found.append((limit, Crossing("projected", "projected_limit_exceeded", f"{prefix}Projected Limit Exceeded",
                                          projected[0], projected[1])))
    found.sort(key=lambda pair: pair[0])  # stable: equal amounts keep the order above
    return [crossing for _amount, crossing in found]


def alert_key(total: EntityTotal, crossing: Crossing) -> str:
    """One alert per entity, window and crossing: a new window or a spend reset (a new
    window_start) re-arms every crossing."""
    window = total.window_start.isoformat() if total.window_start is not None else FOREVER
    return f"{total.entity_type}:{total.entity_id}:{window}:{crossing.kind}"


def webhook_event(budget: Budget, total: EntityTotal, crossing: Crossing) -> dict[str, Any]:
    """LiteLLM's WebhookEvent (CallInfo and event, event_group, event_message); money stays
    Decimal, written as exact JSON numbers."""
    return {
        "spend": total.spend,
        "max_budget": budget.max_budget,
        "soft_budget": budget.soft_budget,
        "token": budget.entity_id if budget.entity_type == "key" else None,
        "customer_id": budget.entity_id if budget.entity_type == "customer" else None,
        "user_id": budget.user_id,
        "team_id": budget.team_id,
        "team_alias": budget.team_alias,
        "user_email": budget.user_email,
        "key_alias": budget.key_alias,
        "projected_exceeded_date": crossing.projected_exceeded_date.date().isoformat() if crossing.projected_exceeded_date else None,
        "projected_spend": crossing.projected_spend,
        "event": crossing.event,
        "event_group": EVENT_GROUPS[budget.entity_type],
        "event_message": crossing.message,
    }


def slack_message(event: dict[str, Any], at: datetime) -> dict[str, str]:
    """Slack's incoming-webhook body as LiteLLM sends a budget alert: level, time, the message and
    the event's fields one per line."""
    details = "".join(f"\n{name}: {value}\n" for name, value in event.items() if value is not None and name not in ("event_message",))
    return {"text": f"Level: `High`\nTimestamp: `{at.strftime('%H:%M:%S')}`\n\nMessage: {event['event_message']}\n\n{details}"}
