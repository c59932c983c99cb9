"""Admin request checks: every field of LiteLLM's request models accepted, fields outside them
ignored (as LiteLLM's pydantic models ignore them), malformed values and hostile input refused."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from services.proxy.admin import schemas
from services.proxy.admin.validation import MAX_ADMIN_BODY_BYTES, AdminBadRequest, parse_body, validate

# Every field of LiteLLM's GenerateKeyRequest (GenerateRequestBase + KeyRequestBase + its own).
FULL_GENERATE_KEY = {
    "key_alias": "a", "duration": "30d", "models": ["gpt-4o"], "spend": 0, "max_budget": Decimal("1.5"),
    "user_id": "u", "team_id": "t", "agent_id": "ag", "max_parallel_requests": 2, "metadata": {"x": 1},
    "tpm_limit": 100, "rpm_limit": 10, "budget_duration": "1d", "allowed_cache_controls": ["no-cache"],
    "config": {"c": 1}, "permissions": {"get_spend_routes": True}, "model_max_budget": {"gpt-4o": 5},
    "model_rpm_limit": {"gpt-4o": 1}, "model_tpm_limit": {"gpt-4o": 2}, "guardrails": ["g"], "policies": ["p"],
    "prompts": ["pr"], "blocked": False, "aliases": {"a": "b"}, "object_permission": {"vector_stores": []},
    "key": "sk-x", "budget_id": "b", "tags": ["t1"], "enforced_params": ["user"], "allowed_routes": ["/chat"],
    "allowed_passthrough_routes": ["/x"], "allowed_vector_store_indexes": [{"index_name": "i", "index_permissions": ["read"]}],
    "rpm_limit_type": "best_effort_throughput", "tpm_limit_type": "dynamic", "router_settings": {"r": 1},
    "access_group_ids": ["ag1"], "soft_budget": Decimal("1"), "send_invite_email": False, "key_type": "llm_api",
    "auto_rotate": False, "rotation_interval": "30d", "organization_id": "o", "project_id": "p1",
}


def test_every_litellm_field_is_accepted_unchanged() -> None:
    """A /key/generate body with all of GenerateKeyRequest's fields validates to itself."""
    assert validate("/key/generate", FULL_GENERATE_KEY, schemas.KEY_GENERATE) == FULL_GENERATE_KEY


def test_a_field_litellm_does_not_know_is_ignored() -> None:
    """A field outside LiteLLM's model is dropped, not refused (LiteLLM ignores it too)."""
    assert validate("/key/generate", {"colour": "red", "key_alias": "a"}, schemas.KEY_GENERATE) == {"key_alias": "a"}


def test_money_is_parsed_exactly() -> None:
    """max_budget 0.000148 stays exactly Decimal("0.000148")."""
    fields = validate("/key/generate", parse_body(b'{"max_budget": 0.000148, "budget_duration": "30d"}'), schemas.KEY_GENERATE)
    assert fields == {"max_budget": Decimal("0.000148"), "budget_duration": "30d"}


@pytest.mark.parametrize(("body", "param"), [
    (b'{"max_budget": -1}', "max_budget"),
    (b'{"max_budget": true}', "max_budget"),
    (b'{"budget_duration": "30w"}', "budget_duration"),
    (b'{"duration": "0s"}', "duration"),
    (b'{"rpm_limit": 1.5}', "rpm_limit"),
    (b'{"rpm_limit": 2147483648}', "rpm_limit"),
    (b'{"models": "gpt-4"}', "models"),
    (b'{"aliases": []}', "aliases"),
    (b'{"key_type": "superuser"}', "key_type"),
    (b'{"temp_budget_expiry": "tomorrow"}', "temp_budget_expiry"),
])
def test_malformed_values_are_400s_naming_the_field(body: bytes, param: str) -> None:
    """Each malformed value is refused with the field named as the error's param."""
    with pytest.raises(AdminBadRequest) as info:
        validate("/key/update", parse_body(body), schemas.KEY_UPDATE)
    assert (info.value.status, info.value.param) == (400, param)


def test_an_id_longer_than_an_identifier_may_be_is_refused() -> None:
    """key_alias over 1,024 characters is a 400: it is recorded on every call of the key."""
    with pytest.raises(AdminBadRequest) as info:
        validate("/key/generate", {"key_alias": "a" * 1025}, schemas.KEY_GENERATE)
    assert info.value.param == "key_alias"


@pytest.mark.parametrize("body", [
    json.dumps({"metadata": {"x": "a\u0000b"}}).encode(),
    json.dumps({"metadata": {"x": "a"}, "config": json.loads("[" * 40 + "]" * 40)}).encode(),
    b'{"metadata": {"x": "' + b"a" * MAX_ADMIN_BODY_BYTES + b'"}}',
])
def test_hostile_bodies_are_refused_before_any_field_is_read(body: bytes) -> None:
    """A NUL anywhere, nesting past 32 levels, or a body over 256 KiB is a 400."""
    with pytest.raises(AdminBadRequest):
        parse_body(body)


def test_required_fields_are_required() -> None:
    """/key/update without key is a 400 naming key."""
    with pytest.raises(AdminBadRequest) as info:
        validate("/key/update", {"max_budget": 1}, schemas.KEY_UPDATE, ("key",))
    assert info.value.param == "key"


def test_a_body_that_is_not_an_object_is_refused() -> None:
    """A JSON list is not a request body."""
    with pytest.raises(AdminBadRequest):
        parse_body(b"[1, 2]")


def test_team_members_are_normalised() -> None:
    """A single member object becomes a one-element list with the default role."""
    fields = validate("/team/member_add", {"team_id": "t", "member": {"user_id": "u"}}, schemas.TEAM_MEMBER_ADD)
    assert fields["member"] == [{"user_id": "u", "user_email": None, "role": "user"}]


def test_an_org_member_needs_litellms_org_role() -> None:
    """An organisation member's role is org_admin, internal_user or internal_user_viewer."""
    with pytest.raises(AdminBadRequest) as info:
        validate("/organization/member_add", {"organization_id": "o", "member": {"user_id": "u", "role": "admin"}},
                 schemas.ORG_MEMBER_ADD)
    assert info.value.param == "member"


@pytest.mark.parametrize("page", [str(2**64), "0", "1000000001"])
def test_a_list_page_out_of_bounds_is_a_400(page):
    """/key/list and the other list routes refuse a page number outside 1..10^9 (fuzzing found 2^64 a 500)."""
    from services.proxy.admin.context import AdminContext
    with pytest.raises(AdminBadRequest):
        AdminContext.page({"page": page})
    assert AdminContext.page({"page": "1000000000", "page_size": "5"}) == (1_000_000_000, 5)
