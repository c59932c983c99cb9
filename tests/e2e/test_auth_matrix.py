"""Every admin route and every spend route × {no key, bad key, ordinary key, key with
{"get_spend_routes": true}, master key} answers the documented status (docs/reports.md,
docs/management-api.md, LiteLLM's facts), and an ordinary key never sees another tenant's data;
keys of internal users and admin viewers get what LiteLLM gives those roles.
Real stack: every service its own process, keys made with /key/generate."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from shared.keys import hash_key
from tests.fixtures.polling import eventually
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

TODAY = date.today()
DATES = {"start_date": (TODAY - timedelta(days=7)).isoformat(), "end_date": (TODAY + timedelta(days=1)).isoformat()}
BAD_KEY = "sk-this-key-was-never-issued-0000"
CALLERS = ("none", "bad", "ordinary", "spend_reader", "master")
LLAMA3_COST = Decimal("0.0000074")  # 20 * 5e-08 + 80 * 8e-08 (groq/llama3-8b-8192, fake upstream usage)


@dataclass
class Tenants:
    stack: TallyStack
    keys: dict[str, str]  # caller -> raw key
    other_key: str  # tenant B's ordinary key
    own_request_id: str  # a call made with the ordinary key (tenant A)
    other_request_id: str  # a call made with tenant B's key
    team_a: str
    team_b: str
    user_a: str
    user_b: str

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "none":
            return {}
        if caller == "bad":
            return {"Authorization": f"Bearer {BAD_KEY}"}
        return {"Authorization": f"Bearer {self.keys[caller]}"}


def _admin(client: httpx.Client, master: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body, headers={"Authorization": f"Bearer {master}"})
    assert response.status_code == 200, (path, response.text)
    return response.json()


def _chat(client: httpx.Client, key: str, model: str = "llama3") -> str:
    response = client.post("/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    return response.headers["x-litellm-call-id"]


@pytest.fixture(scope="module")
def proxy(tally_stack: TallyStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tally_stack.url("proxy"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def tenants(tally_stack: TallyStack, proxy: httpx.Client) -> Tenants:
    """Two tenants (team, user, ordinary key, one call each) and a spend-reader key, all known to the
    reports service's key lookup (the ledger has written them) and with their calls logged."""
    master = tally_stack.master_key
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b, user_a, user_b = f"team-a-{suffix}", f"team-b-{suffix}", f"user-a-{suffix}", f"user-b-{suffix}"
    for team in (team_a, team_b):
        _admin(proxy, master, "/team/new", {"team_id": team, "team_alias": team})
    key_a = _admin(proxy, master, "/key/generate", {"user_id": user_a, "team_id": team_a})["key"]
    key_b = _admin(proxy, master, "/key/generate", {"user_id": user_b, "team_id": team_b})["key"]
    reader = _admin(proxy, master, "/key/generate", {"permissions": {"get_spend_routes": True}})["key"]
    own, other = _chat(proxy, key_a), _chat(proxy, key_b, "gpt-4o-mini")
    _chat(proxy, master)

    def ledger_has_everything() -> bool:
        with psycopg.connect(tally_stack.common.database_url) as conn:
            tokens = conn.execute('SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)',
                                  ([hash_key(k) for k in (key_a, key_b, reader)],)).fetchone()[0]
            logs = conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE request_id = ANY(%s)', ([own, other],)).fetchone()[0]
        return tokens == 3 and logs == 2

    # The reports service caches an unknown key for a few seconds: ask it only once the ledger has the keys.
    eventually(ledger_has_everything, 60, "the ledger to write the keys and both calls")
    return Tenants(tally_stack, {"ordinary": key_a, "spend_reader": reader, "master": master}, key_b, own, other,
                   team_a, team_b, user_a, user_b)


# -- the routes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    path: str
    expected: dict[str, int]  # caller -> status (no key and a bad key: always 401)
    prepare: Callable[[Tenants, httpx.Client], tuple[dict[str, str], dict[str, Any] | None]] | None = None

    def request(self, t: Tenants, client: httpx.Client, caller: str) -> httpx.Response:
        params, body = self.prepare(t, client) if self.prepare else ({}, None)
        return client.request(self.method, self.path, params=params, json=body, headers=t.headers(caller))


