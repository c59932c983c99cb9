"""The big reports answered through caches keyed by the signatures of the days they cover (see
cache.py): a whole answer is returned as stored bytes while no day in its range has changed;
otherwise only the changed days are computed again (per-day JSON parts for the team and customer
views, a base of (key, model) sums for the api_key view).

The signatures are read before the data, in their own statement: what is computed is at least as
new as the signature it is stored under, so a stored answer is never older than its signature (at
worst newer, and then the next call sees a new signature and recomputes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from services.reports import shaping
from services.reports.cache import MISSING, AnswerCache, DayCache
from services.reports.jsonout import dumps
from services.reports.params import DateRange
from services.reports.store import ReportsStore

DaySignatures = dict[str, tuple[int, int]]


class Reports:
    def __init__(self, store: ReportsStore, cache: DayCache | None = None, answers: AnswerCache | None = None) -> None:
        self.store = store
        self.cache = cache if cache is not None else DayCache()
        self.answers = answers if answers is not None else AnswerCache()
        self.key_bases = DayCache(max_entries=64)  # group_by=api_key: (base days' signatures, (key, model) sums)

    async def answer(self, key: Hashable, days: DateRange, compute: Callable[[DaySignatures], Awaitable[bytes]], *,
                     team_names: bool = False, key_names: bool = False) -> bytes:
        """The stored body for `key` if no day of `days` (nor, when asked, a team or key name) has
        changed since it was computed; else `compute(signatures)`, stored for next time."""
        signatures = await self.store.day_signatures(days)
        signature: tuple[Any, ...] = (tuple(sorted(signatures.items())),)
        if team_names:
            signature += (await self.store.team_names_signature(),)
        if key_names:
            signature += (await self.store.key_names_signature(),)
        body = self.answers.get(key, signature)
        if body is None:
            body = await compute(signatures)
            self.answers.put(key, signature, body)
        return body

    async def _days(self, kind: tuple[Any, ...], signatures: DaySignatures, compute: Any) -> list[tuple[str, Any]]:
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
        """group_by=team or customer: per-day JSON parts built by Postgres, joined."""
        kind: tuple[Any, ...] = ("grouped", group_by, entity_id)

        async def compute(signatures: DaySignatures) -> bytes:
            day_kind = kind
            if group_by == "team":  # team names are part of each day's part
                day_kind = (*kind, await self.store.team_names_signature())

            async def compute_days(dates: list[str]) -> dict[str, str]:
                return await self.store.grouped_report_days(group_by, days, dates, entity_id)

            parts = await self._days(day_kind, signatures, compute_days)
            return shaping.join_days(fragment for _, fragment in parts if fragment is not None)

        return await self.answer((*kind, days), days, compute, team_names=group_by == "team")

    async def by_key(self, days: DateRange, *, api_key: str | None = None, user_id: str | None = None) -> bytes:
        """group_by=api_key (or one key, or one internal user). The (key, model) sums of every day
        but the latest are kept as a base while those days' signatures hold; a call then sums only
        the other days in Postgres and adds them (under live traffic: today's ~1,000 rows, not 30,000)."""
        kind = ("by_key", api_key, user_id, days)

        async def compute(signatures: DaySignatures) -> bytes:
            base = self.key_bases.get(kind, None)
            if base is MISSING or any(signatures.get(day) != signature for day, signature in base[0].items()):
                base_days = sorted(signatures)[:-1]
                rows = await self.store.key_model_sums(days, base_days, api_key=api_key, user_id=user_id) if base_days else []
                base = ({day: signatures[day] for day in base_days}, shaping.add_key_model_rows({}, rows))
                self.key_bases.put(kind, None, base)
            rest = sorted(day for day in signatures if day not in base[0])
            rows = await self.store.key_model_sums(days, rest, api_key=api_key, user_id=user_id) if rest else []
            return dumps(shaping.key_report(shaping.add_key_model_rows(base[1], rows)))

        return await self.answer(kind, days, compute)
