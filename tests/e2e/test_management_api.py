"""LiteLLM's management API on Tally, route by route: a LiteLLM-shaped request with the full field
set of LiteLLM's request model (litellm/proxy/_types.py), and the answer compared field by field
with LiteLLM's response model. Real stack: every service its own process, real Kafka and Postgres.

Field sets below are written from LiteLLM's source (GenerateKeyRequest, GenerateKeyResponse,
LiteLLM_TeamTable, NewUserResponse, LiteLLM_EndUserTable, LiteLLM_OrganizationTableWithMembers,
LiteLLM_BudgetTable), not copied from its tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from shared.keys import hash_key
from tests.fixtures.polling import eventually
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

CALL_COST = Decimal("0.0000074")  # llama3: 20 x 5e-08 + 80 x 8e-08 (the fake upstream's usage)
PROMPT = "x" * 40  # with max_tokens 80, the proxy reserves 0.00000875 before the call (budgets.md)

GENERATE_REQUEST_BASE = ("key_alias", "duration", "models", "spend", "max_budget", "user_id", "team_id", "agent_id",
                         "max_parallel_requests", "metadata", "tpm_limit", "rpm_limit", "budget_duration",
                         "allowed_cache_controls", "config", "permissions", "model_max_budget", "model_rpm_limit",
                         "model_tpm_limit", "guardrails", "policies", "prompts", "blocked", "aliases",
                         "object_permission")
KEY_REQUEST_BASE = GENERATE_REQUEST_BASE + ("key", "budget_id", "tags", "enforced_params", "allowed_routes",
                                            "allowed_passthrough_routes", "allowed_vector_store_indexes",
                                            "rpm_limit_type", "tpm_limit_type", "router_settings", "access_group_ids")
GENERATE_KEY_RESPONSE = KEY_REQUEST_BASE + ("key_name", "expires", "token_id", "organization_id", "project_id",
                                            "litellm_budget_table", "token", "created_by", "updated_by",
                                            "created_at", "updated_at")
TEAM_TABLE = ("team_alias", "team_id", "organization_id", "admins", "members", "members_with_roles",
              "team_member_permissions", "metadata", "tpm_limit", "rpm_limit", "max_budget", "soft_budget",
              "budget_duration", "models", "blocked", "router_settings", "access_group_ids", "spend",
              "max_parallel_requests", "budget_reset_at", "model_id", "litellm_model_table", "object_permission",
              "updated_at", "created_at", "object_permission_id")
NEW_USER_RESPONSE = GENERATE_KEY_RESPONSE + ("user_email", "user_role", "teams", "user_alias")
END_USER_TABLE = ("user_id", "blocked", "alias", "spend", "allowed_model_region", "default_model", "budget_id",
                  "litellm_budget_table", "object_permission_id", "object_permission")
BUDGET_TABLE = ("budget_id", "soft_budget", "max_budget", "max_parallel_requests", "tpm_limit", "rpm_limit",
                "model_max_budget", "budget_duration")
ORGANIZATION_WITH_MEMBERS = ("organization_id", "organization_alias", "budget_id", "spend", "metadata", "models",
                             "model_spend", "created_by", "updated_by", "users", "litellm_budget_table",
                             "object_permission", "object_permission_id", "members", "teams", "created_at",
                             "updated_at")


def _encode(body: dict[str, Any]) -> bytes:
    """JSON with money as exact numbers, as a LiteLLM client sends it."""
    return orjson.dumps(body, default=lambda d: orjson.Fragment(format(d, "f")))


class Admin:
    def __init__(self, stack: TallyStack, client: httpx.Client) -> None:
        self.stack = stack
        self.client = client

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None,
             key: str | None = None, status: int = 200) -> Any:
        response = self.client.request(method, path, params=params, content=None if body is None else _encode(body),
                                       headers={"Authorization": f"Bearer {key or self.stack.master_key}",
                                                "Content-Type": "application/json"})
        assert response.status_code == status, (path, response.text[:800])
        return json.loads(response.text, parse_float=Decimal)

    def chat(self, key: str, status: int = 200) -> httpx.Response:
        response = self.client.post("/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                    json={"model": "llama3", "max_tokens": 80,
                                          "messages": [{"role": "user", "content": PROMPT}]})
        assert response.status_code == status, response.text[:800]
        return response


@pytest.fixture(scope="module")
def admin(tally_stack: TallyStack) -> Iterator[Admin]:
    with httpx.Client(base_url=tally_stack.url("proxy"), timeout=30) as client:
        yield Admin(tally_stack, client)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_has_fields(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    missing = sorted(set(fields) - set(body))
    assert missing == [], f"missing LiteLLM fields: {missing}"


def assert_echoed(body: dict[str, Any], sent: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Every sent field comes back as sent, whether or not Tally acts on it."""
    differ = {k: (v, body.get(k)) for k, v in sent.items() if k not in skip and body.get(k) != v}
    assert differ == {}


