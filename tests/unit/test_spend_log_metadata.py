"""A spend log's metadata names the caller as LiteLLM does, so its dashboards' JSON paths work."""

from __future__ import annotations

import orjson

from services.ledger.rows import SPEND_LOG_COLUMNS, spend_log_line
from tests.fixtures.events import priced_event


def _metadata(**usage: object) -> dict[str, object] | None:
    event = priced_event(**usage)
    cell = dict(zip(SPEND_LOG_COLUMNS, spend_log_line(event, False).text.split("\t")))["metadata"]
    return None if cell == "\\N" else orjson.loads(cell)


def test_the_caller_is_named_with_litellms_keys() -> None:
    """Alias, team, internal user, organisation and requester address go under user_api_key_* names."""
    metadata = _metadata(key_alias="ops", team_id="t1", user_id="u1", organization_id="o1", requester_ip_address="10.0.0.1")
    assert {k: v for k, v in (metadata or {}).items() if k != "cost_breakdown"} == {
        "user_api_key_alias": "ops", "user_api_key_team_id": "t1", "user_api_key_user_id": "u1",
        "user_api_key_org_id": "o1", "requester_ip_address": "10.0.0.1"}


def test_nothing_unset_is_written() -> None:
    """A call with no alias, team, user, organisation or address adds none of those keys."""
    metadata = _metadata() or {}
    assert not [k for k in metadata if k.startswith("user_api_key") or k == "requester_ip_address"]


def test_the_team_alias_the_proxy_put_in_the_events_metadata_is_written() -> None:
    """The proxy carries the team's alias in the usage event's metadata; the log names it user_api_key_team_alias."""
    metadata = _metadata(team_id="t1", metadata={"user_api_key_team_alias": "Search", "other": 1}) or {}
    assert (metadata["user_api_key_team_id"], metadata["user_api_key_team_alias"], "other" in metadata) == ("t1", "Search", False)
