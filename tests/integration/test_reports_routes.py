"""Every spend route's shape and exact sums, against the hand-checkable data set in
tests.fixtures.reports_support (real Postgres)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from tests.fixtures.reports_support import (  # noqa: F401 - fixtures
    K1, K2, K3, KEY_TWO, MASTER, PLAIN_KEY, bearer, reports, seeded_database,
)

D = Decimal
RANGE = {"start_date": "2024-04-30", "end_date": "2024-05-02"}


async def get(client: Any, path: str, key: str = MASTER, **params: str) -> Any:
    response = await client.get(path, params=params, headers=bearer(key))
    text = await response.text()
    assert response.status == 200, text
    return json.loads(text, parse_float=Decimal)


async def test_report_by_team_matches_the_seed_shape_and_sums(reports):
    """group_by=team: days, then teams by alias ("Unassigned Team" without one), then key+model rows."""
    body = await get(reports, "/global/spend/report", group_by="team", **RANGE)
    assert body == [
        {"group_by_day": "2024-04-30T00:00:00+00:00", "teams": [
            {"team_name": "Prod Team", "total_spend": D("0.00246"),
             "metadata": [{"model": "gpt-4", "spend": D("0.00246"), "total_tokens": 56, "api_key": K1}]},
            {"team_name": "Research", "total_spend": D("0.000214"),
             "metadata": [{"model": "chatgpt-v-2", "spend": D("0.000214"), "total_tokens": 122, "api_key": K2}]},
            {"team_name": "Unassigned Team", "total_spend": D("0.0000825"),
             "metadata": [{"model": "gpt-3.5-turbo", "spend": D("0.0000825"), "total_tokens": 85, "api_key": K3}]},
        ]},
        {"group_by_day": "2024-05-01T00:00:00+00:00", "teams": [
            {"team_name": "Prod Team", "total_spend": D("0.1"),
             "metadata": [{"model": "gpt-3.5-turbo", "spend": D("0.1"), "total_tokens": 1500, "api_key": K1}]},
        ]},
        {"group_by_day": "2024-05-02T00:00:00+00:00", "teams": [
            {"team_name": "Research", "total_spend": D("0.3333333333333333333"),
             "metadata": [{"model": "gpt-4", "spend": D("0.3333333333333333333"), "total_tokens": 20, "api_key": K2}]},
        ]},
    ]


async def test_report_keeps_every_digit_of_the_numeric_sum(reports):
    """Money leaves as the NUMERIC's own digits, not a float's 17."""
    response = await reports.get("/global/spend/report", params={"group_by": "team", **RANGE}, headers=bearer(MASTER))
    assert re.search(r'"total_spend"\s*:\s*0\.3333333333333333333[,}\s]', await response.text())


async def test_report_default_group_by_is_team(reports):
    """No group_by: grouped by team, as LiteLLM does."""
    assert await get(reports, "/global/spend/report", **RANGE) == await get(reports, "/global/spend/report", group_by="team", **RANGE)


async def test_report_by_customer(reports):
    """group_by=customer: the request's `user` (end user) per day with key+model rows."""
    body = await get(reports, "/global/spend/report", group_by="customer", **RANGE)
    assert body[0] == {"group_by_day": "2024-04-30T00:00:00+00:00", "customers": [
        {"customer": "palantir", "total_spend": D("0.002674"), "metadata": [
            {"model": "gpt-4", "spend": D("0.00246"), "total_tokens": 56, "api_key": K1},
            {"model": "chatgpt-v-2", "spend": D("0.000214"), "total_tokens": 122, "api_key": K2},
        ]},
        {"customer": "acme", "total_spend": D("0.0000825"), "metadata": [
            {"model": "gpt-3.5-turbo", "spend": D("0.0000825"), "total_tokens": 85, "api_key": K3},
        ]},
    ]}
    assert [c["customer"] for c in body[2]["customers"]] == [""]


async def test_report_for_one_team(reports):
    """team_id= narrows the team report to that team."""
    body = await get(reports, "/global/spend/report", group_by="team", team_id="team-b", **RANGE)
    assert [(d["group_by_day"][:10], [t["team_name"] for t in d["teams"]]) for d in body] == [
        ("2024-04-30", ["Research"]), ("2024-05-02", ["Research"])]


