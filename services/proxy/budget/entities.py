"""The replica's in-memory view of keys, teams, internal users and customers, fed by the entities
topic (EntityChanged, SpendReset). Plain code, no I/O.

States are kept as the event carried them (shaped like the LiteLLM_* table rows) for the admin
routes; each one's budget limits are parsed once into a BudgetSpec for the request path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.budget_windows import BadDuration, parse_duration
from services.proxy.auth.ahead_of_log import AheadOfLog
from services.proxy.budget.core import BudgetSpec
from services.proxy.budget.member_budgets import member_budget_specs
from services.proxy.budget.model_budgets import model_budget_specs
from services.proxy.budget.rate_limits import RateSpecs, entity_rate_specs, model_rate_specs
from shared.events import EntityChanged, SpendReset

KINDS = ("key", "team", "user", "customer", "organization", "budget")


def parse_money(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def spec_from_state(kind: str, entity_id: str, state: Mapping[str, Any]) -> BudgetSpec:
    try:
        duration = parse_duration(state.get("budget_duration"))
    except BadDuration:
        duration = None
    return BudgetSpec(
        kind=kind,
        entity_id=entity_id,
        max_budget=parse_money(state.get("max_budget")),
        soft_budget=parse_money(state.get("soft_budget")),
        anchor=parse_time(state.get("created_at")),
        duration=duration,
        blocked=bool(state.get("blocked")),
    )


class EntityDirectory:
    """(kind, id) -> state and BudgetSpec; key aliases -> key hash; the latest global reset."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._specs: dict[str, dict[str, BudgetSpec]] = {kind: {} for kind in KINDS}
        self._rates: dict[str, dict[str, RateSpecs]] = {kind: {} for kind in KINDS}  # only entities with limits
        self._model_rates: dict[str, dict[str, RateSpecs]] = {}  # key hash -> model -> its per-model limits
        self._model_budgets: dict[str, dict[str, BudgetSpec]] = {}  # key hash -> model -> its model_max_budget
        self._member_budgets: dict[str, dict[str, BudgetSpec]] = {}  # team id -> user id -> max_budget_in_team
        self._aliases: dict[str, str] = {}
        self.last_reset: datetime | None = None
        self.applied = 0
        self._ahead = AheadOfLog()

    # -- reads ---------------------------------------------------------------------------------

    def state(self, kind: str, entity_id: str) -> dict[str, Any] | None:
        return self._states[kind].get(entity_id)

    def spec(self, kind: str, entity_id: str | None) -> BudgetSpec | None:
        return self._specs[kind].get(entity_id) if entity_id is not None else None

    def rates(self, kind: str, entity_id: str) -> RateSpecs:
        """The entity's rpm / tpm / parallel limits (rate_limits.py); () for none."""
        return self._rates[kind].get(entity_id, ())

    def model_rates(self, api_key_hash: str) -> dict[str, RateSpecs] | None:
        """The key's per-model rpm / tpm limits, or None for none."""
        return self._model_rates.get(api_key_hash)

    def model_budgets(self, api_key_hash: str) -> dict[str, BudgetSpec] | None:
        """The key's model_max_budget, parsed (model_budgets.py), or None for none."""
        return self._model_budgets.get(api_key_hash)

    def member_budget(self, team_id: str, user_id: str) -> BudgetSpec | None:
        """The member's max_budget_in_team in that team, parsed (member_budgets.py), or None."""
        members = self._member_budgets.get(team_id)
        return members.get(user_id) if members is not None else None

    def states(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter(list(self._states[kind].items()))

    def key_by_alias(self, alias: str) -> str | None:
        return self._aliases.get(alias)

    def __len__(self) -> int:
        return sum(len(v) for v in self._states.values())

    # -- writes (from the entities topic, or at once by the replica that made the change) --------

    def apply_here(self, event: EntityChanged | SpendReset) -> None:
        """A change this process made, applied before the topic brings it back (ahead_of_log.py)."""
        if isinstance(event, EntityChanged):
            self._ahead.applied_here(event)
        self.apply(event, here=True)

    def apply(self, event: EntityChanged | SpendReset, here: bool = False) -> None:
        if isinstance(event, EntityChanged) and not here and self._ahead.is_stale(event):
            return
        self.applied += 1
        if isinstance(event, SpendReset):
            if self.last_reset is None or event.occurred_at > self.last_reset:
                self.last_reset = event.occurred_at
            return
        kind, entity_id = event.entity_type, event.entity_id
        old = self._states[kind].get(entity_id)
        if kind == "key" and old is not None and old.get("key_alias"):
            if self._aliases.get(old["key_alias"]) == entity_id:
                del self._aliases[old["key_alias"]]
        if event.deleted:
            self._states[kind].pop(entity_id, None)
            self._specs[kind].pop(entity_id, None)
            self._rates[kind].pop(entity_id, None)
            if kind == "key":
                self._model_rates.pop(entity_id, None)
                self._model_budgets.pop(entity_id, None)
            if kind == "team":
                self._member_budgets.pop(entity_id, None)
            return
        state = dict(event.state)
        self._states[kind][entity_id] = state
        self._specs[kind][entity_id] = spec_from_state(kind, entity_id, state)
        rates = entity_rate_specs(kind, entity_id, state)
        if rates:
            self._rates[kind][entity_id] = rates
        else:
            self._rates[kind].pop(entity_id, None)
        if kind == "key":
            _keep(self._model_rates, entity_id, model_rate_specs(entity_id, state))
            _keep(self._model_budgets, entity_id, model_budget_specs(entity_id, state, self._specs[kind][entity_id], parse_money))
        if kind == "team":
            _keep(self._member_budgets, entity_id, member_budget_specs(entity_id, state, self._specs[kind][entity_id], parse_money))
        if kind == "key" and state.get("key_alias"):
            self._aliases[state["key_alias"]] = entity_id


def _keep(found: dict[str, Any], entity_id: str, value: Any) -> None:
    """Hold what a key's state gave, or forget the key when it gave nothing."""
    if value:
        found[entity_id] = value
    else:
        found.pop(entity_id, None)
