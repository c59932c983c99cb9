"""Who may call the admin routes: the master key only. No key, an unknown key, a blocked or an
expired key is a 401 (as LiteLLM answers, and as the LLM routes do); any other key a 403."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from services.proxy.admin.routes import Admin
from services.proxy.errors import AuthError, PermissionDenied
from shared.keys import hash_key

MASTER, VIRTUAL = "sk-master-0123456789", "sk-virtual-0123456789"


class Directory:
    def __init__(self, state: dict[str, Any]) -> None:
        self.states = {hash_key(VIRTUAL): state}

    def state(self, kind: str, entity_id: str) -> dict[str, Any] | None:
        return self.states.get(entity_id) if kind == "key" else None


def admin_with(state: dict[str, Any]) -> Admin:
    return Admin(MASTER, Directory(state), guard=None, publisher=None)  # type: ignore[arg-type]


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
        admin_with(state).require_master(request(key))
    assert (refused.value.status, type(refused.value)) == (401, AuthError)
    assert str(refused.value).startswith(f"Authentication Error, {message}")


def test_a_valid_key_other_than_the_master_key_is_403():
    """A valid virtual key that is not the master key is refused with 403."""
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    with pytest.raises(PermissionDenied) as refused:
        admin_with({"expires": future}).require_master(request(VIRTUAL))
    assert refused.value.status == 403


def test_the_master_key_passes():
    """The master key is let through to the admin routes."""
    assert admin_with({}).require_master(request(MASTER)) is None
