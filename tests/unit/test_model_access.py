"""The organisation's and the user's `models` bound a key's calls as LiteLLM's lists do, refused in
LiteLLM's words, and their changes on the entities topic count for the keys at once."""

from __future__ import annotations

import pytest

from services.proxy.auth.keys import Authenticator, CallerIdentity, KeyTable, ModelAccessDenied
from shared.events import EntityChanged

KEY = "key-hash"


def caller_in(key_state: dict, **entities: list[str]) -> tuple[KeyTable, CallerIdentity]:
    """A key table holding `entities` ("organization"/"user"/"team" -> models, ids o1/u1/t1) and one key."""
    table = KeyTable({"grp": ["a"]})
    for kind, models in entities.items():
        table.apply(EntityChanged(entity_type=kind, entity_id=kind[0] + "1", state={"models": models}))
    table.apply(EntityChanged(entity_type="key", entity_id=KEY, state=key_state))
    caller = table.get(KEY)
    assert caller is not None
    return table, caller


def refusal(caller: CallerIdentity, model: str) -> tuple[int, str, str | None, str]:
    with pytest.raises(ModelAccessDenied) as error:
        Authenticator.check_model(caller, model)
    return error.value.status, error.value.type, error.value.param, error.value.message


def test_an_organisations_list_refuses_other_models_in_litellms_words():
    """A key of an organisation limited to `a` may call `a`; `b` is LiteLLM's org_model_access_denied 401."""
    _, caller = caller_in({"organization_id": "o1"}, organization=["a"])
    Authenticator.check_model(caller, "a")
    assert (caller.allows_model("a"), caller.allows_model("b")) == (True, False)
    assert refusal(caller, "b") == (
        401, "org_model_access_denied", "model",
        "org not allowed to access model. This org can only access models=['a']. Tried to access b")


@pytest.mark.parametrize("org_models", [[], ["all-proxy-models"], ["*"]])
def test_an_empty_or_all_proxy_models_organisation_admits_every_model(org_models):
    """Empty, all-proxy-models and * on an organisation mean every model, as LiteLLM reads them."""
    _, caller = caller_in({"organization_id": "o1"}, organization=org_models)
    assert caller.allows_model("anything") is True


def test_an_unknown_organisation_or_none_bounds_nothing():
    """A key naming an organisation the table has not seen, or none, is bound by its own list only."""
    _, unseen = caller_in({"organization_id": "o-unseen"}, organization=["a"])
    _, without = caller_in({}, organization=["a"])
    assert (unseen.allows_model("b"), without.allows_model("b")) == (True, True)


def test_groups_and_patterns_on_an_organisation():
    """An access group and a pattern in an organisation's list mean their models."""
    _, grouped = caller_in({"organization_id": "o1"}, organization=["grp"])
    _, patterned = caller_in({"organization_id": "o1"}, organization=["anthropic/*"])
    assert (grouped.allows_model("a"), grouped.allows_model("b")) == (True, False)
    assert (patterned.allows_model("anthropic/claude-x"), patterned.allows_model("gpt-4o")) == (True, False)


def test_the_key_step_refuses_first_then_the_team_then_the_organisation():
    """LiteLLM's order: a model no list admits is refused by the key; one only the key admits, by
    the team; one key and team admit, by the organisation."""
    _, caller = caller_in({"organization_id": "o1", "team_id": "t1", "models": ["a", "b", "c"]},
                          team=["b", "c"], organization=["c"])
    assert [refusal(caller, m)[1] for m in ("z", "a", "b")] == [
        "key_model_access_denied", "team_model_access_denied", "org_model_access_denied"]
    assert caller.allows_model("c") is True


def test_an_organisations_change_counts_for_its_keys_at_once():
    """`/organization/update` of models on the topic bounds the existing key; a deletion frees it."""
    table, caller = caller_in({"organization_id": "o1"}, organization=["a"])
    table.apply(EntityChanged(entity_type="organization", entity_id="o1", state={"models": ["b"]}))
    assert (caller.allows_model("a"), caller.allows_model("b")) == (False, True)
    table.apply(EntityChanged(entity_type="organization", entity_id="o1", deleted=True))
    assert caller.allows_model("a") is True


def test_an_organisation_changed_here_is_not_undone_by_an_older_change_from_the_topic():
    """This replica's own change stands while the follower still reads older ones of that organisation."""
    table, caller = caller_in({"organization_id": "o1"}, organization=["a"])
    older = EntityChanged(entity_type="organization", entity_id="o1", state={"models": ["a"]})
    mine = EntityChanged(entity_type="organization", entity_id="o1", state={"models": ["b"]})
    table.apply_here(mine)
    table.apply(older)
    assert (caller.allows_model("a"), caller.allows_model("b")) == (False, True)
    table.apply(mine)
    table.apply(EntityChanged(entity_type="organization", entity_id="o1", state={"models": ["a"]}))
    assert caller.allows_model("a") is True


def test_a_users_list_bounds_its_keys_without_a_team():
    """LiteLLM's can_user_call_model: a personal key of a user limited to `a` is refused `b` as the user."""
    _, personal = caller_in({"user_id": "u1"}, user=["a"])
    assert refusal(personal, "b") == (
        401, "user_model_access_denied", "model",
        "user not allowed to access model. This user can only access models=['a']. Tried to access b")
    _, team_key = caller_in({"user_id": "u1", "team_id": "t1"}, user=["a"], team=["b"])
    assert (team_key.allows_model("b"), team_key.allows_model("a")) == (True, False)


def test_no_default_models_leaves_a_user_only_team_keys():
    """A user with "no-default-models" may call nothing with a personal key (LiteLLM's words); a team key still calls."""
    _, personal = caller_in({"user_id": "u1"}, user=["no-default-models"])
    assert refusal(personal, "a") == (
        401, "key_model_access_denied", "model",
        "User not allowed to access model. No default model access, only team models allowed. Tried to access a")
    _, team_key = caller_in({"user_id": "u1", "team_id": "t1"}, user=["no-default-models"])
    assert team_key.allows_model("a") is True


def test_the_master_key_is_bound_by_no_list():
    """The master key may call every model whatever the organisations say."""
    assert CallerIdentity.master().model_refusal("anything") is None
