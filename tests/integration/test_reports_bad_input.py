"""Bad input answers 400 saying what is wrong (or a correct answer), never a 500, never
another tenant's data."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.reports_support import MASTER, PLAIN_KEY, bearer, reports, seeded_database  # noqa: F401

EVIL = ["'; DROP TABLE \"LiteLLM_SpendLogs\"; --", "\" OR 1=1 --", "x' OR 'a'='a", "%", "\\", "\x00", "日本"]


async def status_and_message(reports, path, **params):
    response = await reports.get(path, params=params, headers=bearer(MASTER))
    text = await response.text()
    message = json.loads(text)["error"]["message"] if response.status >= 400 else None
    return response.status, message


async def test_end_before_start_is_400(reports):
    """end_date before start_date: 400 naming both dates."""
    assert await status_and_message(reports, "/global/spend/report", start_date="2024-05-02", end_date="2024-05-01") == (
        400, "end_date 2024-05-01 is before start_date 2024-05-02")


async def test_bad_date_is_400(reports):
    """A date that is not YYYY-MM-DD: 400 quoting it."""
    assert await status_and_message(reports, "/global/spend/report", start_date="30/04/2024", end_date="2024-05-01") == (
        400, "start_date must be a date as YYYY-MM-DD, got '30/04/2024'")


async def test_impossible_date_is_400(reports):
    """February 30th: 400, not a crash."""
    status, message = await status_and_message(reports, "/global/spend/report", start_date="2024-02-30", end_date="2024-03-01")
    assert status == 400 and message.startswith("start_date is not a real date: '2024-02-30'")


async def test_missing_dates_are_400(reports):
    """The report needs both dates."""
    assert await status_and_message(reports, "/global/spend/report") == (
        400, "Please provide start_date and end_date (YYYY-MM-DD)")


async def test_unknown_group_by_is_400(reports):
    """group_by outside team|customer|api_key: 400 listing the choices."""
    assert await status_and_message(reports, "/global/spend/report", group_by="planet", start_date="2024-04-30",
                                    end_date="2024-05-01") == (400, "group_by must be one of team, customer, api_key; got 'planet'")


@pytest.mark.parametrize("limit", ["-1", "0", "ten", "1e3"])
async def test_bad_limits_are_400(reports, limit):
    """Negative, zero or non-numeric limits: 400."""
    status, _ = await status_and_message(reports, "/global/spend/keys", limit=limit)
    assert status == 400


async def test_huge_range_is_fine(reports):
    """Year 1 to 9999 answers every day with spend and nothing else."""
    response = await reports.get("/global/spend/report", params={"group_by": "api_key", "start_date": "0001-01-01",
                                                                 "end_date": "9999-12-31"}, headers=bearer(MASTER))
    assert response.status == 200 and len(await response.json()) == 3


async def test_huge_range_summary_does_not_fill_the_future(reports):
    """/spend/logs summarised over a huge range lists days from the first spend to today at most."""
    response = await reports.get("/spend/logs", params={"start_date": "0001-01-01", "end_date": "9999-12-31"}, headers=bearer(MASTER))
    days = await response.json()
    assert response.status == 200 and days[0]["startTime"] == "2024-04-30" and len(days) < 20_000


@pytest.mark.parametrize("evil", EVIL)
@pytest.mark.parametrize("path,param", [
    ("/global/spend/report", "api_key"), ("/global/spend/report", "internal_user_id"), ("/global/spend/report", "team_id"),
    ("/global/spend/report", "customer_id"), ("/global/spend/tags", "tags"), ("/spend/logs", "request_id"),
    ("/spend/logs", "user_id"), ("/spend/users", "user_id"), ("/team/daily/activity", "team_ids"),
    ("/tag/daily/activity", "model"), ("/global/spend/logs", "api_key"),
])
async def test_sql_metacharacters_never_500(reports, path, param, evil):
    """Quotes, comments and NULs in any parameter: 200 with no rows or 400, never 500."""
    response = await reports.get(path, params={"start_date": "2024-04-30", "end_date": "2024-05-02", param: evil},
                                 headers=bearer(MASTER))
    assert response.status in (200, 400), await response.text()
    if response.status == 200 and param not in ("team_id", "customer_id"):
        body = await response.json()
        assert body in ([], {"spend_per_tag": []}) or (isinstance(body, dict) and body.get("results") == [])


@pytest.mark.parametrize("evil", EVIL)
async def test_sql_metacharacters_in_dates_are_400(reports, evil):
    """Anything but a date in a date parameter: 400."""
    status, _ = await status_and_message(reports, "/global/spend/report", start_date=evil, end_date="2024-05-01")
    assert status == 400


async def test_spend_logs_table_survives(reports):
    """After all that, the spend logs are still there."""
    response = await reports.get("/spend/logs", params={"request_id": "'; DROP TABLE \"LiteLLM_SpendLogs\"; --"},
                                 headers=bearer(MASTER))
    after = await reports.get("/spend/logs", params={"request_id": "r1"}, headers=bearer(MASTER))
    assert (response.status, len(await after.json())) == (200, 1)


async def test_unknown_parameters_are_ignored(reports):
    """Parameters the route does not know change nothing."""
    response = await reports.get("/global/spend", params={"start_date": "2024-04-01", "end_date": "2024-05-31", "colour": "blue"},
                                 headers=bearer(MASTER))
    assert response.status == 200


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b'{"startTime": 5}', b'{"startTime": "yesterday"}',
                                  b'{"startTime": "2024-05-02", "endTime": "2024-05-01"}', b'{"api_key": 7}'])
async def test_bad_end_users_bodies_are_400(reports, body):
    """POST /global/spend/end_users with a broken body: 400."""
    response = await reports.post("/global/spend/end_users", data=body, headers={**bearer(MASTER), "Content-Type": "application/json"})
    assert response.status == 400, await response.text()


@pytest.mark.parametrize("body", [b"{}", b'{"model": "gpt-4o"}', b'{"model": 5, "messages": []}', b'{"messages": "hi", "model": "x"}',
                                  b'{"completion_response": {"model": "gpt-4o"}}',
                                  b'{"completion_response": {"model": "gpt-4o", "usage": {"prompt_tokens": -5}}}',
                                  b'{"completion_response": {"model": "gpt-4o", "usage": {"prompt_tokens": "many"}}}',
                                  b'{"model": "gpt-4o", "messages": ["hi"]}'])
async def test_bad_calculate_bodies_are_400(reports, body):
    """POST /spend/calculate without a model and messages or a usable completion_response: 400."""
    response = await reports.post("/spend/calculate", data=body, headers={**bearer(PLAIN_KEY), "Content-Type": "application/json"})
    assert response.status == 400, await response.text()


async def test_page_size_over_the_cap_is_400(reports):
    """page_size above 1000 is refused rather than served."""
    status, message = await status_and_message(reports, "/tag/daily/activity", start_date="2024-04-30", end_date="2024-05-02",
                                               page_size="100000")
    assert (status, message) == (400, "page_size must be at most 1000, got 100000")
