"""LiteLLM's model routes on Tally: /v1/models, /model/info, /model_group/info in LiteLLM's shapes,
filtered by what the calling key may use (its models, its team's, all-team-models, access groups,
its user's and its organisation's),
and wildcard deployments routed and listed as LiteLLM does."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.proxy.auth.keys import Authenticator, CallerIdentity, KeyTable
from services.proxy.errors import InvalidRequest
from services.proxy.routing.access import EVERY_MODEL, access_groups_of, model_grant, usable_models, user_model_grant
from services.proxy.routing.model_routes import ModelRoutes
from services.proxy.routing.router import Router
from shared.config import parse_config
from shared.errors import openai_errors
from shared.events import EntityChanged
from shared.keys import hash_key
from shared.pricing import load_catalog
from shared.pricing.versions import CatalogVersions

MASTER = "sk-master-for-model-routes"
CONFIG = parse_config({"model_list": [
    {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-upstream-secret", "rpm": 10},
     "model_info": {"access_groups": ["beta"]}},
    {"model_name": "gpt-4o", "litellm_params": {"model": "azure/gpt-4o-eu", "api_base": "https://eu.example.com", "api_key": "k",
                                                "rpm": 5}, "model_info": {"base_model": "azure/gpt-4o", "id": "eu-1"}},
    {"model_name": "claude", "litellm_params": {"model": "openai/claude-gw", "api_base": "http://gw", "base_model": "claude-sonnet-4-5"}},
    {"model_name": "embed", "litellm_params": {"model": "openai/text-embedding-3-small"}, "model_info": {"mode": "embedding"}},
    {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key": "k"}},
    {"model_name": "*", "litellm_params": {"model": "openai/*", "api_base": "http://catch-all"}},
]}, {})
KEYS = {
    "sk-only-gpt": {"models": ["gpt-4o"]},
    "sk-team-member": {"models": ["all-team-models"], "team_id": "t1"},
    "sk-team-default": {"team_id": "t1"},
    "sk-beta": {"models": ["beta"]},
    "sk-org": {"organization_id": "o1"},
    "sk-org-team": {"team_id": "t1", "organization_id": "o1"},
    "sk-user": {"user_id": "u1"},
}
TEAMS = {"t1": {"team_id": "t1", "models": ["claude", "embed"]}}
OTHERS = {("organization", "o1"): {"models": ["gpt-4o", "embed"]}, ("user", "u1"): {"models": ["claude"]}}


@pytest.fixture
async def client():
    table = KeyTable(access_groups_of(CONFIG.model_list))
    for team_id, state in TEAMS.items():
        table.apply(EntityChanged(entity_type="team", entity_id=team_id, state=state))
    for (kind, entity_id), state in OTHERS.items():
        table.apply(EntityChanged(entity_type=kind, entity_id=entity_id, state=state))
    for raw, state in KEYS.items():
        table.apply(EntityChanged(entity_type="key", entity_id=hash_key(raw), state=state))
    routes = ModelRoutes(CONFIG.model_list, CatalogVersions(load_catalog()), Authenticator(MASTER, table))
    app = web.Application(middlewares=[openai_errors])
    routes.install(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def get(client: TestClient, path: str, key: str = MASTER) -> tuple[int, Any]:
    response = await client.get(path, headers={"Authorization": f"Bearer {key}"})
    return response.status, orjson.loads(await response.read())


def ids(body: dict) -> list[str]:
    return [row["id"] for row in body["data"]]


# --- who may use what ----------------------------------------------------------------------------


def key(*models: str) -> object:
    return model_grant(models, {}, is_key=True)


def team(*models: str) -> object:
    return model_grant(models, {}, is_key=False)


def test_a_model_must_pass_the_key_and_the_team() -> None:
    """LiteLLM's steps: the key's list, then the team's; all-team-models leaves it to the team."""
    proxy = ["a", "b", "c"]
    assert usable_models([key("a", "b"), team("b", "c")], proxy) == ["b"]
    assert usable_models([key("a", "all-team-models"), team("b")], proxy) == ["b"]
    assert usable_models([key("all-proxy-models"), team("b")], proxy) == ["b"]
    assert usable_models([key("all-team-models"), EVERY_MODEL], proxy) == proxy


def test_key_without_models_uses_its_teams_then_every_model() -> None:
    """An empty key list defers to the team's, and an empty team list to the whole proxy."""
    assert (usable_models([key(), team("b")], ["a", "b"]), usable_models([key(), team()], ["a", "b"])) == (["b"], ["a", "b"])


