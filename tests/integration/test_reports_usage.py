"""The Usage page's reads on the hand-checkable data set (tests/fixtures/reports_support.py):
/global/spend/usage under every kind of filter, /spend/logs/ui paged, sorted and filtered, and
/global/spend/budgets; exact sums, and the same permissions as the spend routes."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from tests.fixtures.reports_support import (  # noqa: F401 - fixtures
    K1, K2, MASTER, PLAIN_KEY, READER_KEY, bearer, reports, seeded_database,
)

RANGE = {"start_date": "2024-04-30", "end_date": "2024-05-02"}


async def get(client, path: str, caller: str = MASTER, **params: str) -> object:
    response = await client.get(path, params=params, headers=bearer(caller))
    text = await response.text()
    assert response.status == 200, text
    return json.loads(text, parse_float=Decimal)


async def usage(client, **params: str) -> dict:
    return await get(client, "/global/spend/usage", **{**RANGE, **params})


def spend_of(rows: list[dict]) -> list[tuple[str, Decimal]]:
    return [(r["name"], r["spend"]) for r in rows]


async def test_unfiltered_figures_equal_the_spend_routes(reports):
    """Without filters the totals, days and top keys equal /global/spend/logs and /global/spend/keys."""
    body = await usage(reports)
    assert body["totals"] == {"spend": Decimal("0.4360898333333333333"), "api_requests": 6, "successful_requests": 5,
                              "failed_requests": 1, "prompt_tokens": 1210, "completion_tokens": 573,
                              "cache_read_input_tokens": 0}
    per_day = await get(reports, "/global/spend/logs", **RANGE)
    assert [(d["date"], d["spend"]) for d in body["daily"]] == [(d["date"], d["spend"]) for d in per_day]
    keys = await get(reports, "/global/spend/keys", **RANGE)
    assert [(k["name"], k["label"], k["spend"]) for k in body["top"]["keys"]] == \
        [(k["api_key"], k["key_alias"], k["total_spend"]) for k in keys]
    assert [(d["date"], d["api_requests"], d["failed_requests"]) for d in body["daily"]] == \
        [("2024-04-30", 4, 0), ("2024-05-01", 1, 0), ("2024-05-02", 1, 1)]


async def test_every_day_of_the_range_is_present(reports):
    """Days without spend are zeros, from the first day of the range to the last."""
    body = await usage(reports, start_date="2024-04-28", end_date="2024-05-03")
    assert [(d["date"], d["spend"]) for d in body["daily"]] == [
        ("2024-04-28", 0), ("2024-04-29", 0), ("2024-04-30", Decimal("0.0027565")), ("2024-05-01", Decimal("0.1")),
        ("2024-05-02", Decimal("0.3333333333333333333")), ("2024-05-03", 5)]


async def test_top_teams_include_the_unassigned_remainder(reports):
    """Spend of keys without a team shows as team '' (the api-key rollup minus the team rollup)."""
    body = await usage(reports)
    assert [(t["name"], t["label"], t["spend"], t["api_requests"]) for t in body["top"]["teams"]] == [
        ("team-b", "Research", Decimal("0.3335473333333333333"), 2), ("team-a", "Prod Team", Decimal("0.10246"), 3),
        ("", "", Decimal("0.0000825"), 1)]


async def test_a_team_filter_narrows_every_panel(reports):
    """team=team-a: totals, days, models and customers hold only that team's spend."""
    body = await usage(reports, team="team-a")
    assert (body["totals"]["spend"], body["totals"]["api_requests"]) == (Decimal("0.10246"), 3)
    assert [d["spend"] for d in body["daily"]] == [Decimal("0.00246"), Decimal("0.1"), 0]
    assert spend_of(body["top"]["models"]) == [("gpt-3.5-turbo", Decimal("0.1")), ("gpt-4", Decimal("0.00246"))]
    assert spend_of(body["top"]["customers"]) == [("acme", Decimal("0.1")), ("palantir", Decimal("0.00246"))]
    assert spend_of(body["top"]["tags"]) == [("env:prod", Decimal("0.10123")), ("jobA", Decimal("0.00246"))]


async def test_filters_on_two_entities_read_the_logs(reports):
    """team=team-a and customer=palantir together: only r1 and r2."""
    body = await usage(reports, team="team-a", customer="palantir", stack_by="tag")
    assert (body["totals"]["spend"], body["totals"]["api_requests"]) == (Decimal("0.00246"), 2)
    assert spend_of(body["top"]["tags"]) == [("jobA", Decimal("0.00246")), ("env:prod", Decimal("0.00123"))]
    assert [(s["name"], s["daily"]) for s in body["stacks"]] == [
        ("jobA", [Decimal("0.00246"), 0, 0]), ("env:prod", [Decimal("0.00123"), 0, 0])]