MASTER_ONLY = {"ordinary": 403, "spend_reader": 403, "master": 200}
OWN_KEY_ONLY = {"ordinary": 200, "spend_reader": 403, "master": 200}  # /key/info?key=<the ordinary key>
SPEND_READ = {"ordinary": 403, "spend_reader": 200, "master": 200}
ANY_VALID_KEY = {"ordinary": 200, "spend_reader": 200, "master": 200}


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _new_key(t: Tenants, client: httpx.Client) -> str:
    return _admin(client, t.keys["master"], "/key/generate", {})["key"]


def _new_team(t: Tenants, client: httpx.Client) -> str:
    return _admin(client, t.keys["master"], "/team/new", {"team_id": _fresh("team")})["team_id"]


def _new_user(t: Tenants, client: httpx.Client) -> str:
    return _admin(client, t.keys["master"], "/user/new", {"user_id": _fresh("user"), "auto_create_key": False})["user_id"]


def _new_customer(t: Tenants, client: httpx.Client) -> str:
    return _admin(client, t.keys["master"], "/customer/new", {"user_id": _fresh("customer")})["user_id"]


def _new_org(t: Tenants, client: httpx.Client) -> str:
    return _admin(client, t.keys["master"], "/organization/new", {"organization_alias": _fresh("org")})["organization_id"]


def _new_budget(t: Tenants, client: httpx.Client) -> str:
    return _admin(client, t.keys["master"], "/budget/new", {"max_budget": 1})["budget_id"]


def _team_with_member(t: Tenants, client: httpx.Client) -> tuple[str, str]:
    team, member = _new_team(t, client), _fresh("member")
    _admin(client, t.keys["master"], "/team/member_add", {"team_id": team, "member": {"user_id": member, "role": "user"}})
    return team, member


def _org_with_member(t: Tenants, client: httpx.Client) -> tuple[str, str]:
    org, member = _new_org(t, client), _fresh("member")
    _admin(client, t.keys["master"], "/organization/member_add",
           {"organization_id": org, "member": {"user_id": member, "role": "internal_user"}})
    return org, member