async def test_report_by_api_key_has_model_details(reports):
    """group_by=api_key: per key, its total and per-model details, highest spend first."""
    body = await get(reports, "/global/spend/report", group_by="api_key", **RANGE)
    assert body == [
        {"api_key": K2, "total_cost": D("0.3335473333333333333"), "total_input_tokens": 110, "total_output_tokens": 32,
         "model_details": [
             {"model": "gpt-4", "total_cost": D("0.3333333333333333333"), "total_input_tokens": 10, "total_output_tokens": 10},
             {"model": "chatgpt-v-2", "total_cost": D("0.000214"), "total_input_tokens": 100, "total_output_tokens": 22}]},
        {"api_key": K1, "total_cost": D("0.10246"), "total_input_tokens": 1040, "total_output_tokens": 516,
         "model_details": [
             {"model": "gpt-3.5-turbo", "total_cost": D("0.1"), "total_input_tokens": 1000, "total_output_tokens": 500},
             {"model": "gpt-4", "total_cost": D("0.00246"), "total_input_tokens": 40, "total_output_tokens": 16}]},
        {"api_key": K3, "total_cost": D("0.0000825"), "total_input_tokens": 60, "total_output_tokens": 25,
         "model_details": [
             {"model": "gpt-3.5-turbo", "total_cost": D("0.0000825"), "total_input_tokens": 60, "total_output_tokens": 25}]},
    ]


async def test_report_for_a_raw_api_key(reports):
    """api_key=sk-... is hashed and answers that key alone."""
    body = await get(reports, "/global/spend/report", api_key=KEY_TWO, **RANGE)
    assert [(k["api_key"], k["total_cost"]) for k in body] == [(K2, D("0.3335473333333333333"))]


async def test_report_for_an_internal_user(reports):
    """internal_user_id= answers every key of that user."""
    body = await get(reports, "/global/spend/report", internal_user_id="ishaan", **RANGE)
    assert [(k["api_key"], k["total_cost"]) for k in body] == [(K1, D("0.10246")), (K3, D("0.0000825"))]


async def test_report_for_team_and_customer(reports):
    """team_id= with customer_id=: that team's spend for that customer, per day."""
    body = await get(reports, "/global/spend/report", team_id="team-a", customer_id="palantir", **RANGE)
    assert body == [{"group_by_day": "2024-04-30T00:00:00+00:00", "teams_customers": [
        {"team_name": "Prod Team", "customer": "palantir", "total_spend": D("0.00246"),
         "metadata": [{"model": "gpt-4", "spend": D("0.00246"), "total_tokens": 56, "api_key": K1}]}]}]


async def test_report_end_date_is_inclusive_to_the_last_instant(reports):
    """A call at 23:59:59.999 on the end date counts; one at 00:00 the next day does not."""
    body = await get(reports, "/global/spend/report", group_by="api_key", start_date="2024-05-02", end_date="2024-05-02")
    assert [(k["api_key"], k["total_cost"]) for k in body] == [(K2, D("0.3333333333333333333"))]


async def test_report_with_no_spend_is_an_empty_list(reports):
    """A range without spend answers []."""
    assert await get(reports, "/global/spend/report", start_date="2023-01-01", end_date="2023-01-31") == []


async def test_global_spend_logs_per_day(reports):
    """/global/spend/logs: spend per day over every key."""
    assert await get(reports, "/global/spend/logs", **RANGE) == [
        {"date": "2024-04-30", "spend": D("0.0027565")},
        {"date": "2024-05-01", "spend": D("0.1")},
        {"date": "2024-05-02", "spend": D("0.3333333333333333333")},
    ]


async def test_global_spend_logs_for_one_key(reports):
    """api_key= narrows the daily spend to that key."""
    assert await get(reports, "/global/spend/logs", api_key=K1, **RANGE) == [
        {"date": "2024-04-30", "spend": D("0.00246"), "api_key": K1},
        {"date": "2024-05-01", "spend": D("0.1"), "api_key": K1},
    ]