async def test_a_tag_filter_and_stacking_by_team(reports):
    """tag=jobA stacked by team: r1, r2 under team-a and r3 under team-b."""
    body = await usage(reports, tag="jobA", stack_by="team")
    assert (body["totals"]["spend"], body["totals"]["api_requests"]) == (Decimal("0.002674"), 3)
    assert [(s["name"], s["label"], s["spend"]) for s in body["stacks"]] == [
        ("team-a", "Prod Team", Decimal("0.00246")), ("team-b", "Research", Decimal("0.000214"))]


async def test_key_filter_by_alias_hash_prefix_or_raw_key(reports):
    """key=one, key=<first 8 of its hash> and key=sk-key-one all mean K1."""
    for key in ("one", K1[:8], PLAIN_KEY):
        body = await usage(reports, key=key)
        assert (key, body["totals"]["spend"], spend_of(body["top"]["keys"])) == \
            (key, Decimal("0.10246"), [(K1, Decimal("0.10246"))])
    assert (await usage(reports, key="nobody"))["totals"]["api_requests"] == 0


async def test_stacking_by_customer_keeps_spend_without_one(reports):
    """Stacked by customer, the day sums equal the daily totals; spend without a customer is ''."""
    body = await usage(reports, stack_by="customer")
    assert [(s["name"], s["daily"]) for s in body["stacks"]] == [
        ("", [0, 0, Decimal("0.3333333333333333333")]), ("acme", [Decimal("0.0000825"), Decimal("0.1"), 0]),
        ("palantir", [Decimal("0.002674"), 0, 0])]


async def test_model_filter(reports):
    """model=gpt-4: r1, r2 and r6 in the range."""
    body = await usage(reports, model="gpt-4")
    assert (body["totals"]["spend"], body["totals"]["failed_requests"]) == (Decimal("0.3357933333333333333"), 1)


@pytest.mark.parametrize("params, status", [({"stack_by": "bogus"}, 400), ({"start_date": "2024-13-01"}, 400),
                                            ({"team": "x" * 300}, 400)])
async def test_bad_usage_parameters_are_400(reports, params, status):
    """An unknown stack_by, an impossible date or an overlong filter is a 400 naming the parameter."""
    response = await reports.get("/global/spend/usage", params={**RANGE, **params}, headers=bearer(MASTER))
    assert response.status == status
    assert (await response.json())["error"]["param"] in params


@pytest.mark.parametrize("path", ["/global/spend/usage", "/global/spend/budgets"])
async def test_usage_routes_need_spend_permissions(reports, path):
    """No key: 401; a plain key: 403; a get_spend_routes key: 200."""
    assert (await reports.get(path, params=RANGE)).status == 401
    assert (await reports.get(path, params=RANGE, headers=bearer(PLAIN_KEY))).status == 403
    assert (await reports.get(path, params=RANGE, headers=bearer(READER_KEY))).status == 200


# --- /spend/logs/ui -----------------------------------------------------------------------------------

LOGS_RANGE = {"start_date": "2024-04-30", "end_date": "2024-05-03"}


async def logs_ui(client, caller: str = MASTER, **params: str) -> dict:
    return await get(client, "/spend/logs/ui", caller, **{**LOGS_RANGE, **params})


async def test_logs_are_paged_newest_first(reports):
    """LiteLLM's shape; page 4 of size 2 holds the oldest log, and the pages cover every row once."""
    seen = []
    for page in (1, 2, 3, 4):
        body = await logs_ui(reports, page=str(page), page_size="2")
        assert (body["total"], body["page"], body["page_size"], body["total_pages"]) == (7, page, 2, 4)
        seen += [r["request_id"] for r in body["data"]]
    assert seen == ["r7", "r6", "r5", "r4", "r3", "r2", "r1"]


async def test_litellm_datetimes_include_the_end_second(reports):
    """end_date "2024-05-02 23:59:59" stops before r6 (23:59:59.999), as LiteLLM's lte does."""
    body = await get(reports, "/spend/logs/ui", start_date="2024-04-30 00:00:00", end_date="2024-05-02 23:59:59")
    assert [r["request_id"] for r in body["data"]] == ["r5", "r4", "r3", "r2", "r1"]


async def test_logs_sorted_and_filtered(reports):
    """sort_by=spend asc; status_filter=failure; model; tag; key alias; min_spend."""
    assert [r["request_id"] for r in (await logs_ui(reports, sort_by="spend", sort_order="asc"))["data"]] == \
        ["r4", "r3", "r1", "r2", "r5", "r6", "r7"]
    assert [r["request_id"] for r in (await logs_ui(reports, status_filter="failure"))["data"]] == ["r6"]
    assert [r["request_id"] for r in (await logs_ui(reports, model="gpt-3.5-turbo"))["data"]] == ["r5", "r4"]
    assert [r["request_id"] for r in (await logs_ui(reports, tag="env:prod"))["data"]] == ["r5", "r1"]
    assert [r["request_id"] for r in (await logs_ui(reports, key="two"))["data"]] == ["r6", "r3"]
    assert [r["request_id"] for r in (await logs_ui(reports, min_spend="0.1"))["data"]] == ["r7", "r6", "r5"]


