"""Authentication of spend-route callers, with an in-memory key table in place of Postgres."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from services.reports.auth import Authenticator, require_master, require_spend_reader
from shared.errors import Forbidden, Unauthorized
from shared.keys import hash_key

NOW = datetime.now(timezone.utc)
KEYS: dict[str, dict[str, Any]] = {
    hash_key("sk-reader"): {"token": hash_key("sk-reader"), "permissions": {"get_spend_routes": True}, "user_id": "u", "team_id": None},
    hash_key("sk-plain"): {"token": hash_key("sk-plain"), "permissions": {}, "user_id": "u", "team_id": "t"},
    hash_key("sk-old"): {"token": hash_key("sk-old"), "permissions": {"get_spend_routes": True}, "expires": NOW - timedelta(seconds=1)},
    hash_key("sk-blocked"): {"token": hash_key("sk-blocked"), "permissions": {"get_spend_routes": True}, "blocked": True},
}


class Lookups:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, token_hash: str) -> dict[str, Any] | None:
        self.count += 1
        return KEYS.get(token_hash)


def request(key: str | None, header: str = "Authorization") -> Any:
    headers = {} if key is None else {header: f"Bearer {key}" if header == "Authorization" else key}
    return make_mocked_request("GET", "/global/spend/report", headers=headers)


async def test_master_key_is_admin():
    """The master key is recognised without a lookup."""
    lookups = Lookups()
    caller = await Authenticator("sk-master", lookups).caller(request("sk-master"))
    assert (caller.is_master, caller.sees_everything, lookups.count) == (True, True, 0)


async def test_spend_permission_is_read_from_permissions():
    """permissions.get_spend_routes: true makes a spend reader (not a master)."""
    caller = await Authenticator("sk-master", Lookups()).caller(request("sk-reader"))
    assert (caller.is_master, caller.sees_everything) == (False, True)
    with pytest.raises(Forbidden):
        require_master(caller, "/global/spend/reset")


async def test_plain_key_is_forbidden_spend_routes():
    """A key without the permission is known (own user and team) but forbidden spend routes."""
    caller = await Authenticator("sk-master", Lookups()).caller(request("sk-plain"))
    assert (caller.user_id, caller.team_id, caller.key_hash) == ("u", "t", hash_key("sk-plain"))
    with pytest.raises(Forbidden):
        require_spend_reader(caller, "/global/spend/report")


@pytest.mark.parametrize("key", [None, "sk-nope", "sk-old", "sk-blocked"])
async def test_missing_unknown_expired_blocked_are_401(key):
    """No key, an unknown, an expired or a blocked key: 401."""
    with pytest.raises(Unauthorized):
        await Authenticator("sk-master", Lookups()).caller(request(key))


async def test_lookups_are_cached_briefly():
    """Within the cache time a key is looked up once."""
    lookups = Lookups()
    auth = Authenticator("sk-master", lookups, ttl_seconds=60)
    for _ in range(3):
        await auth.caller(request("sk-reader"))
    assert lookups.count == 1


async def test_api_key_header_is_accepted():
    """The key may come in x-litellm-api-key instead of Authorization."""
    caller = await Authenticator("sk-master", Lookups()).caller(request("sk-master", header="x-litellm-api-key"))
    assert caller.is_master