def full_key_request(team_id: str) -> dict[str, Any]:
    """Every field of LiteLLM's GenerateKeyRequest, each with a well-formed value."""
    return {
        "key_alias": fresh("alias"), "duration": "30d", "models": ["llama3"], "spend": 0,
        "max_budget": Decimal("12.5"), "user_id": fresh("user"), "team_id": team_id, "agent_id": "agent-1",
        "max_parallel_requests": 7, "metadata": {"owner": "ops", "spend_logs_metadata": {"app": "billing"}},
        "tpm_limit": 100000, "rpm_limit": 1000, "budget_duration": "30d", "allowed_cache_controls": ["no-cache"],
        "config": {"x": 1}, "permissions": {"get_spend_routes": False}, "model_max_budget": {"llama3": 5},
        "model_rpm_limit": {"llama3": 100}, "model_tpm_limit": {"llama3": 10000}, "guardrails": ["pii"],
        "policies": ["p1"], "prompts": ["pr1"], "blocked": False, "aliases": {"fast": "llama3"},
        "object_permission": {"vector_stores": ["vs1"]}, "budget_id": None, "tags": ["compat"],
        "enforced_params": ["user"], "allowed_routes": ["/chat/completions"], "allowed_passthrough_routes": ["/x"],
        "allowed_vector_store_indexes": [{"index_name": "i", "index_permissions": ["read"]}],
        "rpm_limit_type": "best_effort_throughput", "tpm_limit_type": "best_effort_throughput",
        "router_settings": {"num_retries": 2}, "access_group_ids": ["ag"], "soft_budget": Decimal("10"),
        "send_invite_email": False, "key_type": "llm_api", "auto_rotate": False, "rotation_interval": "90d",
        "organization_id": None, "project_id": "proj-1",
    }


# -- keys ------------------------------------------------------------------------------------------

def test_key_generate_takes_every_litellm_field_and_returns_them(admin: Admin) -> None:
    """/key/generate with GenerateKeyRequest's full field set answers every GenerateKeyResponse field, as sent."""
    team_id = admin.call("POST", "/team/new", {"team_id": fresh("team")})["team_id"]
    sent = full_key_request(team_id)
    body = admin.call("POST", "/key/generate", {**sent, "not_a_litellm_field": 1}, params={"unknown": "q"})
    assert_has_fields(body, GENERATE_KEY_RESPONSE)
    assert_echoed(body, sent, skip=("spend", "metadata", "duration"))
    assert body["metadata"] == {**sent["metadata"], "tags": ["compat"]}
    assert (body["duration"], body["spend"], body["token"], body["token_id"]) == (
        "30d", 0, hash_key(body["key"]), hash_key(body["key"]))
    assert "not_a_litellm_field" not in body


def test_key_info_without_key_answers_for_the_calling_key(admin: Admin) -> None:
    """GET /key/info with no key= and a virtual key is that key's own info (LiteLLM's rule)."""
    raw = admin.call("POST", "/key/generate", {"key_alias": fresh("self"), "max_budget": Decimal("3")})["key"]
    body = admin.call("GET", "/key/info", key=raw)
    assert (body["key"], body["info"]["key_alias"].startswith("self-"), body["info"]["max_budget"]) == (
        hash_key(raw), True, Decimal("3"))


def test_key_info_without_key_for_the_master_key_is_litellms_404(admin: Admin) -> None:
    """The master key is no key of the table: /key/info without key= is LiteLLM's 404 "Key not found in database"."""
    body = admin.call("GET", "/key/info", status=404)
    assert body["error"] | {"code": str(body["error"]["code"])} == {
        "message": "Key not found in database", "type": "not_found_error", "param": "key", "code": "404"}


