"""Budgets at a glance, pure: each key, team, user and customer with a max_budget, its spend in the
current window, how much of the budget is used, whether it crossed its soft budget, closest first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timezone
from decimal import Decimal
from typing import Any

USED_DIGITS = Decimal("0.0001")  # the used share, as a fraction to four places (0.8125 = 81.25 %)


@dataclass(frozen=True)
class BudgetFilters:
    """The page's filters that name a budget holder: a team (the team and its keys and users), keys
    (by hash) and a customer."""

    team: str | None = None
    keys: tuple[str, ...] | None = None
    customer: str | None = None

    def admits(self, row: Mapping[str, Any]) -> bool:
        if self.team is not None and row["team_id"] != self.team:
            return False
        if self.keys is not None and (row["kind"] != "key" or row["id"] not in self.keys):
            return False
        if self.customer is not None and (row["kind"] != "customer" or row["id"] != self.customer):
            return False
        return True


def budget_rows(rows: Iterable[Mapping[str, Any]], filters: BudgetFilters = BudgetFilters()) -> list[dict[str, Any]]:
    """The budget holders the filters admit, most used first (then by kind and id)."""
    out = []
    for row in rows:
        if not filters.admits(row):
            continue
        spend, max_budget, soft = row["spend"], row["max_budget"], row["soft_budget"]
        used = (spend / max_budget).quantize(USED_DIGITS) if max_budget > 0 else None
        out.append({
            "kind": row["kind"], "id": row["id"], "name": row["name"] or row["id"], "team_id": row["team_id"],
            "spend": spend, "max_budget": max_budget, "remaining": max_budget - spend, "used": used,
            "soft_budget": soft, "soft_budget_crossed": soft is not None and spend >= soft,
            "budget_duration": row["budget_duration"],
            "budget_reset_at": row["budget_reset_at"].isoformat() if row["budget_reset_at"] else None,
            "last_alert": ({"event": row["last_alert_event"], "at": row["last_alert_at"].astimezone(timezone.utc).isoformat()}
                           if row.get("last_alert_at") else None),
        })
    # Closest first: by the exact share used (a zero budget is the closest of all), then by name.
    return sorted(out, key=lambda r: (-(r["spend"] / r["max_budget"]) if r["max_budget"] > 0 else Decimal("-Infinity"),
                                      r["kind"], r["id"]))