ADMIN_ROUTES = [
    Route("POST", "/key/generate", MASTER_ONLY, lambda t, c: ({}, {"key_alias": _fresh("alias")})),
    Route("POST", "/key/update", MASTER_ONLY, lambda t, c: ({}, {"key": _new_key(t, c), "metadata": {"tags": ["x"]}})),
    Route("POST", "/key/delete", MASTER_ONLY, lambda t, c: ({}, {"keys": [_new_key(t, c)]})),
    Route("GET", "/key/info", OWN_KEY_ONLY, lambda t, c: ({"key": t.keys["ordinary"]}, None)),
    # Without key=: the calling key itself; the master key is not a virtual key and must name one.
    Route("GET", "/key/info", {"ordinary": 200, "spend_reader": 200, "master": 404}),
    Route("GET", "/key/list", ANY_VALID_KEY),  # a plain key: its own keys only (below)
    Route("POST", "/key/block", MASTER_ONLY, lambda t, c: ({}, {"key": _new_key(t, c)})),
    Route("POST", "/key/unblock", MASTER_ONLY, lambda t, c: ({}, {"key": _new_key(t, c)})),
    Route("POST", "/key/regenerate", MASTER_ONLY, lambda t, c: ({}, {"key": _new_key(t, c)})),
    Route("POST", "/team/new", MASTER_ONLY, lambda t, c: ({}, {"team_id": _fresh("team")})),
    Route("POST", "/team/update", MASTER_ONLY, lambda t, c: ({}, {"team_id": _new_team(t, c), "team_alias": "renamed"})),
    Route("POST", "/team/delete", MASTER_ONLY, lambda t, c: ({}, {"team_ids": [_new_team(t, c)]})),
    Route("POST", "/team/member_add", MASTER_ONLY,
          lambda t, c: ({}, {"team_id": _new_team(t, c), "member": {"user_id": _fresh("member"), "role": "user"}})),
    Route("GET", "/team/info", MASTER_ONLY, lambda t, c: ({"team_id": t.team_a}, None)),
    Route("GET", "/team/list", MASTER_ONLY),
    Route("POST", "/team/member_delete", MASTER_ONLY,
          lambda t, c: ({}, dict(zip(("team_id", "user_id"), _team_with_member(t, c))))),
    Route("POST", "/team/member_update", MASTER_ONLY,
          lambda t, c: ({}, {**dict(zip(("team_id", "user_id"), _team_with_member(t, c))), "role": "admin"})),
    Route("POST", "/team/block", MASTER_ONLY, lambda t, c: ({}, {"team_id": _new_team(t, c)})),
    Route("POST", "/team/unblock", MASTER_ONLY, lambda t, c: ({}, {"team_id": _new_team(t, c)})),
    Route("GET", "/user/list", MASTER_ONLY),
    Route("GET", "/customer/list", MASTER_ONLY),
    Route("GET", "/end_user/info", MASTER_ONLY, lambda t, c: ({"end_user_id": _new_customer(t, c)}, None)),
    Route("POST", "/end_user/new", MASTER_ONLY, lambda t, c: ({}, {"user_id": _fresh("customer")})),
    Route("POST", "/organization/new", MASTER_ONLY, lambda t, c: ({}, {"organization_alias": _fresh("org")})),
    Route("PATCH", "/organization/update", MASTER_ONLY,
          lambda t, c: ({}, {"organization_id": _new_org(t, c), "organization_alias": "renamed"})),
    Route("DELETE", "/organization/delete", MASTER_ONLY, lambda t, c: ({}, {"organization_ids": [_new_org(t, c)]})),
    Route("GET", "/organization/info", MASTER_ONLY, lambda t, c: ({"organization_id": _new_org(t, c)}, None)),
    Route("GET", "/organization/list", MASTER_ONLY),
    Route("POST", "/organization/member_add", MASTER_ONLY,
          lambda t, c: ({}, {"organization_id": _new_org(t, c), "member": {"user_id": _fresh("m"), "role": "internal_user"}})),
    Route("PATCH", "/organization/member_update", MASTER_ONLY,
          lambda t, c: ({}, {**dict(zip(("organization_id", "user_id"), _org_with_member(t, c))), "role": "org_admin"})),
    Route("DELETE", "/organization/member_delete", MASTER_ONLY,
          lambda t, c: ({}, dict(zip(("organization_id", "user_id"), _org_with_member(t, c))))),
    Route("POST", "/budget/new", MASTER_ONLY, lambda t, c: ({}, {"max_budget": 1})),
    Route("POST", "/budget/update", MASTER_ONLY, lambda t, c: ({}, {"budget_id": _new_budget(t, c), "max_budget": 2})),
    Route("POST", "/budget/info", MASTER_ONLY, lambda t, c: ({}, {"budgets": [_new_budget(t, c)]})),
    Route("GET", "/budget/list", MASTER_ONLY),
    Route("POST", "/budget/delete", MASTER_ONLY, lambda t, c: ({}, {"id": _new_budget(t, c)})),
    Route("POST", "/user/new", MASTER_ONLY, lambda t, c: ({}, {"user_id": _fresh("user")})),
    Route("POST", "/user/update", MASTER_ONLY, lambda t, c: ({}, {"user_id": _new_user(t, c), "user_alias": "renamed"})),
    Route("POST", "/user/delete", MASTER_ONLY, lambda t, c: ({}, {"user_ids": [_new_user(t, c)]})),
    Route("GET", "/user/info", MASTER_ONLY, lambda t, c: ({"user_id": _new_user(t, c)}, None)),
    Route("POST", "/customer/new", MASTER_ONLY, lambda t, c: ({}, {"user_id": _fresh("customer")})),
    Route("POST", "/customer/update", MASTER_ONLY, lambda t, c: ({}, {"user_id": _new_customer(t, c), "alias": "renamed"})),
    Route("POST", "/customer/delete", MASTER_ONLY, lambda t, c: ({}, {"user_ids": [_new_customer(t, c)]})),
    Route("GET", "/customer/info", MASTER_ONLY, lambda t, c: ({"end_user_id": _new_customer(t, c)}, None)),
]

