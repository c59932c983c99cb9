"""Who may read what: master key, keys with get_spend_routes, other keys (403, no data), no key
(401), and a plain key on /spend/logs seeing only its own rows."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.reports_support import (  # noqa: F401 - fixtures
    BLOCKED_KEY, EXPIRED_KEY, K1, KEY_TWO, MASTER, PLAIN_KEY, READER_KEY, bearer, reports, seeded_database,
)

RANGE = {"start_date": "2024-04-30", "end_date": "2024-05-02"}
READ_ROUTES = ["/global/spend/report", "/global/spend/logs", "/global/spend", "/global/spend/keys", "/global/spend/teams",
               "/global/spend/models", "/global/spend/provider", "/global/spend/all_tag_names", "/global/spend/tags",
               "/spend/tags", "/spend/keys", "/spend/users", "/tag/daily/activity"]


@pytest.mark.parametrize("path", READ_ROUTES)
async def test_no_key_is_401(reports, path):
    """Without a key every spend route answers 401 in OpenAI's error shape."""
    response = await reports.get(path, params=RANGE)
    body = await response.json()
    assert (response.status, body["error"]["type"]) == (401, "authentication_error")


@pytest.mark.parametrize("path", READ_ROUTES)
async def test_plain_key_is_403_without_data(reports, path):
    """A key without get_spend_routes gets 403 and nothing but the error."""
    response = await reports.get(path, params=RANGE, headers=bearer(PLAIN_KEY))
    body = await response.json()
    assert (response.status, list(body), body["error"]["type"]) == (403, ["error"], "permission_error")


@pytest.mark.parametrize("path", READ_ROUTES)
async def test_spend_reader_key_is_allowed(reports, path):
    """A key whose permissions has get_spend_routes: true reads every spend route."""
    response = await reports.get(path, params=RANGE, headers=bearer(READER_KEY))
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("key", ["sk-unknown", EXPIRED_KEY, BLOCKED_KEY])
async def test_unknown_expired_or_blocked_key_is_401(reports, key):
    """Unknown, expired and blocked keys are refused even with get_spend_routes."""
    response = await reports.get("/global/spend/report", params=RANGE, headers=bearer(key))
    assert response.status == 401


async def test_post_end_users_needs_spend_permission(reports):
    """POST /global/spend/end_users: 403 for a plain key."""
    response = await reports.post("/global/spend/end_users", json={}, headers=bearer(PLAIN_KEY))
    assert response.status == 403


async def test_plain_key_sees_only_its_own_logs(reports):
    """/spend/logs with a plain key: only that key's rows, whatever it asks for."""
    response = await reports.get("/spend/logs", params={"summarize": "false", **RANGE}, headers=bearer(PLAIN_KEY))
    rows = json.loads(await response.text())
    assert sorted(r["request_id"] for r in rows) == ["r1", "r2", "r5"]
    assert {r["api_key"] for r in rows} == {K1}


async def test_plain_key_cannot_read_another_keys_logs(reports):
    """Asking for another key's rows by api_key or request_id gives nothing."""
    by_key = await reports.get("/spend/logs", params={"api_key": KEY_TWO}, headers=bearer(PLAIN_KEY))
    by_request = await reports.get("/spend/logs", params={"request_id": "r3"}, headers=bearer(PLAIN_KEY))
    assert (await by_key.json(), await by_request.json()) == ([], [])


async def test_plain_key_summary_is_its_own(reports):
    """A plain key's daily summary counts only its own spend."""
    response = await reports.get("/spend/logs", params={"start_date": "2024-04-30", "end_date": "2024-04-30"}, headers=bearer(PLAIN_KEY))
    assert json.loads(await response.text()) == [
        {"startTime": "2024-04-30", "spend": 0.00246, K1: 0.00246, "users": {"ishaan": 0.00246}, "models": {"gpt-4": 0.00246}}]


async def test_plain_key_reads_its_own_team_activity(reports):
    """A member key reads its own team's activity and gets 403 for another team's."""
    own = await reports.get("/team/daily/activity", params=RANGE, headers=bearer(PLAIN_KEY))
    other = await reports.get("/team/daily/activity", params={"team_ids": "team-b", **RANGE}, headers=bearer(PLAIN_KEY))
    body = json.loads(await own.text())
    assert (own.status, other.status) == (200, 403)
    assert {e for day in body["results"] for e in day["breakdown"]["entities"]} == {"team-a"}


async def test_plain_key_may_calculate(reports):
    """/spend/calculate is open to any valid key, closed without one."""
    body = {"completion_response": {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}}
    ok = await reports.post("/spend/calculate", json=body, headers=bearer(PLAIN_KEY))
    anonymous = await reports.post("/spend/calculate", json=body)
    assert (ok.status, anonymous.status) == (200, 401)


@pytest.mark.parametrize("key", [READER_KEY, PLAIN_KEY])
async def test_reset_is_master_only(reports, key):
    """POST /global/spend/reset refuses every key but the master key."""
    response = await reports.post("/global/spend/reset", headers=bearer(key))
    assert response.status == 403


async def test_key_in_x_litellm_api_key_header(reports):
    """The key may also come in the x-litellm-api-key header."""
    response = await reports.get("/global/spend", headers={"x-litellm-api-key": MASTER})
    assert response.status == 200
