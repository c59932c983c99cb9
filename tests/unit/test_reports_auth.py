"""Authentication of spend-route callers, with the in-memory key table in place of Postgres (the two
hold to one contract: tests/integration/test_key_table_contract.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from services.reports.auth import Authenticator, require_master, require_spend_reader
from shared.errors import Forbidden, Unauthorized
from shared.keys import hash_key
from tests.fixtures.key_table import InMemoryKeys, Keys

NOW = datetime.now(timezone.utc)
KEYS: Keys = {
    hash_key("sk-reader"): {"permissions": {"get_spend_routes": True}, "user_id": "u"},
    hash_key("sk-plain"): {"user_id": "u", "team_id": "t"},
    hash_key("sk-old"): {"permissions": {"get_spend_routes": True}, "expires": NOW - timedelta(seconds=1)},
    hash_key("sk-blocked"): {"permissions": {"get_spend_routes": True}, "blocked": True},
}


def request(key: str | None, header: str = "Authorization") -> Any:
    headers = {} if key is None else {header: f"Bearer {key}" if header == "Authorization" else key}
    return make_mocked_request("GET", "/global/spend/report", headers=headers)


async def test_master_key_is_admin():
    """The master key is recognised without a lookup."""
    keys = InMemoryKeys(KEYS)
    caller = await Authenticator("sk-master", keys.key).caller(request("sk-master"))
    assert (caller.is_master, caller.sees_everything, keys.lookups) == (True, True, 0)


async def test_spend_permission_is_read_from_permissions():
    """permissions.get_spend_routes: true makes a spend reader (not a master)."""
    caller = await Authenticator("sk-master", InMemoryKeys(KEYS).key).caller(request("sk-reader"))
    assert (caller.is_master, caller.sees_everything) == (False, True)
    with pytest.raises(Forbidden):
        require_master(caller, "/global/spend/reset")


async def test_plain_key_is_forbidden_spend_routes():
    """A key without the permission is known (own user and team) but forbidden spend routes."""
    caller = await Authenticator("sk-master", InMemoryKeys(KEYS).key).caller(request("sk-plain"))
    assert (caller.user_id, caller.team_id, caller.key_hash) == ("u", "t", hash_key("sk-plain"))
    with pytest.raises(Forbidden):
        require_spend_reader(caller, "/global/spend/report")


@pytest.mark.parametrize("key", [None, "sk-nope", "sk-old", "sk-blocked"])
async def test_missing_unknown_expired_blocked_are_401(key):
    """No key, an unknown, an expired or a blocked key: 401."""
    with pytest.raises(Unauthorized):
        await Authenticator("sk-master", InMemoryKeys(KEYS).key).caller(request(key))


async def test_lookups_are_cached_briefly():
    """Within the cache time a key is looked up once."""
    keys = InMemoryKeys(KEYS)
    auth = Authenticator("sk-master", keys.key, ttl_seconds=60)
    for _ in range(3):
        await auth.caller(request("sk-reader"))
    assert keys.lookups == 1


async def test_api_key_header_is_accepted():
    """The key may come in x-litellm-api-key instead of Authorization."""
    caller = await Authenticator("sk-master", InMemoryKeys(KEYS).key).caller(request("sk-master", header="x-litellm-api-key"))
    assert caller.is_master