async def test_a_plain_key_pages_only_its_own_logs(reports):
    """A key without get_spend_routes sees its own rows, whatever api_key it asks for."""
    body = await logs_ui(reports, PLAIN_KEY)
    assert (body["total"], [r["request_id"] for r in body["data"]]) == (4, ["r7", "r5", "r2", "r1"])
    assert (await logs_ui(reports, PLAIN_KEY, api_key=K2))["total"] == 0


@pytest.mark.parametrize("params", [{"page_size": "0"}, {"page": "x"}, {"sort_by": "api_key"}, {"status_filter": "ok"},
                                    {"min_spend": "NaN"}, {"start_date": ""}, {"end_date": "2024-05-03 25:00:00"}])
async def test_bad_logs_parameters_are_400(reports, params):
    """Each malformed parameter is a 400 that names it."""
    response = await reports.get("/spend/logs/ui", params={**LOGS_RANGE, **params}, headers=bearer(MASTER))
    assert response.status == 400
    assert (await response.json())["error"]["param"] in params


# --- /global/spend/budgets -------------------------------------------------------------------------------


async def test_budgets_closest_first(reports, seeded_database):
    """Every holder with a max_budget, most used first, with its window and soft-budget crossing."""
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_VerificationToken" SET spend = 0.10246, max_budget = 1, soft_budget = 0.1,
                        budget_duration = '30d', budget_reset_at = '2024-05-30 00:00:00+00' WHERE key_alias = 'one'""")
        conn.execute("""UPDATE "LiteLLM_TeamTable" SET spend = 0.3335473333333333333, max_budget = 0.5
                        WHERE team_id = 'team-b'""")
        conn.execute("""INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, max_budget) VALUES ('acme', 0.1000825, 10)""")
    rows = await get(reports, "/global/spend/budgets")
    assert [(r["kind"], r["name"], r["spend"], r["max_budget"], r["used"], r["soft_budget_crossed"]) for r in rows] == [
        ("team", "Research", Decimal("0.3335473333333333333"), Decimal("0.5"), Decimal("0.6671"), False),
        ("key", "one", Decimal("0.10246"), 1, Decimal("0.1025"), True),
        ("customer", "acme", Decimal("0.1000825"), 10, Decimal("0.0100"), False)]
    assert (rows[1]["budget_duration"], rows[1]["budget_reset_at"]) == ("30d", "2024-05-30T00:00:00+00:00")
    assert [r["name"] for r in await get(reports, "/global/spend/budgets", team="team-a")] == ["one"]


@pytest.mark.parametrize("params", [{}, {"team_id": "team-a"}, {"end_user": "palantir"}, {"status_filter": "failure"},
                                    {"model": "gpt-4", "status_filter": "success"}, {"key": "one"},
                                    {"team_id": "team-b", "end_user": "palantir"}])
async def test_whole_day_totals_from_the_rollups_equal_the_logs_count(reports, params):
    """Over whole days the total comes from the rollups; it equals counting the logs themselves."""
    by_rollups = (await logs_ui(reports, **params))["total"]
    by_logs = (await logs_ui(reports, start_date="2024-04-30 00:00:00", end_date="2024-05-03 23:59:59", **params))["total"]
    assert by_rollups == by_logs
    assert by_logs == {(): 7, ("team_id",): 4, ("end_user",): 4, ("status_filter",): 1, ("model", "status_filter"): 3,
                       ("key",): 4, ("end_user", "team_id"): 1}[tuple(sorted(params))]


async def test_whole_day_totals_leave_out_days_behind_the_retention_horizon(reports, seeded_database):
    """After 2024-04-30 is dropped (TALLY_SPEND_LOG_RETENTION_DAYS), the rollup count covers only kept days."""
    with psycopg.connect(seeded_database, autocommit=True) as conn:
        conn.execute("""DELETE FROM "LiteLLM_SpendLogs" WHERE "startTime" < '2024-05-01'""")  # what the drop removes
        conn.execute("INSERT INTO tally_spend_log_retention (horizon) VALUES ('2024-05-01')")
        try:
            body = await logs_ui(reports)
            assert (body["total"], [r["request_id"] for r in body["data"]]) == (3, ["r7", "r6", "r5"])
            assert (await logs_ui(reports, start_date="2024-04-29", end_date="2024-04-30"))["total"] == 0
        finally:
            conn.execute("DELETE FROM tally_spend_log_retention")
