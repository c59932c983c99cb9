"""The periodic spend report: its team and tag figures equal /global/spend/report and
/global/spend/tags for the same period, and each period is recorded once."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
from aiohttp.test_utils import TestClient

from services.reports.alerts.spend_report import SpendReporter, last_complete_period
from services.reports.alerts.store import AlertStore
from services.reports.store import ReportsStore
from shared import db
from tests.fixtures.reports_support import MASTER, bearer, reports, seeded_database  # noqa: F401 - fixtures

NOW = datetime(2024, 5, 17, 8, 30, tzinfo=timezone.utc)


async def test_report_figures_equal_global_spend_report(reports: TestClient, seeded_database: str):  # noqa: F811
    """30-day report of the seeded logs, to both channels: team and tag sums are exactly the routes' figures, once."""
    period = last_complete_period(NOW.date(), 30)
    assert (period.start_text, period.end_text) == ("2024-04-17", "2024-05-16")
    pool = db.pool(seeded_database, min_size=1, max_size=2)
    await pool.open()
    woken = []
    try:
        reporter = SpendReporter(AlertStore(pool), ReportsStore(pool), 30, ("slack", "webhook"), lambda: woken.append(1))
        assert await reporter.check(NOW) is True
        assert await reporter.check(NOW) is False
    finally:
        await pool.close()
    with psycopg.connect(seeded_database) as conn:
        rows = conn.execute("SELECT alert_key, channel, status, body FROM tally_alerts.deliveries ORDER BY channel").fetchall()
    assert [(key, channel, status) for key, channel, status, _body in rows] == [
        ("spend_report:2024-04-17:2024-05-16", "slack", "pending"), ("spend_report:2024-04-17:2024-05-16", "webhook", "pending")]
    assert woken == [1]
    text = json.loads(rows[0][3])["text"]
    webhook = json.loads(rows[1][3], parse_float=Decimal, parse_int=Decimal)

    params = {"start_date": period.start_text, "end_date": period.end_text}
    report = await (await reports.get("/global/spend/report", params=params, headers=bearer(MASTER))).text()
    team_spend: dict[str, Decimal] = {}
    for day in json.loads(report, parse_float=Decimal, parse_int=Decimal):
        for team in day["teams"]:
            team_spend[team["team_name"]] = team_spend.get(team["team_name"], Decimal(0)) + team["total_spend"]
    tags = await (await reports.get("/global/spend/tags", params=params, headers=bearer(MASTER))).text()
    tag_spend = {t["name"]: t["spend"] for t in json.loads(tags, parse_float=Decimal, parse_int=Decimal)["spend_per_tag"]}

    assert team_spend == {"Prod Team": Decimal("5.10246"), "Research": Decimal("0.3335473333333333333"),
                          "Unassigned Team": Decimal("0.0000825")}
    assert text == (
        "Level: `Low`\nTimestamp: `08:30:00`\n\nMessage: *💸 Spend Report for `04-17-2024 - 05-16-2024` (30 days)*\n\n"
        "*Team Spend Report:*\n"
        f"Team: `Prod Team` | Spend: `${team_spend['Prod Team']}`\n"
        f"Team: `Research` | Spend: `${team_spend['Research']}`\n"
        f"Team: `Unassigned Team` | Spend: `${team_spend['Unassigned Team']}`\n\n"
        "*Tag Spend Report:*\n"
        f"Tag: `jobA` | Spend: `${tag_spend['jobA']}`\n"
        f"Tag: `env:prod` | Spend: `${tag_spend['env:prod']}`\n"
    )
    assert webhook == {"event": "spend_report", "event_group": "proxy", "event_message": text,
                       "start_date": "2024-04-17", "end_date": "2024-05-16",
                       "teams": [{"team_name": name, "spend": spend} for name, spend in team_spend.items()],
                       "tags": [{"tag": "jobA", "spend": tag_spend["jobA"]}, {"tag": "env:prod", "spend": tag_spend["env:prod"]}]}


async def test_budget_panel_shows_the_last_alert(reports: TestClient, seeded_database: str):  # noqa: F811
    """/global/spend/budgets (the Usage page's budget panel) gives each holder its latest alert."""
    with psycopg.connect(seeded_database) as conn:
        conn.execute("""UPDATE "LiteLLM_VerificationToken" SET max_budget = 1 WHERE key_alias IN ('one', 'two')""")
        token = conn.execute("""SELECT token FROM "LiteLLM_VerificationToken" WHERE key_alias = 'one'""").fetchone()[0]
        for key, event, at in [("a", "threshold_crossed", "2024-05-01 09:00:00+00"), ("b", "budget_crossed", "2024-05-03 00:00:01+00")]:
            conn.execute("INSERT INTO tally_alerts.deliveries (alert_key, channel, entity_type, entity_id, event, body, decided_at)"
                         " VALUES (%s, 'webhook', 'key', %s, %s, '{}', %s)", (key, token, event, at))
    rows = await (await reports.get("/global/spend/budgets", headers=bearer(MASTER))).json()
    assert {r["name"]: r["last_alert"] for r in rows} == {
        "one": {"event": "budget_crossed", "at": "2024-05-03T00:00:01+00:00"}, "two": None}
