"""The reports' store: every SQL statement, parameterised, identifiers only from the fixed rollup
tables (queries/base.py). Grouped reports come from the daily rollups; only per-request detail
reads the spend logs. Sums are NUMERIC in Postgres and arrive as Decimal; the big report bodies
are built as JSON by Postgres itself (numeric → JSON text is exact) so tens of thousands of rows
never become Python objects.

The queries live in groups by the routes they serve (queries/report.py, global_spend.py,
spend.py, activity.py); `ReportsStore` is all of them on one pool."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.reports.queries.activity import ActivityQueries
from services.reports.queries.global_spend import GlobalSpendQueries
from services.reports.queries.report import ReportQueries
from services.reports.queries.spend import SpendQueries
from services.reports.queries.usage import UsageQueries


class ReportsStore(ReportQueries, GlobalSpendQueries, SpendQueries, ActivityQueries, UsageQueries):
    async def key(self, token_hash: str) -> dict[str, Any] | None:
        rows = await self._rows(
            'SELECT token, key_alias, user_id, team_id, permissions, expires, blocked FROM "LiteLLM_VerificationToken" WHERE token = %s',
            (token_hash,),
        )
        return rows[0] if rows else None

    async def retention_horizon(self) -> date | None:
        """The first day whose spend logs are kept (TALLY_SPEND_LOG_RETENTION_DAYS); None: all kept."""
        rows = await self._rows("SELECT horizon FROM tally_spend_log_retention", ())
        return rows[0]["horizon"] if rows else None