def test_the_organisations_list_bounds_what_key_and_team_admit() -> None:
    """A third step: the organisation's list keeps only its models, and lists them when nothing else is restricted."""
    proxy = ["a", "b", "c"]
    assert usable_models([key("a", "b"), team(), team("b", "c")], proxy) == ["b"]
    assert usable_models([key(), team(), team("c", "a")], proxy) == ["c", "a"]
    assert usable_models([key(), team("all-proxy-models"), team()], proxy) == proxy


def test_no_default_models_on_a_user_admits_nothing() -> None:
    """LiteLLM's "no-default-models" on a user: its keys without a team may call no model."""
    grant = user_model_grant(["no-default-models"], {})
    assert (grant.allows("a"), usable_models([key(), grant, EVERY_MODEL], ["a", "b"])) == (False, [])


def test_a_pattern_admits_the_models_it_matches() -> None:
    """`anthropic/*` in a key's models admits every anthropic/ name and lists the proxy's."""
    grant = key("anthropic/*")
    assert (grant.allows("anthropic/claude-x"), grant.allows("anthropicx"), grant.allows("openai/gpt-4o")) == (True, False, False)
    assert usable_models([grant, EVERY_MODEL], ["anthropic/claude-x", "gpt-4o"]) == ["anthropic/*", "anthropic/claude-x"]


async def test_master_key_lists_every_model_with_wildcards_expanded(client) -> None:
    """/v1/models for the admin: config order, anthropic/* as the catalog's Anthropic models, * as itself."""
    status, body = await get(client, "/v1/models")
    names = ids(body)
    assert (status, body["object"], names[:3], names[-1]) == (200, "list", ["gpt-4o", "claude", "embed"], "*")
    assert "anthropic/claude-sonnet-4-5" in names and all(n.startswith("anthropic/") for n in names[3:-1])
    assert body["data"][0] == {"id": "gpt-4o", "object": "model", "created": 1677610602, "owned_by": "openai"}


async def test_return_wildcard_routes_lists_the_pattern_too(client) -> None:
    """?return_wildcard_routes=true keeps anthropic/* itself before its expansion."""
    _, body = await get(client, "/models?return_wildcard_routes=true")
    names = ids(body)
    assert names[names.index("anthropic/*") + 1].startswith("anthropic/claude")


@pytest.mark.parametrize(("key", "expected"), [
    ("sk-only-gpt", ["gpt-4o"]),
    ("sk-team-member", ["claude", "embed"]),
    ("sk-team-default", ["claude", "embed"]),
    ("sk-beta", ["gpt-4o"]),
    ("sk-org", ["gpt-4o", "embed"]),
    ("sk-org-team", ["embed"]),
    ("sk-user", ["claude"]),
])
async def test_v1_models_shows_only_what_the_key_may_use(client, key, expected) -> None:
    """Key list, all-team-models, the team's list for a key with none, an access group, the
    organisation's list (alone and with the team's), the user's list for a key without a team."""
    assert ids((await get(client, "/v1/models", key))[1]) == expected


async def test_unknown_key_gets_401(client) -> None:
    """The model routes need a valid key, as every LiteLLM route does."""
    status, body = await get(client, "/model/info", "sk-nobody")
    assert (status, body["error"]["type"]) == (401, "auth_error")


# --- /model/info ---------------------------------------------------------------------------------


async def test_model_info_has_litellms_fields_without_credentials(client) -> None:
    """One row per deployment: model_name, litellm_params without api_key, model_info with the price map's fields."""
    _, body = await get(client, "/model/info")
    first = body["data"][0]
    assert first["litellm_params"] == {"model": "openai/gpt-4o", "rpm": 10}
    info = first["model_info"]
    assert (info["key"], info["litellm_provider"], info["mode"], info["db_model"], info["access_groups"]) == (
        "gpt-4o", "openai", "chat", False, ["beta"])
    assert (D(str(info["input_cost_per_token"])), D(str(info["output_cost_per_token"]))) == (D("0.0000025"), D("0.00001"))
    assert "temperature" in info["supported_openai_params"]


async def test_model_info_prices_are_the_catalogs_exact_digits(client) -> None:
    """Money is written with the Decimal's own digits (0.0000025 as the catalog holds it), never a float's."""
    response = await client.get("/v1/model/info?litellm_model_id=eu-1", headers={"Authorization": f"Bearer {MASTER}"})
    text = (await response.read()).decode()
    body = orjson.loads(text)
    assert [row["model_info"]["id"] for row in body["data"]] == ["eu-1"]
    assert body["data"][0]["model_info"]["key"] == "azure/gpt-4o" and '"input_cost_per_token":0.0000025,' in text