def test_key_block_and_unblock(admin: Admin) -> None:
    """A blocked key is refused with LiteLLM's 401 wording; unblocked, it calls again."""
    raw = admin.call("POST", "/key/generate", {})["key"]
    assert admin.call("POST", "/key/block", {"key": raw})["blocked"] is True
    refused = admin.chat(raw, status=401)
    assert "Key is blocked. Update via `/key/unblock` if you're admin." in refused.json()["error"]["message"]
    assert admin.call("POST", "/key/unblock", {"key": raw})["blocked"] is False
    admin.chat(raw)


def test_key_regenerate_replaces_the_key_and_keeps_its_settings(admin: Admin) -> None:
    """/key/regenerate answers a new key with the old one's settings; the old key stops working."""
    alias = fresh("regen")
    old = admin.call("POST", "/key/generate", {"key_alias": alias, "max_budget": Decimal("2"), "models": ["llama3"]})["key"]
    body = admin.call("POST", "/key/regenerate", {"key": old, "max_budget": Decimal("4")})
    assert_has_fields(body, GENERATE_KEY_RESPONSE)
    assert (body["key_alias"], body["max_budget"], body["models"], body["key"] != old) == (alias, Decimal("4"), ["llama3"], True)
    admin.chat(old, status=401)
    admin.chat(body["key"])
    path_form = admin.call("POST", f"/key/{body['key']}/regenerate", {})
    assert path_form["key_alias"] == alias


def test_key_list_filters_and_pages(admin: Admin) -> None:
    """/key/list by team_id, two a page: three keys make two pages, the second with one key."""
    team_id = admin.call("POST", "/team/new", {"team_id": fresh("team")})["team_id"]
    hashes = {hash_key(admin.call("POST", "/key/generate", {"team_id": team_id})["key"]) for _ in range(3)}
    first = admin.call("GET", "/key/list", params={"team_id": team_id, "page": "1", "size": "2", "ignored": "x"})
    second = admin.call("GET", "/key/list", params={"team_id": team_id, "page": "2", "size": "2"})
    assert (first["total_count"], first["total_pages"], len(first["keys"]), len(second["keys"])) == (3, 2, 2, 1)
    assert set(first["keys"]) | set(second["keys"]) == hashes
    full = admin.call("GET", "/key/list", params={"team_id": team_id, "return_full_object": "true"})
    assert {k["token"] for k in full["keys"]} == hashes


def test_an_internal_user_manages_only_its_own_keys(admin: Admin) -> None:
    """An internal_user's key makes keys for its own user, sees them, and is refused another user's key."""
    user = admin.call("POST", "/user/new", {"user_id": fresh("iu"), "user_role": "internal_user"})
    own = admin.call("POST", "/key/generate", {"key_alias": fresh("mine")}, key=user["key"])
    assert own["user_id"] == user["user_id"]
    listed = admin.call("GET", "/key/list", key=user["key"])
    assert set(listed["keys"]) == {hash_key(user["key"]), hash_key(own["key"])}
    other = admin.call("POST", "/key/generate", {})["key"]
    admin.call("POST", "/key/delete", {"keys": [other]}, key=user["key"], status=403)
    admin.call("GET", "/key/info", params={"key": other}, key=user["key"], status=403)
    admin.call("POST", "/key/delete", {"keys": [own["key"]]}, key=user["key"])


# -- teams -----------------------------------------------------------------------------------------

def test_team_new_returns_litellms_team_table(admin: Admin) -> None:
    """/team/new with NewTeamRequest's fields answers LiteLLM_TeamTable's fields, as sent."""
    sent = {"team_id": fresh("team"), "team_alias": "compat", "metadata": {"a": 1}, "tpm_limit": 10, "rpm_limit": 5,
            "max_budget": Decimal("9.5"), "soft_budget": Decimal("8"), "budget_duration": "1d", "models": ["llama3"],
            "blocked": False, "router_settings": {"r": 1}, "access_group_ids": ["g"], "model_aliases": {"m": "llama3"},
            "tags": ["t"], "guardrails": ["g1"], "team_member_budget": Decimal("1.25"),
            "team_member_key_duration": "7d", "model_rpm_limit": {"llama3": 3}, "secret_manager_settings": {"s": 1}}
    body = admin.call("POST", "/team/new", sent)
    assert_has_fields(body, TEAM_TABLE)
    assert_echoed(body, sent)