async def test_global_spend_total(reports):
    """/global/spend: the total and LiteLLM's max_budget field."""
    assert await get(reports, "/global/spend", start_date="2024-04-01", end_date="2024-05-31") == {
        "spend": D("5.4360898333333333333"), "max_budget": None}


async def test_global_spend_keys_top_n(reports):
    """/global/spend/keys?limit=2: the two keys that spent most, with alias and name."""
    assert await get(reports, "/global/spend/keys", limit="2", **RANGE) == [
        {"api_key": K2, "total_spend": D("0.3335473333333333333"), "key_alias": "two", "key_name": "sk-...-two"},
        {"api_key": K1, "total_spend": D("0.10246"), "key_alias": "one", "key_name": "sk-...-one"},
    ]


async def test_global_spend_models(reports):
    """/global/spend/models: models by spend with their tokens."""
    assert await get(reports, "/global/spend/models", **RANGE) == [
        {"model": "gpt-4", "total_spend": D("0.3357933333333333333"), "total_tokens": 76},
        {"model": "gpt-3.5-turbo", "total_spend": D("0.1000825"), "total_tokens": 1585},
        {"model": "chatgpt-v-2", "total_spend": D("0.000214"), "total_tokens": 122},
    ]


async def test_global_spend_provider(reports):
    """/global/spend/provider: spend per provider."""
    assert await get(reports, "/global/spend/provider", **RANGE) == [
        {"provider": "openai", "spend": D("0.4358758333333333333")},
        {"provider": "azure", "spend": D("0.000214")},
    ]


async def test_global_spend_teams(reports):
    """/global/spend/teams: per day per team alias, the aliases, and totals per team."""
    assert await get(reports, "/global/spend/teams", **RANGE) == {
        "daily_spend": [
            {"date": "2024-04-30", "Prod Team": D("0.00246"), "Research": D("0.000214"), "Unassigned": D("0.0000825")},
            {"date": "2024-05-01", "Prod Team": D("0.1")},
            {"date": "2024-05-02", "Research": D("0.3333333333333333333")},
        ],
        "teams": ["Prod Team", "Research", "Unassigned"],
        "total_spend_per_team": [
            {"team_id": "Research", "total_spend": D("0.3335473333333333333")},
            {"team_id": "Prod Team", "total_spend": D("0.10246")},
            {"team_id": "Unassigned", "total_spend": D("0.0000825")},
        ],
    }


async def test_global_spend_tags(reports):
    """/global/spend/tags: spend and request count per tag."""
    assert await get(reports, "/global/spend/tags", **RANGE) == {"spend_per_tag": [
        {"name": "env:prod", "spend": D("0.10123"), "log_count": 2},
        {"name": "jobA", "spend": D("0.002674"), "log_count": 3},
    ]}


async def test_global_spend_tags_filtered(reports):
    """tags=jobA answers that tag only."""
    body = await get(reports, "/global/spend/tags", tags="jobA", **RANGE)
    assert body == {"spend_per_tag": [{"name": "jobA", "spend": D("0.002674"), "log_count": 3}]}


async def test_spend_tags(reports):
    """/spend/tags: every tag over all time, LiteLLM's column names."""
    assert await get(reports, "/spend/tags") == [
        {"individual_request_tag": "jobA", "log_count": 4, "total_spend": D("5.002674")},
        {"individual_request_tag": "env:prod", "log_count": 2, "total_spend": D("0.10123")},
    ]


async def test_all_tag_names(reports):
    """/global/spend/all_tag_names lists every tag once."""
    assert await get(reports, "/global/spend/all_tag_names") == {"tag_names": ["env:prod", "jobA"]}


async def test_global_spend_end_users(reports):
    """POST /global/spend/end_users: customers by spend with request counts."""
    response = await reports.post("/global/spend/end_users", json={"startTime": "2024-04-30", "endTime": "2024-05-02T10:00:00Z"},
                                  headers=bearer(MASTER))
    assert json.loads(await response.text(), parse_float=Decimal) == [
        {"end_user": "", "total_count": 1, "total_spend": D("0.3333333333333333333")},
        {"end_user": "acme", "total_count": 2, "total_spend": D("0.1000825")},
        {"end_user": "palantir", "total_count": 3, "total_spend": D("0.002674")},
    ]


