"""Callers are recognised from memory: master key, or a virtual key by its SHA-256 hash."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.proxy.auth.keys import Authenticator, CallerIdentity, KeyTable, ModelAccessDenied, raw_key_from_headers
from services.proxy.errors import AuthError
from shared.master_key import weak_key_reason
from shared.events import EntityChanged
from shared.keys import hash_key

VIRTUAL = "sk-virtual-key-0001"


def table_with(state: dict) -> KeyTable:
    table = KeyTable()
    table.apply(EntityChanged(entity_type="key", entity_id=hash_key(VIRTUAL), state=state))
    return table


def test_master_key_by_bearer_or_api_key_header():
    """Both `Authorization: Bearer` and `api-key` carry the key."""
    auth = Authenticator("sk-1234", KeyTable())
    assert auth.authenticate({"Authorization": "Bearer sk-1234"}).is_master
    assert auth.authenticate({"api-key": "sk-1234"}).api_key_hash == "litellm_proxy_master_key"


def test_virtual_key_carries_its_owner_team_and_limits():
    """A key from the entities topic answers with its VerificationToken fields."""
    auth = Authenticator("sk-1234", table_with({
        "key_alias": "ci", "user_id": "ishaan", "team_id": "t1", "models": ["llama3"], "max_budget": "10.5",
        "tpm_limit": 1000, "permissions": {"get_spend_routes": True},
        "metadata": {"tags": ["ci"], "spend_logs_metadata": {"env": "ci"}}, "spend": "0.25"}))
    caller = auth.authenticate({"Authorization": f"Bearer {VIRTUAL}"})
    assert (caller.user_id, caller.team_id, caller.key_alias, caller.is_master) == ("ishaan", "t1", "ci", False)
    assert caller.max_budget == Decimal("10.5")
    assert caller.spend == Decimal("0.25")
    assert caller.tags == ("ci",)
    assert dict(caller.spend_logs_metadata) == {"env": "ci"}
    assert caller.permissions["get_spend_routes"] is True


def test_unknown_missing_expired_and_blocked_keys_are_401():
    """Every way of not being a valid key is an authentication error."""
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    for headers, table in [
        ({}, KeyTable()),
        ({"Authorization": "Bearer sk-nope"}, KeyTable()),
        ({"Authorization": f"Bearer {VIRTUAL}"}, table_with({"expires": past})),
        ({"Authorization": f"Bearer {VIRTUAL}"}, table_with({"blocked": True})),
    ]:
        with pytest.raises(AuthError) as error:
            Authenticator("sk-1234", table).authenticate(headers)
        assert error.value.status == 401


def test_key_not_allowed_the_model_is_401_in_litellms_words():
    """A key limited to some models may not call others: 401, LiteLLM's type and message."""
    caller = CallerIdentity.from_state("h", {"models": ["llama3"]})
    Authenticator.check_model(caller, "llama3")
    with pytest.raises(ModelAccessDenied) as error:
        Authenticator.check_model(caller, "gpt-4o")
    assert (error.value.status, error.value.type, error.value.param, error.value.message) == (
        401, "key_model_access_denied", "model",
        "key not allowed to access model. This key can only access models=['llama3']. Tried to access gpt-4o")


def team_table(team_models: list[str] | None, key_models: list[str], groups: dict | None = None) -> CallerIdentity:
    table = KeyTable(groups)
    if team_models is not None:
        table.apply(EntityChanged(entity_type="team", entity_id="t1", state={"team_id": "t1", "models": team_models}))
    table.apply(EntityChanged(entity_type="key", entity_id=hash_key(VIRTUAL), state={"team_id": "t1", "models": key_models}))
    identity = table.get(hash_key(VIRTUAL))
    assert identity is not None
    return identity


def test_team_models_bound_a_key_and_refuse_in_the_teams_words():
    """A key's own list passes the key step; the team's list still refuses what it does not name."""
    caller = team_table(["a"], ["a", "b"])
    assert (caller.allows_model("a"), caller.allows_model("b")) == (True, False)
    with pytest.raises(ModelAccessDenied) as error:
        Authenticator.check_model(caller, "b")
    assert (error.value.status, error.value.type, error.value.message) == (
        401, "team_model_access_denied", "team not allowed to access model. This team can only access models=['a']. Tried to access b")