async def test_model_info_of_a_base_model_across_providers(client) -> None:
    """openai/claude-gw with base_model claude-sonnet-4-5 shows Anthropic's entry and the base model."""
    _, body = await get(client, "/model/info")
    claude = next(row for row in body["data"] if row["model_name"] == "claude")["model_info"]
    assert (claude["key"], claude["base_model"], D(str(claude["input_cost_per_token"]))) == (
        "claude-sonnet-4-5", "claude-sonnet-4-5", D("0.000003"))


async def test_model_info_is_filtered_by_the_key(client) -> None:
    """A team member with all-team-models sees the team's deployments only."""
    _, body = await get(client, "/model/info", "sk-team-member")
    assert [row["model_name"] for row in body["data"]] == ["claude", "embed"]


async def test_overlong_model_id_is_a_400(client) -> None:
    """A query value over 256 characters is refused in OpenAI's error shape."""
    status, body = await get(client, "/model/info?litellm_model_id=" + "x" * 300)
    assert (status, body["error"]["param"]) == (400, "litellm_model_id")


# --- /model_group/info ---------------------------------------------------------------------------


async def test_model_group_info_merges_a_groups_deployments(client) -> None:
    """gpt-4o: both providers, the first entry's prices and flags, rpm summed over the deployments."""
    _, body = await get(client, "/model_group/info?model_group=gpt-4o")
    (group,) = body["data"]
    assert (group["model_group"], group["providers"], group["rpm"], group["tpm"], group["mode"]) == (
        "gpt-4o", ["openai", "azure"], 15, None, "chat")
    assert (D(str(group["input_cost_per_token"])), group["supports_vision"]) == (D("0.0000025"), True)


async def test_model_info_and_group_info_follow_the_organisations_list(client) -> None:
    """A key of an organisation limited to gpt-4o and embed sees only their deployments and groups."""
    _, info = await get(client, "/model/info", "sk-org")
    _, groups = await get(client, "/model_group/info", "sk-org")
    assert ([row["model_name"] for row in info["data"]], [g["model_group"] for g in groups["data"]]) == (
        ["gpt-4o", "gpt-4o", "embed"], ["gpt-4o", "embed"])


async def test_model_group_info_for_a_key_lists_its_groups(client) -> None:
    """A key limited to gpt-4o sees one group; an embedding deployment's mode is embedding."""
    _, mine = await get(client, "/model_group/info", "sk-only-gpt")
    _, team = await get(client, "/model_group/info?model_group=embed", "sk-team-member")
    assert ([g["model_group"] for g in mine["data"]], team["data"][0]["mode"]) == (["gpt-4o"], "embedding")


# --- wildcard routing ----------------------------------------------------------------------------


def router() -> Router:
    return Router.from_deployments(CONFIG.model_list, {})


def test_provider_wildcard_routes_the_asked_name_upstream() -> None:
    """anthropic/claude-sonnet-4-5 goes to the anthropic/* deployment as claude-sonnet-4-5, grouped as asked."""
    target = router().pick("anthropic/claude-sonnet-4-5")
    assert (target.provider, target.upstream_model, target.model_group, target.response_headers["x-litellm-model-group"]) == (
        "anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5")


def test_catch_all_wildcard_fills_the_deployments_model() -> None:
    """* with model openai/* sends gpt-4.1-mini to the catch-all base as openai/gpt-4.1-mini."""
    target = router().pick("gpt-4.1-mini")
    assert (target.model, target.upstream_model, target.api_base) == ("openai/gpt-4.1-mini", "gpt-4.1-mini", "http://catch-all")


def test_exact_name_wins_over_a_wildcard() -> None:
    """gpt-4o is the configured group, not the catch-all."""
    assert router().pick("gpt-4o").model_group == "gpt-4o"


def test_wildcard_target_keeps_the_deployments_id() -> None:
    """Two names through one wildcard share its model id (headers, spend logs, timeouts)."""
    r = router()
    assert r.pick("anthropic/a").model_id == r.pick("anthropic/b").model_id


def test_hostile_names_match_no_wildcard() -> None:
    """A name with a path escape or a space is not routed through *; the error is the usual unknown model."""
    with pytest.raises(InvalidRequest, match="Invalid model name"):
        router().pick("../../admin")
    with pytest.raises(InvalidRequest):
        router().pick("gpt 4")
