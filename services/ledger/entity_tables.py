"""Where each kind of entity lives and which of its columns an admin event may set: pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.ledger.errors import Unstorable
from services.ledger.rows import has_nul
from shared.budget_windows import BadDuration, parse_duration
from shared.events import EntityChanged


@dataclass(frozen=True)
class EntityTable:
    table: str
    id_column: str
    log_filter: str  # SQL on "LiteLLM_SpendLogs" l matching one entity id, given as %s


ENTITY_TABLES: dict[str, EntityTable] = {
    "key": EntityTable("LiteLLM_VerificationToken", "token", 'l.api_key = {id}'),
    "team": EntityTable("LiteLLM_TeamTable", "team_id", 'l.team_id = {id}'),
    "user": EntityTable("LiteLLM_UserTable", "user_id", 'l."user" = {id}'),
    "customer": EntityTable("LiteLLM_EndUserTable", "user_id", 'l.end_user = {id}'),
    "tag": EntityTable("LiteLLM_TagTable", "tag_name", 'l.request_tags @> jsonb_build_array({id})'),
    "organization": EntityTable("LiteLLM_OrganizationTable", "organization_id", 'l.organization_id = {id}'),
}
# Rows only admin events write: no spend of their own, no running total.
STATE_TABLES: dict[str, EntityTable] = {
    "budget": EntityTable("LiteLLM_BudgetTable", "budget_id", ""),
}
ADMIN_TABLES: dict[str, EntityTable] = {**ENTITY_TABLES, **STATE_TABLES}

# Columns only the ledger writes: the running total and its window, and the row's identity.
LEDGER_OWNED = frozenset({"spend", "window_start", "spend_as_of", "budget_reset_at", "created_at", "updated_at"})


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise Unstorable(f"created_at {value!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise Unstorable("created_at must carry a timezone")
    return moment


@dataclass(frozen=True)
class AdminChange:
    """An EntityChanged reduced to what the adapter writes."""

    entity_type: str
    entity_id: str
    values: dict[str, Any]  # column → value, JSON columns as plain Python values
    created_at: datetime | None  # from the state, when it says
    occurred_at: datetime


def admin_change(event: EntityChanged, columns: dict[str, str]) -> AdminChange:
    """`columns`: the table's column → Postgres type. Unknown and ledger-owned fields are ignored;
    a value Postgres or the budget arithmetic would refuse raises Unstorable."""
    table = ADMIN_TABLES[event.entity_type]
    if has_nul(event.entity_id) or has_nul(event.state):
        raise Unstorable("the entity contains a NUL character, which Postgres text and JSON refuse")
    values: dict[str, Any] = {}
    for name, value in event.state.items():
        if name not in columns or name in LEDGER_OWNED or name == table.id_column:
            continue
        kind = columns[name]
        if kind == "numeric" and isinstance(value, float):
            value = Decimal(repr(value))
        values[name] = value
    try:
        parse_duration(values.get("budget_duration"))
    except BadDuration as exc:
        raise Unstorable(str(exc)) from exc
    created = event.state.get("created_at")
    return AdminChange(event.entity_type, event.entity_id, values,
                       _parse_time(created) if created else None, event.occurred_at)