def test_team_members_list_update_delete_and_block(admin: Admin) -> None:
    """Members are added, updated (max_budget_in_team), listed and removed; a blocked team's key is refused."""
    team_id = admin.call("POST", "/team/new", {"team_id": fresh("team")})["team_id"]
    member = fresh("member")
    admin.call("POST", "/team/member_add", {"team_id": team_id, "member": [{"user_id": member, "role": "user"}]})
    updated = admin.call("POST", "/team/member_update", {"team_id": team_id, "user_id": member, "role": "admin",
                                                          "max_budget_in_team": Decimal("2.5")})
    assert updated == {"team_id": team_id, "user_id": member, "user_email": None, "max_budget_in_team": Decimal("2.5")}
    info = admin.call("GET", "/team/info", params={"team_id": team_id})
    assert (info["team_info"]["admins"], info["team_memberships"][0]["litellm_budget_table"]["max_budget"]) == (
        [member], Decimal("2.5"))
    listed = admin.call("GET", "/team/list", params={"user_id": member})
    assert [t["team_id"] for t in listed] == [team_id]
    after = admin.call("POST", "/team/member_delete", {"team_id": team_id, "user_id": member})
    assert (after["members_with_roles"], after["admins"]) == ([], [])
    key = admin.call("POST", "/key/generate", {"team_id": team_id})["key"]
    assert admin.call("POST", "/team/block", {"team_id": team_id})["blocked"] is True
    refused = admin.chat(key, status=401)
    assert f"Team={team_id} is blocked" in refused.json()["error"]["message"]
    admin.call("POST", "/team/unblock", {"team_id": team_id})
    admin.chat(key)


# -- users and customers -----------------------------------------------------------------------------

def test_user_new_and_list(admin: Admin) -> None:
    """/user/new answers NewUserResponse's fields; /user/list pages users with their key counts."""
    sent = {"user_id": fresh("user"), "user_email": "a@example.com", "user_alias": "ua", "user_role": "internal_user",
            "max_budget": Decimal("5"), "models": ["llama3"], "metadata": {"m": 1}, "budget_duration": "30d",
            "organizations": [], "sso_user_id": "sso-1", "config": {"c": 2}}
    body = admin.call("POST", "/user/new", sent)
    assert_has_fields(body, NEW_USER_RESPONSE)
    assert_echoed(body, sent)
    listed = admin.call("GET", "/user/list", params={"user_ids": sent["user_id"], "page": "1", "page_size": "5"})
    assert (listed["total"], listed["users"][0]["user_id"], listed["users"][0]["key_count"]) == (1, sent["user_id"], 1)


def test_customers_answer_on_both_prefixes_with_their_budget_table(admin: Admin) -> None:
    """/end_user/new and /customer/info are one customer; its budget is LiteLLM's nested litellm_budget_table."""
    sent = {"user_id": fresh("cust"), "alias": "Acme", "blocked": False, "max_budget": Decimal("0.5"),
            "budget_duration": "30d", "tpm_limit": 10, "rpm_limit": 2, "allowed_model_region": "eu",
            "default_model": "llama3", "model_max_budget": {"llama3": {"max_budget": 1}}}
    admin.call("POST", "/end_user/new", sent)
    body = admin.call("GET", "/customer/info", params={"end_user_id": sent["user_id"]})
    assert_has_fields(body, END_USER_TABLE)
    assert_echoed(body, {k: sent[k] for k in ("user_id", "alias", "blocked", "allowed_model_region", "default_model")})
    assert body["litellm_budget_table"] == {"budget_id": None, "soft_budget": None, "max_budget": Decimal("0.5"),
                                            "max_parallel_requests": None, "tpm_limit": 10, "rpm_limit": 2,
                                            "model_max_budget": {"llama3": {"max_budget": 1}}, "budget_duration": "30d"}
    assert sent["user_id"] in [c["user_id"] for c in admin.call("GET", "/end_user/list")]
    both = admin.call("POST", "/customer/new", {"user_id": fresh("cust"), "max_budget": 1, "budget_id": "b"}, status=400)
    assert both["error"]["message"].endswith("Set either 'max_budget' or 'budget_id', not both.")