SPEND_ROUTES = [
    Route("GET", "/global/spend/report", SPEND_READ, lambda t, c: (DATES, None)),
    Route("GET", "/global/spend/logs", SPEND_READ),
    Route("GET", "/global/spend", SPEND_READ),
    Route("GET", "/global/spend/keys", SPEND_READ),
    Route("GET", "/global/spend/teams", SPEND_READ),
    Route("GET", "/global/spend/models", SPEND_READ),
    Route("GET", "/global/spend/provider", SPEND_READ, lambda t, c: (DATES, None)),
    Route("GET", "/global/spend/all_tag_names", SPEND_READ),
    Route("GET", "/global/spend/tags", SPEND_READ, lambda t, c: (DATES, None)),
    Route("POST", "/global/spend/end_users", SPEND_READ, lambda t, c: ({}, {})),
    Route("POST", "/global/spend/reset", MASTER_ONLY),
    Route("GET", "/spend/logs", ANY_VALID_KEY),  # a plain key: its own rows only (below)
    Route("GET", "/spend/tags", SPEND_READ),
    Route("GET", "/spend/keys", SPEND_READ),
    Route("GET", "/spend/users", SPEND_READ),
    Route("POST", "/spend/calculate", ANY_VALID_KEY,
          lambda t, c: ({}, {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]})),
    Route("GET", "/user/daily/activity", ANY_VALID_KEY, lambda t, c: (DATES, None)),  # a plain key: its own user
    Route("GET", "/team/daily/activity", ANY_VALID_KEY, lambda t, c: (DATES, None)),  # a plain key: its own team
    Route("GET", "/tag/daily/activity", SPEND_READ, lambda t, c: (DATES, None)),
]


def _expected(route: Route, caller: str) -> int:
    return 401 if caller in ("none", "bad") else route.expected[caller]


def _assert_answer(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:500]
    if status >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == str(status)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: f"{r.method} {r.path}{'?' if r.prepare else ''}")
def test_admin_route_status(tenants: Tenants, proxy: httpx.Client, route: Route, caller: str) -> None:
    """An admin route answers 401 without a valid key, 403 to any key but the master key, 200 to it."""
    _assert_answer(route.request(tenants, proxy, caller), _expected(route, caller))


@pytest.fixture(scope="module", params=["proxy", "reports"])
def spend_client(request: pytest.FixtureRequest, tally_stack: TallyStack) -> Iterator[httpx.Client]:
    """The spend routes answer the same on the reports service and through the proxy."""
    with httpx.Client(base_url=tally_stack.url(request.param), timeout=30) as client:
        yield client


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", SPEND_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_spend_route_status(tenants: Tenants, proxy: httpx.Client, spend_client: httpx.Client, route: Route,
                            caller: str) -> None:
    """A spend route answers 401 without a valid key, 403 to a key it does not serve, 200 otherwise."""
    _assert_answer(_spend_request(route, tenants, proxy, spend_client, caller), _expected(route, caller))


def _spend_request(route: Route, t: Tenants, admin: httpx.Client, client: httpx.Client, caller: str) -> httpx.Response:
    params, body = route.prepare(t, admin) if route.prepare else ({}, None)
    return client.request(route.method, route.path, params=params, json=body, headers=t.headers(caller))