@pytest.mark.parametrize("team_models, key_models, allowed, refused", [
    (["a"], ["all-team-models"], "a", "b"),
    (None, ["all-team-models"], "b", None),  # no team known: every model
    ([], [], "b", None),  # an empty team list: every model
    (["all-proxy-models"], ["a"], "a", "b"),
    (["anthropic/*"], [], "anthropic/claude-x", "openai/gpt-4o"),
    (["a", "b"], ["grp"], "a", "b"),  # an access group on the key
    (["grp"], [], "a", "b"),  # and on the team
])
def test_litellms_sentinels_patterns_and_access_groups(team_models, key_models, allowed, refused):
    """all-team-models, all-proxy-models, empty lists, patterns and access groups, as LiteLLM reads them."""
    caller = team_table(team_models, key_models, {"grp": ["a"]})
    assert caller.allows_model(allowed) is True
    if refused is not None:
        assert caller.allows_model(refused) is False


def test_a_teams_change_counts_for_its_keys_at_once():
    """A team's models changed on the entities topic bound its existing keys without rebuilding them."""
    table = KeyTable()
    table.apply(EntityChanged(entity_type="key", entity_id=hash_key(VIRTUAL), state={"team_id": "t1"}))
    caller = table.get(hash_key(VIRTUAL))
    assert caller is not None and caller.allows_model("b")
    table.apply(EntityChanged(entity_type="team", entity_id="t1", state={"models": ["a"]}))
    assert (caller.allows_model("a"), caller.allows_model("b")) == (True, False)
    table.apply(EntityChanged(entity_type="team", entity_id="t1", deleted=True))
    assert caller.allows_model("b")


def test_deleted_key_is_forgotten():
    """A deletion on the entities topic removes the key."""
    table = table_with({})
    table.apply(EntityChanged(entity_type="key", entity_id=hash_key(VIRTUAL), deleted=True))
    assert table.get(hash_key(VIRTUAL)) is None


def test_bare_authorization_value_is_accepted():
    """Some clients send the key without the Bearer scheme."""
    assert raw_key_from_headers({"Authorization": "sk-1234"}) == "sk-1234"


@pytest.mark.parametrize("key, weak", [("sk-1234", True), ("short-key", True), ("sk-aaaaaaaaaaaaaaaaaaaa", True),
                                       ("sk-Zq8v0Lr2Xc9Tn4Wb7Hd1", False)])
def test_weak_master_keys_are_recognised(key, weak):
    """Well-known, short or repetitive master keys are weak."""
    assert (weak_key_reason(key) is not None) is weak


def test_a_key_without_budget_is_admitted_and_its_spend_is_the_ledger_total_plus_this_call():
    """A key no budget names is admitted by the budget gate; key spend = the ledger's total + this call's cost."""
    from services.proxy.budget.admission import BudgetRequest
    from services.proxy.budget.entities import EntityDirectory
    from services.proxy.budget.guard import BudgetGuard
    from services.proxy.budget.totals import TotalsView
    from shared.events import EntityTotal, UsageEvent
    from shared.pricing import load_catalog

    caller = CallerIdentity.from_state("h", {"spend": "1.5"})
    totals = TotalsView()
    totals.apply(EntityTotal(entity_type="key", entity_id="h", spend=Decimal("1.5"), as_of=datetime.now(timezone.utc)))
    gate = BudgetGuard(EntityDirectory(), totals, load_catalog(), {})
    admission = gate.admit(BudgetRequest("r1", caller, "llama3", None, (), "acompletion"))
    assert admission.soft_budget_exceeded is False
    event = UsageEvent.model_construct(quoted_cost=Decimal("0.0000074"), start_time=datetime.now(timezone.utc))
    assert gate.settle(admission, event) == Decimal("1.5000074")


def test_remembered_key_hashes_stay_bounded_and_exact():
    """Past HASHES_KEPT distinct keys the remembered hashes start over; a key still maps to its SHA-256."""
    auth = Authenticator("sk-1234", table_with({"key_alias": "ci"}))
    auth.HASHES_KEPT = 3
    for i in range(7):
        with pytest.raises(AuthError):
            auth.authenticate({"Authorization": f"Bearer sk-unknown-{i}"})
    assert len(auth._hashes) == 1
    assert auth.authenticate({"Authorization": f"Bearer {VIRTUAL}"}).api_key_hash == hash_key(VIRTUAL)
    assert auth._hashes == {"sk-unknown-6": hash_key("sk-unknown-6"), VIRTUAL: hash_key(VIRTUAL)}
