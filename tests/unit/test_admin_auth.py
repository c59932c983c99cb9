"""Who may call the admin routes. No key, an unknown key, a blocked or an expired key is a 401 (as
LiteLLM answers, and as the LLM routes do); the master key or a proxy_admin user's key passes every
route; a proxy_admin_viewer reads; an internal user manages its own keys; any key reads itself;
anything else is a 403."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from services.proxy.admin.access import Access, Allowed, require_team_admin
from services.proxy.errors import AuthError, PermissionDenied
from shared.keys import hash_key

MASTER, VIRTUAL = "sk-master-0123456789", "sk-virtual-0123456789"


class Directory:
    def __init__(self, key: dict[str, Any], user: dict[str, Any] | None = None) -> None:
        self.states = {("key", hash_key(VIRTUAL)): key, ("user", "u1"): user}

    def state(self, kind: str, entity_id: str) -> dict[str, Any] | None:
        return self.states.get((kind, entity_id))


def access_with(key: dict[str, Any], role: str | None = None) -> Access:
    return Access(MASTER, Directory(key, {"user_role": role} if role else None))  # type: ignore[arg-type]


def request(key: str | None):  # noqa: ANN201
    return make_mocked_request("POST", "/key/generate", headers={"Authorization": f"Bearer {key}"} if key else {})


@pytest.mark.parametrize(("key", "state", "message"), [
    (None, {}, "No api key passed in"),
    ("sk-unknown", {}, "Invalid proxy server token passed"),
    (VIRTUAL, {"blocked": True}, "Key is blocked"),
    (VIRTUAL, {"expires": (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()}, "Key expired"),
])
def test_no_key_unknown_blocked_or_expired_is_401(key, state, message):
    """No key, an unknown key, a blocked or an expired key is refused with 401 and LiteLLM's message."""
    with pytest.raises(AuthError) as refused:
        access_with(state).require(request(key), Allowed.SELF_READ)
    assert (refused.value.status, type(refused.value)) == (401, AuthError)
    assert str(refused.value).startswith(f"Authentication Error, {message}")


@pytest.mark.parametrize("allowed", [Allowed.ADMIN, Allowed.ADMIN_READ, Allowed.SELF_WRITE])
def test_a_key_without_a_role_is_403_outside_its_own_reads(allowed):
    """A valid key whose user has no role may not use admin, admin-read or self-service routes."""
    with pytest.raises(PermissionDenied) as refused:
        access_with({"user_id": "u1"}).require(request(VIRTUAL), allowed)
    assert refused.value.status == 403
    assert "Route=/key/generate. Your role=unknown. Your user_id=u1" in str(refused.value)


def test_any_valid_key_may_read_itself():
    """SELF_READ routes let any valid key through (the handler shows only its own)."""
    caller = access_with({"user_id": "u1"}).require(request(VIRTUAL), Allowed.SELF_READ)
    assert (caller.api_key_hash, caller.user_id, caller.role) == (hash_key(VIRTUAL), "u1", None)


@pytest.mark.parametrize(("role", "allowed", "passes"), [
    ("internal_user", Allowed.SELF_WRITE, True),
    ("internal_user", Allowed.ADMIN, False),
    ("internal_user_viewer", Allowed.SELF_WRITE, False),
    ("proxy_admin_viewer", Allowed.ADMIN_READ, True),
    ("proxy_admin_viewer", Allowed.ADMIN, False),
    ("proxy_admin", Allowed.ADMIN, True),
])
def test_roles(role, allowed, passes):
    """The key's user's user_role decides: internal users manage their keys, viewers read, admins do all."""
    access = access_with({"user_id": "u1"}, role)
    if passes:
        assert access.require(request(VIRTUAL), allowed).role == role
    else:
        with pytest.raises(PermissionDenied):
            access.require(request(VIRTUAL), allowed)


def test_the_master_key_passes():
    """The master key is the proxy admin."""
    caller = access_with({}).require(request(MASTER), Allowed.ADMIN)
    assert (caller.is_admin, caller.identity) == (True, None)


TEAM = {"members_with_roles": [{"user_id": "u1", "role": "admin"}, {"user_id": "u2", "role": "user"}]}


@pytest.mark.parametrize(("user_id", "role", "allowed"), [
    ("u1", None, True),  # the team's admin
    ("u2", None, False),  # a plain member
    ("u3", None, False),  # not in the team
    ("u3", "proxy_admin", True),
])
def test_a_teams_admin_manages_its_members(user_id, role, allowed):
    """LiteLLM's team member rule: the proxy admin or a member with role "admin"; others 403 in LiteLLM's words."""
    directory = Directory({"user_id": user_id})
    directory.states[("user", user_id)] = {"user_role": role} if role else None
    caller = Access(MASTER, directory).require(request(VIRTUAL), Allowed.TEAM_ADMIN)  # type: ignore[arg-type]
    if allowed:
        require_team_admin(caller, "t1", TEAM, "/team/member_add")
        return
    with pytest.raises(PermissionDenied) as refused:
        require_team_admin(caller, "t1", TEAM, "/team/member_add")
    assert (refused.value.status, refused.value.message) == (
        403, "Call not allowed. User not proxy admin OR team admin. route=/team/member_add, team_id=t1")