MODEL_ROUTES = [
    Route("GET", "/v1/models", ANY_VALID_KEY),
    Route("GET", "/model/info", ANY_VALID_KEY),
    Route("GET", "/v1/model/info", ANY_VALID_KEY),
    Route("GET", "/model_group/info", ANY_VALID_KEY),
    Route("POST", "/reload/model_cost_map", MASTER_ONLY),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", MODEL_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_model_route_status(tenants: Tenants, proxy: httpx.Client, route: Route, caller: str) -> None:
    """A model route answers 401 without a valid key and 200 to any valid one; reloading prices is the master key's."""
    _assert_answer(route.request(tenants, proxy, caller), _expected(route, caller))


# -- an ordinary key sees only its own tenant -------------------------------------------------------

def _get(client: httpx.Client, t: Tenants, path: str, **params: str) -> httpx.Response:
    return client.get(path, params=params, headers=t.headers("ordinary"))


def test_plain_key_raw_logs_are_only_its_own(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/spend/logs?summarize=false with a plain key lists exactly its own call."""
    rows = _get(spend_client, tenants, "/spend/logs", summarize="false").json()
    assert [(r["request_id"], r["api_key"]) for r in rows] == [(tenants.own_request_id, hash_key(tenants.keys["ordinary"]))]


def test_plain_key_cannot_read_another_tenants_log_by_request_id(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/spend/logs?request_id=<another key's call> is empty for a plain key."""
    assert _get(spend_client, tenants, "/spend/logs", request_id=tenants.other_request_id).json() == []


def test_plain_key_cannot_read_another_keys_logs(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/spend/logs?api_key=<another key> is empty for a plain key, raw or as its hash."""
    for key in (tenants.other_key, hash_key(tenants.other_key)):
        assert _get(spend_client, tenants, "/spend/logs", api_key=key, summarize="false").json() == []


def test_plain_key_cannot_read_another_users_logs(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/spend/logs?user_id=<another tenant's user> is empty for a plain key."""
    assert _get(spend_client, tenants, "/spend/logs", user_id=tenants.user_b, summarize="false").json() == []


def test_plain_key_daily_summary_holds_only_its_own_spend(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/spend/logs with dates (summarised per day) counts only the plain key's own call."""
    days = _get(spend_client, tenants, "/spend/logs", **DATES).json()
    own = hash_key(tenants.keys["ordinary"])
    with_spend = [d for d in days if Decimal(str(d["spend"])) != 0]
    assert len(with_spend) == 1
    day = with_spend[0]
    assert Decimal(str(day["spend"])) == LLAMA3_COST
    assert set(day) - {"startTime", "spend", "users", "models"} == {own}
    assert day["users"] == {tenants.user_a: pytest.approx(float(LLAMA3_COST))}


def test_plain_key_user_activity_is_its_own_user(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/user/daily/activity with a plain key reports its own user's spend only."""
    answer = _get(spend_client, tenants, "/user/daily/activity", **DATES).json()
    assert Decimal(str(answer["metadata"]["total_spend"])) == LLAMA3_COST
    keys = {k for day in answer["results"] for k in day["breakdown"]["api_keys"]}
    assert keys == {hash_key(tenants.keys["ordinary"])}


def test_plain_key_team_activity_is_its_own_team(tenants: Tenants, spend_client: httpx.Client) -> None:
    """/team/daily/activity with a plain key reports its own team's spend only."""
    answer = _get(spend_client, tenants, "/team/daily/activity", **DATES).json()
    assert Decimal(str(answer["metadata"]["total_spend"])) == LLAMA3_COST
    keys = {k for day in answer["results"] for k in day["breakdown"]["api_keys"]}
    assert keys == {hash_key(tenants.keys["ordinary"])}


def test_plain_key_may_not_ask_for_another_user_or_team(tenants: Tenants, spend_client: httpx.Client) -> None:
    """Naming another tenant's user or team in the activity routes is a 403 for a plain key."""
    _assert_answer(_get(spend_client, tenants, "/user/daily/activity", user_id=tenants.user_b, **DATES), 403)
    _assert_answer(_get(spend_client, tenants, "/team/daily/activity", team_ids=tenants.team_b, **DATES), 403)
    _assert_answer(_get(spend_client, tenants, "/team/daily/activity", team_ids=f"{tenants.team_a},{tenants.team_b}", **DATES), 403)


# -- roles: an internal user manages its own keys, an admin viewer reads --------------------------

@pytest.fixture(scope="module")
def role_keys(tenants: Tenants, proxy: httpx.Client) -> dict[str, str]:
    """A key of an internal_user and one of a proxy_admin_viewer (made by /user/new)."""
    master = tenants.keys["master"]
    return {role: _admin(proxy, master, "/user/new", {"user_id": _fresh(role), "user_role": role})["key"]
            for role in ("internal_user", "proxy_admin_viewer")}


def _as(client: httpx.Client, key: str, method: str, path: str, body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None) -> httpx.Response:
    return client.request(method, path, json=body, params=params, headers={"Authorization": f"Bearer {key}"})


def test_an_internal_user_manages_its_own_keys_and_nothing_else(tenants: Tenants, proxy: httpx.Client,
                                                                 role_keys: dict[str, str]) -> None:
    """An internal_user key generates, updates, regenerates and deletes its user's keys; 403 elsewhere."""
    key = role_keys["internal_user"]
    made = _as(proxy, key, "POST", "/key/generate", {"key_alias": _fresh("own")})
    _assert_answer(made, 200)
    own = made.json()["key"]
    _assert_answer(_as(proxy, key, "POST", "/key/update", {"key": own, "max_budget": 1}), 200)
    renewed = _as(proxy, key, "POST", "/key/regenerate", {"key": own})
    _assert_answer(renewed, 200)
    _assert_answer(_as(proxy, key, "POST", "/key/delete", {"keys": [renewed.json()["key"]]}), 200)
    _assert_answer(_as(proxy, key, "POST", "/key/update", {"key": tenants.keys["ordinary"], "max_budget": 1}), 403)
    _assert_answer(_as(proxy, key, "POST", "/key/generate", {"user_id": tenants.user_b}), 403)
    _assert_answer(_as(proxy, key, "POST", "/key/generate", {"team_id": tenants.team_a}), 403)
    _assert_answer(_as(proxy, key, "POST", "/team/new", {"team_id": _fresh("team")}), 403)
    _assert_answer(_as(proxy, key, "GET", "/user/list"), 403)


def test_an_admin_viewer_reads_but_does_not_change(tenants: Tenants, proxy: httpx.Client,
                                                    role_keys: dict[str, str]) -> None:
    """A proxy_admin_viewer key reads every key, team, user, customer, organisation and budget; writes are 403."""
    key = role_keys["proxy_admin_viewer"]
    for path, params in (("/key/info", {"key": tenants.keys["ordinary"]}), ("/key/list", {}), ("/team/list", {}),
                         ("/team/info", {"team_id": tenants.team_a}), ("/user/list", {}), ("/customer/list", {}),
                         ("/organization/list", {}), ("/budget/list", {})):
        _assert_answer(_as(proxy, key, "GET", path, params=params), 200)
    _assert_answer(_as(proxy, key, "POST", "/key/generate", {}), 403)
    _assert_answer(_as(proxy, key, "POST", "/team/new", {"team_id": _fresh("team")}), 403)


def test_a_plain_key_lists_only_itself(tenants: Tenants, proxy: httpx.Client) -> None:
    """/key/list with a plain key (no user of its own) is that key alone; /key/info without key= is itself."""
    listed = _get(proxy, tenants, "/key/list").json()
    assert (listed["keys"], listed["total_count"]) == ([hash_key(tenants.keys["ordinary"])], 1)
    assert _get(proxy, tenants, "/key/info").json()["key"] == hash_key(tenants.keys["ordinary"])


# -- model access: what a key may call is what /v1/models lists ----------------------------------

def _listed(client: httpx.Client, key: str) -> list[str]:
    response = _as(client, key, "GET", "/v1/models")
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


def _refusal(client: httpx.Client, key: str, model: str) -> tuple[int, str, str]:
    response = _as(client, key, "POST", "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


def test_a_key_calls_what_it_lists_and_its_team_bounds_it(tenants: Tenants, proxy: httpx.Client) -> None:
    """A team's models bound its keys at call time as in /v1/models: 401 in LiteLLM's team wording."""
    master = tenants.keys["master"]
    team = _admin(proxy, master, "/team/new", {"team_id": _fresh("team"), "models": ["llama3"]})["team_id"]
    key = _admin(proxy, master, "/key/generate", {"team_id": team, "models": ["llama3", "gpt-4o-mini"]})["key"]
    assert _listed(proxy, key) == ["llama3"]
    _chat(proxy, key)
    assert _refusal(proxy, key, "gpt-4o-mini") == (401, "team_model_access_denied",
                                                   "team not allowed to access model. This team can only access "
                                                   "models=['llama3']. Tried to access gpt-4o-mini")
    _admin(proxy, master, "/team/update", {"team_id": team, "models": ["gpt-4o-mini"]})
    assert _listed(proxy, key) == ["gpt-4o-mini"]
    assert _refusal(proxy, key, "llama3")[:2] == (401, "team_model_access_denied")


def test_all_team_models_and_a_keys_own_list(tenants: Tenants, proxy: httpx.Client) -> None:
    """all-team-models is the team's list; a key's own list refuses the rest in the key's wording."""
    master = tenants.keys["master"]
    team = _admin(proxy, master, "/team/new", {"team_id": _fresh("team"), "models": ["llama3"]})["team_id"]
    member = _admin(proxy, master, "/key/generate", {"team_id": team, "models": ["all-team-models"]})["key"]
    assert _listed(proxy, member) == ["llama3"]
    _chat(proxy, member)
    assert _refusal(proxy, member, "gpt-4o-mini")[:2] == (401, "team_model_access_denied")
    own = _admin(proxy, master, "/key/generate", {"models": ["llama3"]})["key"]
    assert _listed(proxy, own) == ["llama3"]
    assert _refusal(proxy, own, "gpt-4o-mini") == (401, "key_model_access_denied",
                                                   "key not allowed to access model. This key can only access "
                                                   "models=['llama3']. Tried to access gpt-4o-mini")


def test_an_organisations_models_bound_its_keys_calls_and_lists(tenants: Tenants, proxy: httpx.Client) -> None:
    """An organisation's models bound a team key of it at call time and in the model routes (401 in
    LiteLLM's org wording); /organization/update of models counts for the key's next call."""
    master = tenants.keys["master"]
    org = _admin(proxy, master, "/organization/new", {"organization_alias": _fresh("org"), "models": ["llama3"]})["organization_id"]
    team = _admin(proxy, master, "/team/new", {"team_id": _fresh("team"), "organization_id": org})["team_id"]
    key = _admin(proxy, master, "/key/generate", {"team_id": team})["key"]
    groups = _as(proxy, key, "GET", "/model_group/info").json()["data"]
    deployments = _as(proxy, key, "GET", "/model/info").json()["data"]
    assert (_listed(proxy, key), [g["model_group"] for g in groups], [d["model_name"] for d in deployments]) == (
        ["llama3"], ["llama3"], ["llama3"])
    _chat(proxy, key)
    assert _refusal(proxy, key, "gpt-4o-mini") == (401, "org_model_access_denied",
                                                   "org not allowed to access model. This org can only access "
                                                   "models=['llama3']. Tried to access gpt-4o-mini")
    _assert_answer(_as(proxy, master, "PATCH", "/organization/update", {"organization_id": org, "models": ["gpt-4o-mini"]}), 200)
    assert _listed(proxy, key) == ["gpt-4o-mini"]
    _chat(proxy, key, "gpt-4o-mini")
    assert _refusal(proxy, key, "llama3")[:2] == (401, "org_model_access_denied")
    _assert_answer(_as(proxy, master, "PATCH", "/organization/update", {"organization_id": org, "models": []}), 200)
    _chat(proxy, key)


def test_a_users_models_bound_its_keys_without_a_team(tenants: Tenants, proxy: httpx.Client) -> None:
    """LiteLLM's can_user_call_model: a user's models bound its personal keys (401 in the user's wording), not its team keys."""
    master = tenants.keys["master"]
    user = _admin(proxy, master, "/user/new", {"user_id": _fresh("user"), "models": ["llama3"], "auto_create_key": False})["user_id"]
    personal = _admin(proxy, master, "/key/generate", {"user_id": user})["key"]
    assert _listed(proxy, personal) == ["llama3"]
    assert _refusal(proxy, personal, "gpt-4o-mini") == (401, "user_model_access_denied",
                                                        "user not allowed to access model. This user can only access "
                                                        "models=['llama3']. Tried to access gpt-4o-mini")
    team = _admin(proxy, master, "/team/new", {"team_id": _fresh("team")})["team_id"]
    _chat(proxy, _admin(proxy, master, "/key/generate", {"user_id": user, "team_id": team})["key"], "gpt-4o-mini")


def test_a_team_admin_manages_its_teams_members_only(tenants: Tenants, proxy: httpx.Client) -> None:
    """A key of a team's "admin" member adds, updates and removes that team's members; other teams' are 403."""
    master = tenants.keys["master"]
    team, other_team, boss, newcomer = _fresh("team"), _fresh("team"), _fresh("boss"), _fresh("new")
    for team_id in (team, other_team):
        _admin(proxy, master, "/team/new", {"team_id": team_id})
    _admin(proxy, master, "/team/member_add", {"team_id": team, "member": {"user_id": boss, "role": "admin"}})
    key = _admin(proxy, master, "/key/generate", {"user_id": boss})["key"]
    added = _as(proxy, key, "POST", "/team/member_add", {"team_id": team, "member": {"user_id": newcomer, "role": "user"}})
    _assert_answer(added, 200)
    assert [m["user_id"] for m in added.json()["members_with_roles"]] == [boss, newcomer]
    _assert_answer(_as(proxy, key, "POST", "/team/member_update", {"team_id": team, "user_id": newcomer, "role": "admin"}), 200)
    _assert_answer(_as(proxy, key, "POST", "/team/member_delete", {"team_id": team, "user_id": newcomer}), 200)
    refused = _as(proxy, key, "POST", "/team/member_add", {"team_id": other_team, "member": {"user_id": newcomer, "role": "user"}})
    assert (refused.status_code, refused.json()["error"]["message"]) == (
        403, f"Call not allowed. User not proxy admin OR team admin. route=/team/member_add, team_id={other_team}")
    _assert_answer(_as(proxy, key, "POST", "/team/update", {"team_id": team, "max_budget": 1}), 403)
