"""/global/spend/report answered day by day: ask the store which days have spend and their
signatures, reuse the days computed before, compute the rest in one query, assemble."""

from __future__ import annotations

from typing import Any

from services.reports import shaping
from services.reports.cache import MISSING, DayCache
from services.reports.params import DateRange
from services.reports.store import ReportsStore


class Reports:
    def __init__(self, store: ReportsStore, cache: DayCache | None = None) -> None:
        self.store = store
        self.cache = cache if cache is not None else DayCache()

    async def _days(self, kind: tuple[Any, ...], days: DateRange, compute: Any) -> list[tuple[str, Any]]:
        signatures = await self.store.day_signatures(days)
        found: dict[str, Any] = {}
        stale: list[str] = []
        for day, signature in signatures.items():
            value = self.cache.get((*kind, day), signature)
            if value is MISSING:
                stale.append(day)
            else:
                found[day] = value
        if stale:
            fresh = await compute(sorted(stale))
            for day in stale:
                found[day] = fresh.get(day)
                self.cache.put((*kind, day), signatures[day], found[day])
        return sorted(found.items())

    async def grouped(self, group_by: str, days: DateRange, entity_id: str | None) -> bytes:
        kind: tuple[Any, ...] = ("grouped", group_by, entity_id)
        if group_by == "team":  # team names are part of the answer
            kind = (*kind, await self.store.team_names_signature())

        async def compute(dates: list[str]) -> dict[str, str]:
            return await self.store.grouped_report_days(group_by, days, dates, entity_id)

        return shaping.join_days(fragment for _, fragment in await self._days(kind, days, compute) if fragment is not None)

    async def by_key(self, days: DateRange, *, api_key: str | None = None, user_id: str | None = None) -> list[dict[str, Any]]:
        async def compute(dates: list[str]) -> dict[str, list[dict[str, Any]]]:
            per_day: dict[str, list[dict[str, Any]]] = {d: [] for d in dates}
            for row in await self.store.key_report_days(days, dates, api_key=api_key, user_id=user_id):
                per_day[row["date"]].append(row)
            return per_day

        rows = await self._days(("by_key", api_key, user_id), days, compute)
        return shaping.key_report(row for _, day_rows in rows for row in day_rows or [])