async def test_global_spend_end_users_for_one_key(reports):
    """api_key in the body narrows the customers to that key's."""
    response = await reports.post("/global/spend/end_users", json={"startTime": "2024-04-30", "endTime": "2024-05-02",
                                                                    "api_key": PLAIN_KEY}, headers=bearer(MASTER))
    assert json.loads(await response.text(), parse_float=Decimal) == [
        {"end_user": "acme", "total_count": 1, "total_spend": D("0.1")},
        {"end_user": "palantir", "total_count": 2, "total_spend": D("0.00246")},
    ]


async def test_spend_logs_by_request_id(reports):
    """/spend/logs?request_id= returns that one row with its exact spend and tags."""
    body = await get(reports, "/spend/logs", request_id="r6")
    assert len(body) == 1
    assert (body[0]["request_id"], body[0]["spend"], body[0]["api_key"], body[0]["startTime"], body[0]["status"]) == (
        "r6", D("0.3333333333333333333"), K2, "2024-05-02T23:59:59.999000+00:00", "failure")


async def test_spend_logs_summarised_by_day(reports):
    """summarize (the default) with dates: spend per day, per key, per user, per model."""
    body = await get(reports, "/spend/logs", start_date="2024-04-30", end_date="2024-05-01")
    assert body == [
        {"startTime": "2024-04-30", "spend": D("0.0027565"), K1: D("0.00246"), K2: D("0.000214"), K3: D("0.0000825"),
         "users": {"ishaan": D("0.0025425"), "krrish": D("0.000214")},
         "models": {"gpt-4": D("0.00246"), "chatgpt-v-2": D("0.000214"), "gpt-3.5-turbo": D("0.0000825")}},
        {"startTime": "2024-05-01", "spend": D("0.1"), K1: D("0.1"), "users": {"ishaan": D("0.1")},
         "models": {"gpt-3.5-turbo": D("0.1")}},
    ]


async def test_spend_logs_raw_rows(reports):
    """summarize=false: the individual rows in the range, newest first."""
    body = await get(reports, "/spend/logs", summarize="false", **RANGE)
    assert [(r["request_id"], r["spend"], r["request_tags"]) for r in body] == [
        ("r6", D("0.3333333333333333333"), []), ("r5", D("0.1"), ["env:prod"]), ("r4", D("0.0000825"), []),
        ("r3", D("0.000214"), ["jobA"]), ("r2", D("0.00123"), ["jobA"]), ("r1", D("0.00123"), ["jobA", "env:prod"]),
    ]


async def test_spend_logs_for_a_user(reports):
    """user_id= without dates: that user's rows."""
    body = await get(reports, "/spend/logs", user_id="krrish")
    assert [r["request_id"] for r in body] == ["r6", "r3"]


async def test_spend_logs_limit(reports):
    """limit= caps the raw rows, newest first."""
    body = await get(reports, "/spend/logs", summarize="false", limit="2", **RANGE)
    assert [r["request_id"] for r in body] == ["r6", "r5"]


async def test_spend_keys(reports):
    """/spend/keys: every key row, highest spend first."""
    body = await get(reports, "/spend/keys")
    assert len(body) == 6 and {"token", "key_alias", "spend", "permissions"} <= set(body[0])


async def test_spend_users(reports):
    """/spend/users?user_id=: that user's row with its exact spend."""
    body = await get(reports, "/spend/users", user_id="krrish")
    assert [(u["user_id"], u["spend"]) for u in body] == [("krrish", D("0.3335473333333333333"))]