# -- budgets and organisations -------------------------------------------------------------------------

def test_budgets_link_and_update_what_names_them(admin: Admin) -> None:
    """A customer naming a budget_id takes its limits; /budget/update changes them on the customer too."""
    budget = admin.call("POST", "/budget/new", {"budget_id": fresh("budget"), "max_budget": Decimal("1"),
                                                "budget_duration": "1d", "rpm_limit": 3, "unknown": "ignored"})
    assert_has_fields(budget, BUDGET_TABLE)
    customer = fresh("cust")
    admin.call("POST", "/customer/new", {"user_id": customer, "budget_id": budget["budget_id"]})
    admin.call("POST", "/budget/update", {"budget_id": budget["budget_id"], "max_budget": Decimal("2")})
    info = admin.call("GET", "/customer/info", params={"end_user_id": customer})
    assert (info["budget_id"], info["litellm_budget_table"]["max_budget"], info["litellm_budget_table"]["rpm_limit"]) == (
        budget["budget_id"], Decimal("2"), 3)
    assert admin.call("POST", "/budget/info", {"budgets": [budget["budget_id"]]})[0]["max_budget"] == Decimal("2")
    assert budget["budget_id"] in [b["budget_id"] for b in admin.call("GET", "/budget/list")]
    admin.call("POST", "/budget/delete", {"id": budget["budget_id"]}, status=400)  # still linked
    admin.call("POST", "/customer/delete", {"user_ids": [customer]})
    admin.call("POST", "/budget/delete", {"id": budget["budget_id"]})


def test_organization_routes(admin: Admin) -> None:
    """new/info/update/list/member_add/member_update/member_delete/delete answer LiteLLM's shapes."""
    sent = {"organization_alias": "Acme", "models": ["llama3"], "max_budget": Decimal("100"), "budget_duration": "30d",
            "metadata": {"tier": "gold"}, "tpm_limit": 1000, "model_rpm_limit": {"llama3": 5}}
    org = admin.call("POST", "/organization/new", sent)
    assert_has_fields(org, ORGANIZATION_WITH_MEMBERS)
    assert_echoed(org, {k: sent[k] for k in ("organization_alias", "models", "metadata")})
    assert (org["litellm_budget_table"]["max_budget"], org["litellm_budget_table"]["budget_id"]) == (
        Decimal("100"), org["budget_id"])
    org_id = org["organization_id"]
    renamed = admin.call("PATCH", "/organization/update", {"organization_id": org_id, "organization_alias": "Acme2"})
    assert renamed["organization_alias"] == "Acme2"
    user = fresh("ou")
    added = admin.call("POST", "/organization/member_add", {"organization_id": org_id, "max_budget_in_organization": 3,
                                                            "member": {"user_id": user, "role": "internal_user"}})
    assert added["updated_organization_memberships"][0]["user_role"] == "internal_user"
    updated = admin.call("PATCH", "/organization/member_update", {"organization_id": org_id, "user_id": user,
                                                                  "role": "org_admin"})
    assert (updated["user_role"], updated["litellm_budget_table"]["max_budget"]) == ("org_admin", Decimal("3"))
    info = admin.call("GET", "/organization/info", params={"organization_id": org_id})
    assert (info["organization_alias"], [m["user_id"] for m in info["members"]]) == ("Acme2", [user])
    assert org_id in [o["organization_id"] for o in admin.call("GET", "/organization/list")]
    admin.call("DELETE", "/organization/member_delete", {"organization_id": org_id, "user_id": user})
    assert admin.call("GET", "/organization/info", params={"organization_id": org_id})["members"] == []
    deleted = admin.call("DELETE", "/organization/delete", {"organization_ids": [org_id]})
    assert [o["organization_id"] for o in deleted] == [org_id]
    admin.call("GET", "/organization/info", params={"organization_id": org_id}, status=404)


