"""One contract, two key tables: the in-memory one the unit tests authenticate with and Postgres
behind ReportsStore.key give the same rows and the same answers from the Authenticator."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import make_mocked_request

from services.reports.auth import Authenticator, KeyLoader
from shared.errors import Unauthorized
from shared.keys import hash_key
from shared.migrations import migrate
from tests.fixtures.key_table import InMemoryKeys, Keys, postgres_keys

EXPIRED = datetime(2020, 1, 1, tzinfo=timezone.utc)
KEYS: Keys = {
    hash_key("sk-bare"): {},
    hash_key("sk-full"): {"key_alias": "full", "user_id": "u", "team_id": "t", "permissions": {"get_spend_routes": True},
                          "expires": datetime(2099, 1, 1, 12, 30, tzinfo=timezone.utc), "blocked": False},
    hash_key("sk-expired"): {"expires": EXPIRED},
    hash_key("sk-blocked"): {"blocked": True},
}


@pytest.fixture(params=["in-memory", "postgres"])
async def lookup(request: pytest.FixtureRequest) -> AsyncIterator[KeyLoader]:
    """The key lookup of one implementation, holding KEYS."""
    if request.param == "in-memory":
        yield InMemoryKeys(KEYS).key
        return
    database_url = request.getfixturevalue("fresh_database_url")  # (a sync fixture: only this param makes a database)
    await migrate(database_url)
    async with postgres_keys(database_url, KEYS) as store:
        yield store.key


def caller_of(key: str):  # noqa: ANN201
    return make_mocked_request("GET", "/global/spend/report", headers={"Authorization": f"Bearer {key}"})


async def test_an_unknown_key_is_none(lookup: KeyLoader):
    """A token hash that is not in the table reads as None."""
    assert await lookup(hash_key("sk-nobody")) is None


async def test_a_key_with_only_its_token_reads_back_with_the_tables_defaults(lookup: KeyLoader):
    """Unset columns come back as None, permissions as {} and blocked as False."""
    assert await lookup(hash_key("sk-bare")) == {"token": hash_key("sk-bare"), "key_alias": None, "user_id": None,
                                                 "team_id": None, "permissions": {}, "expires": None, "blocked": False}


async def test_every_column_reads_back_with_its_value_and_type(lookup: KeyLoader):
    """Permissions come back as a dict and expires as an aware datetime, equal to what was written."""
    row = await lookup(hash_key("sk-full"))
    assert row == {"token": hash_key("sk-full"), **KEYS[hash_key("sk-full")]}
    assert (type(row["permissions"]), row["expires"].utcoffset()) == (dict, datetime(2099, 1, 1, tzinfo=timezone.utc).utcoffset())


@pytest.mark.parametrize(("key", "message"), [("sk-expired", "this key expired at 2020-01-01T00:00:00+00:00"),
                                              ("sk-blocked", "this key is blocked")])
async def test_the_authenticator_refuses_expired_and_blocked_keys_from_either_table(lookup: KeyLoader, key: str, message: str):
    """The same row read from either table makes the Authenticator refuse the key with the same message."""
    with pytest.raises(Unauthorized, match=f"^Invalid API key: {re.escape(message)}$"):
        await Authenticator(None, lookup).caller(caller_of(key))


async def test_the_authenticator_admits_a_spend_reader_from_either_table(lookup: KeyLoader):
    """A key with get_spend_routes is a spend reader with its own user and team, from either table."""
    caller = await Authenticator(None, lookup).caller(caller_of("sk-full"))
    assert (caller.is_master, caller.sees_everything, caller.user_id, caller.team_id) == (False, True, "u", "t")