async def test_team_daily_activity(reports):
    """/team/daily/activity: per day metrics with breakdowns, and totals in metadata."""
    body = await get(reports, "/team/daily/activity", team_ids="team-a", **RANGE)
    assert body["metadata"] == {
        "total_spend": D("0.10246"), "total_prompt_tokens": 1040, "total_completion_tokens": 516, "total_tokens": 1556,
        "total_api_requests": 3, "total_successful_requests": 3, "total_failed_requests": 0,
        "total_cache_read_input_tokens": 0, "total_cache_creation_input_tokens": 0,
        "page": 1, "total_pages": 1, "has_more": False,
    }
    first = body["results"][0]
    assert first["date"] == "2024-04-30"
    assert first["metrics"]["spend"] == D("0.00246") and first["metrics"]["api_requests"] == 2
    assert first["breakdown"]["models"]["gpt-4"]["metrics"]["total_tokens"] == 56
    assert first["breakdown"]["providers"]["openai"]["metrics"]["spend"] == D("0.00246")
    assert first["breakdown"]["api_keys"][K1]["metadata"] == {"key_alias": "one", "team_id": "team-a"}
    assert first["breakdown"]["entities"]["team-a"]["metrics"]["spend"] == D("0.00246")


async def test_user_daily_activity_counts_failures(reports):
    """/user/daily/activity: failed requests are counted apart."""
    body = await get(reports, "/user/daily/activity", user_id="krrish", **RANGE)
    assert (body["metadata"]["total_spend"], body["metadata"]["total_successful_requests"],
            body["metadata"]["total_failed_requests"]) == (D("0.3335473333333333333"), 1, 1)


async def test_tag_daily_activity_pages(reports):
    """/tag/daily/activity pages through rows; totals cover every page."""
    body = await get(reports, "/tag/daily/activity", page_size="2", page="1", **RANGE)
    assert (body["metadata"]["total_pages"], body["metadata"]["has_more"], body["metadata"]["total_spend"]) == (
        2, True, D("0.103904"))
    second = await get(reports, "/tag/daily/activity", page_size="2", page="2", **RANGE)
    assert second["metadata"]["has_more"] is False


async def test_spend_calculate_with_completion_response(reports):
    """/spend/calculate prices a completion response with the shared catalog."""
    response = await reports.post("/spend/calculate", headers=bearer(PLAIN_KEY), json={
        "completion_response": {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100}}})
    text = await response.text()
    assert response.status == 200, text
    assert json.loads(text, parse_float=Decimal) == {"cost": D("0.000051")}


async def test_spend_calculate_uses_the_deployments_custom_prices(reports):
    """model= a config model_name with custom prices: priced at those prices (prompt estimated)."""
    response = await reports.post("/spend/calculate", headers=bearer(PLAIN_KEY), json={
        "model": "custom-priced", "messages": [{"role": "user", "content": "12345678"}]})
    text = await response.text()
    assert response.status == 200, text
    # 3 (reply priming) + 3 (message framing) + ceil(4/4) for "user" + ceil(8/4) for the content = 9 tokens
    assert json.loads(text, parse_float=Decimal) == {"cost": D("0.000009")}


async def test_report_sees_spend_that_lands_after_a_cached_answer(reports, seeded_database):
    """A day already answered is recomputed once new spend rolls into it (the cache never goes stale)."""
    import psycopg

    before = await get(reports, "/global/spend/report", group_by="api_key", **RANGE)
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_DailyApiKeySpend" SET spend = spend + 1, api_requests = api_requests + 1
                        WHERE date = '2024-05-01' AND api_key = %s""", (K1,))
    after = await get(reports, "/global/spend/report", group_by="api_key", **RANGE)
    assert [(k["api_key"], k["total_cost"]) for k in before] == [(K2, D("0.3335473333333333333")), (K1, D("0.10246")), (K3, D("0.0000825"))]
    assert [(k["api_key"], k["total_cost"]) for k in after] == [(K1, D("1.10246")), (K2, D("0.3335473333333333333")), (K3, D("0.0000825"))]


async def test_team_report_follows_a_team_rename(reports, seeded_database):
    """Renaming a team shows in the next team report, cached days included."""
    import psycopg

    await get(reports, "/global/spend/report", group_by="team", **RANGE)
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_TeamTable" SET team_alias = 'Production' WHERE team_id = 'team-a'""")
    body = await get(reports, "/global/spend/report", group_by="team", **RANGE)
    assert body[1]["teams"][0]["team_name"] == "Production"


