"""Periodic spend reports per team and per tag, LiteLLM's `spend_report_frequency` ("7d", "30d"):
once per period, to every configured channel (Slack gets LiteLLM's message; a webhook gets the
same figures as JSON, with LiteLLM's `event` / `event_group` / `event_message` fields). The figures are the reports' own queries (the team rows of
/global/spend/report and the tag rollup of /global/spend/tags) summed over the period, so they
equal what those routes answer for the same dates. Periods are whole UTC days counted from
1970-01-01; the last complete one is reported, once (its key is in the outbox like an alert's)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from services.reports.alerts.store import AlertStore, Decision
from services.reports.jsonout import dumps
from services.reports.params import DateRange
from services.reports.store import ReportsStore

EPOCH = date(1970, 1, 1)
_FREQUENCY = re.compile(r"^\s*(\d+)\s*d\s*$")


class BadFrequency(ValueError):
    pass


def frequency_days(text: str) -> int:
    """LiteLLM's spend_report_frequency: a number of days, "7d"."""
    match = _FREQUENCY.match(text)
    if not match or not 0 < int(match.group(1)) <= 366:
        raise BadFrequency(f"spend_report_frequency {text!r} must be a number of days from 1 to 366, such as \"7d\"")
    return int(match.group(1))


def last_complete_period(today: date, days: int) -> DateRange:
    index = (today - EPOCH).days // days
    start = EPOCH + timedelta(days=(index - 1) * days)
    return DateRange(start, start + timedelta(days=days - 1))


def team_totals(day_bodies: Iterable[str]) -> list[tuple[str, Decimal]]:
    """Per team name, the period's spend from /global/spend/report's day bodies, largest first."""
    totals: dict[str, Decimal] = {}
    for body in day_bodies:
        for team in json.loads(body, parse_float=Decimal, parse_int=Decimal)["teams"]:
            totals[team["team_name"]] = totals.get(team["team_name"], Decimal(0)) + team["total_spend"]
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def report_text(period: DateRange, teams: list[tuple[str, Decimal]], tags: list[tuple[str, Decimal]], at: datetime) -> str:
    """LiteLLM's spend report message in its Slack frame; amounts exact rather than rounded."""
    days = (period.end - period.start).days + 1
    lines = [f"*💸 Spend Report for `{period.start.strftime('%m-%d-%Y')} - {period.end.strftime('%m-%d-%Y')}` ({days} days)*", "",
             "*Team Spend Report:*", *(f"Team: `{name}` | Spend: `${spend}`" for name, spend in teams), "",
             "*Tag Spend Report:*", *(f"Tag: `{tag}` | Spend: `${spend}`" for tag, spend in tags)]
    return f"Level: `Low`\nTimestamp: `{at.strftime('%H:%M:%S')}`\n\nMessage: " + "\n".join(lines) + "\n"


def webhook_report(period: DateRange, teams: list[tuple[str, Decimal]], tags: list[tuple[str, Decimal]], text: str) -> dict[str, Any]:
    """The report for a generic webhook: the figures as data (money as exact JSON numbers)."""
    return {"event": "spend_report", "event_group": "proxy", "event_message": text,
            "start_date": period.start_text, "end_date": period.end_text,
            "teams": [{"team_name": name, "spend": spend} for name, spend in teams],
            "tags": [{"tag": tag, "spend": spend} for tag, spend in tags]}


async def report_decisions(store: ReportsStore, period: DateRange, at: datetime, channels: tuple[str, ...]) -> list[Decision]:
    """The period's report as one outbox row per channel, keyed by its dates."""
    bodies = await store.grouped_report_days("team", period, [d.isoformat() for d in period.days()], None)
    rows: list[dict[str, Any]] = await store.tag_spend(period, None)
    teams, tags = team_totals(bodies.values()), [(row["tag"], row["spend"]) for row in rows if row["tag"]]
    text = report_text(period, teams, tags, at)
    body = {"slack": lambda: dumps({"text": text}), "webhook": lambda: dumps(webhook_report(period, teams, tags, text))}
    return [Decision(report_key(period), channel, "report", f"{period.start_text}:{period.end_text}", "spend_report", body[channel]())
            for channel in channels]


def report_key(period: DateRange) -> str:
    return f"spend_report:{period.start_text}:{period.end_text}"


class SpendReporter:
    """Checks now and then whether the last complete period has its report, and records it if not
    (several instances: the outbox's unique key keeps one)."""

    def __init__(self, alerts: AlertStore, reports: ReportsStore, days: int, channels: tuple[str, ...],
                 on_decided: Callable[[], None]) -> None:
        self.alerts, self.reports, self.days, self.channels, self.on_decided = alerts, reports, days, channels, on_decided

    async def check(self, now: datetime) -> bool:
        period = last_complete_period(now.date(), self.days)
        if await self.alerts.decided(report_key(period)):
            return False
        recorded = await self.alerts.record(await report_decisions(self.reports, period, now, self.channels), {}) > 0
        if recorded:
            self.on_decided()
        return recorded

    async def run(self, interval_s: float) -> None:
        while True:
            await self.check(datetime.now(timezone.utc))
            await asyncio.sleep(interval_s)  # a schedule, not a wait for a condition