def test_deleting_an_organisation_deletes_its_teams_keys_and_memberships(admin: Admin) -> None:
    """As LiteLLM's /organization/delete: its teams and keys go with it, and its members' `organizations` forget it."""
    org_id = admin.call("POST", "/organization/new", {"organization_alias": fresh("org")})["organization_id"]
    team_id = admin.call("POST", "/team/new", {"team_id": fresh("team"), "organization_id": org_id})["team_id"]
    team_key = admin.call("POST", "/key/generate", {"team_id": team_id})["key"]
    org_key = admin.call("POST", "/key/generate", {"organization_id": org_id})["key"]
    other_key = admin.call("POST", "/key/generate", {})["key"]
    user = fresh("ou")
    admin.call("POST", "/organization/member_add", {"organization_id": org_id, "member": {"user_id": user, "role": "internal_user"}})
    assert admin.call("GET", "/user/info", params={"user_id": user})["user_info"]["organizations"] == [org_id]
    admin.call("DELETE", "/organization/delete", {"organization_ids": [org_id]})
    admin.call("GET", "/team/info", params={"team_id": team_id}, status=404)
    for gone in (team_key, org_key):
        admin.call("GET", "/key/info", params={"key": gone}, status=404)
        admin.chat(gone, status=401)
    admin.chat(other_key)
    assert admin.call("GET", "/user/info", params={"user_id": user})["user_info"]["organizations"] == []


def test_an_organisation_budget_is_enforced_and_its_spend_logged(admin: Admin, tally_stack: TallyStack) -> None:
    """A team key of an organisation answers to the organisation's budget; logs and daily rollups carry its id."""
    org_id = admin.call("POST", "/organization/new", {"organization_alias": "small", "max_budget": Decimal("0.00001")})["organization_id"]
    team_id = admin.call("POST", "/team/new", {"team_id": fresh("team"), "team_alias": "t", "organization_id": org_id})["team_id"]
    created = admin.call("POST", "/key/generate", {"team_id": team_id, "key_alias": fresh("orgkey"), "user_id": "u-org"})
    assert created["organization_id"] == org_id  # a team key belongs to the team's organisation
    # Under budget with nothing in flight, a call may start (and overshoot): the third is refused.
    request_id = admin.chat(created["key"]).headers["x-litellm-call-id"]
    admin.chat(created["key"])
    refused = admin.chat(created["key"], status=400).json()["error"]
    assert (refused["type"], refused["message"]) == (
        "budget_exceeded", f"Budget has been exceeded! Organization={org_id} Current cost: 0.00001480, Max budget: 0.00001")

    def logged() -> tuple[Any, ...] | None:
        with psycopg.connect(tally_stack.common.database_url) as conn:
            return conn.execute('SELECT organization_id, metadata FROM "LiteLLM_SpendLogs" WHERE request_id = %s',
                                (request_id,)).fetchone()

    row = eventually(logged, 60, "the ledger to log the call")
    assert row[0] == org_id
    assert {k: row[1].get(k) for k in ("user_api_key_alias", "user_api_key_team_id", "user_api_key_team_alias",
                                       "user_api_key_user_id", "user_api_key_org_id")} == {
        "user_api_key_alias": created["key_alias"], "user_api_key_team_id": team_id, "user_api_key_team_alias": "t",
        "user_api_key_user_id": "u-org", "user_api_key_org_id": org_id}
    info = admin.call("GET", "/organization/info", params={"organization_id": org_id})
    assert info["spend"] == 2 * CALL_COST

    def rolled_up() -> tuple[Any, ...] | None:
        with psycopg.connect(tally_stack.common.database_url) as conn:
            row = conn.execute('SELECT sum(spend), sum(api_requests) FROM "LiteLLM_DailyOrganizationSpend"'
                               " WHERE organization_id = %s", (org_id,)).fetchone()
        return row if row[1] == 2 else None

    assert eventually(rolled_up, 60, "the organisation's daily rollup") == (2 * CALL_COST, 2)


def test_malformed_values_are_refused_with_nothing_changed(admin: Admin) -> None:
    """A malformed value is a 400 naming the field, and no key is made."""
    alias = fresh("bad")
    error = admin.call("POST", "/key/generate", {"key_alias": alias, "max_budget": "lots"}, status=400)["error"]
    assert (error["param"], error["code"]) == ("max_budget", "400")
    assert admin.call("GET", "/key/list", params={"key_alias": alias})["total_count"] == 0