async def test_customer_report_sees_spend_that_lands_after_a_cached_answer(reports, seeded_database):
    """A cached whole customer report is recomputed once new spend rolls into one of its days."""
    import psycopg

    await get(reports, "/global/spend/report", group_by="customer", **RANGE)
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_DailyEndUserSpend" SET spend = spend + 1, api_requests = api_requests + 1
                        WHERE date = '2024-05-01' AND end_user_id = 'acme'""")
        conn.execute("""UPDATE "LiteLLM_DailyApiKeySpend" SET spend = spend + 1, api_requests = api_requests + 1
                        WHERE date = '2024-05-01' AND api_key = %s""", (K1,))
    body = await get(reports, "/global/spend/report", group_by="customer", **RANGE)
    assert [(c["customer"], c["total_spend"]) for c in body[1]["customers"]] == [("acme", D("1.1"))]


async def test_global_spend_teams_sees_spend_that_lands_after_a_cached_answer(reports, seeded_database):
    """/global/spend/teams answered once, then a log lands: the next answer has it."""
    import psycopg

    await get(reports, "/global/spend/teams", **RANGE)
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_DailyTeamSpend" SET spend = spend + 1, api_requests = api_requests + 1
                        WHERE date = '2024-05-01' AND team_id = 'team-a'""")
        conn.execute("""UPDATE "LiteLLM_DailyApiKeySpend" SET spend = spend + 1, api_requests = api_requests + 1
                        WHERE date = '2024-05-01' AND api_key = %s""", (K1,))
    body = await get(reports, "/global/spend/teams", **RANGE)
    assert body["daily_spend"][1] == {"date": "2024-05-01", "Prod Team": D("1.1")}


async def test_global_spend_keys_follows_a_key_rename(reports, seeded_database):
    """Renaming a key shows in the next /global/spend/keys answer, though no spend changed."""
    import psycopg

    await get(reports, "/global/spend/keys", limit="2", **RANGE)
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_VerificationToken" SET key_alias = 'two-renamed' WHERE token = %s""", (K2,))
    body = await get(reports, "/global/spend/keys", limit="2", **RANGE)
    assert [(k["api_key"], k["key_alias"]) for k in body] == [(K2, "two-renamed"), (K1, "one")]


async def test_global_spend_teams_follows_a_team_rename(reports, seeded_database):
    """Renaming a team shows in the next /global/spend/teams answer, though no spend changed."""
    import psycopg

    await get(reports, "/global/spend/teams", **RANGE)
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_TeamTable" SET team_alias = 'Production' WHERE team_id = 'team-a'""")
    body = await get(reports, "/global/spend/teams", **RANGE)
    assert body["teams"] == ["Production", "Research", "Unassigned"]


async def test_spend_logs_raw_rows_page_past_the_limit(reports):
    """summarize=false with limit=4: no silent cap, the first page links to the second, which ends it."""
    first = await reports.get("/spend/logs", params={"summarize": "false", "limit": "4", **RANGE}, headers=bearer(MASTER))
    rows = [r["request_id"] for r in await first.json()]
    assert rows == ["r6", "r5", "r4", "r3"]
    link = first.headers["Link"]
    assert link.startswith("</spend/logs?") and link.endswith('>; rel="next"') and "page=2" in link and "limit=4" in link
    second = await reports.get(link[1:link.index(">")], headers=bearer(MASTER))
    assert [r["request_id"] for r in await second.json()] == ["r2", "r1"]
    assert "Link" not in second.headers


async def test_spend_log_metadata_has_litellms_key_and_usage_object(reports):
    """A log's metadata carries LiteLLM's user_api_key and usage_object, rebuilt from the row's columns."""
    row = (await get(reports, "/spend/logs", request_id="r1"))[0]
    usage = row["metadata"]["usage_object"]
    assert row["metadata"]["user_api_key"] == K1
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (20, 8, row["total_tokens"])
    assert (usage["prompt_tokens_details"]["cached_tokens"], usage["completion_tokens_details"]["reasoning_tokens"]) == (
        row["cache_read_input_tokens"], row["reasoning_tokens"])
