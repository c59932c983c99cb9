"""The ledger's running totals, as this replica last saw them on the compacted totals topic.

`TotalsView` is plain code (apply an EntityTotal, look one up). `TotalsSync` reads the whole topic
from the beginning with no consumer group (every replica needs every total) and keeps reading;
start-up waits, up to a timeout, until it has caught up with the topic's end."""

from __future__ import annotations

import structlog

from services.proxy.budget.core import LedgerTotal
from services.proxy.sync.topic_follower import TopicFollower
from shared import topics
from shared.events import EntityTotal, UnknownEventVersion, decode_as
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


class TotalsView:
    def __init__(self) -> None:
        self._totals: dict[str, dict[str, LedgerTotal]] = {k: {} for k in ("key", "team", "user", "customer", "tag", "organization")}
        self.synced = False
        self.applied = 0

    def get(self, kind: str, entity_id: str) -> LedgerTotal | None:
        totals = self._totals.get(kind)  # rpm / tpm leases have no ledger total
        return totals.get(entity_id) if totals is not None else None

    def apply(self, total: EntityTotal) -> None:
        self.applied += 1
        # One partition per entity key, read in order: the last message is the ledger's latest word.
        self._totals[total.entity_type][total.entity_id] = LedgerTotal(
            total.spend, total.as_of, total.window_start, total.budget_reset_at)


class TotalsSync(TopicFollower):
    retry_event = "totals_sync_retry"

    def __init__(self, common: CommonSettings, view: TotalsView, fetch_max_wait_ms: int = 50) -> None:
        # A short fetch wait and large polls: budgets want the ledger's latest word quickly.
        super().__init__(common, topics.TOTALS, fetch_max_wait_ms=fetch_max_wait_ms, poll_timeout_ms=500, poll_max_records=5000)
        self.view = view

    def on_caught_up(self) -> None:
        self.view.synced = True
        log.info("totals_synced", totals=self.view.applied)

    def apply(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            total = decode_as(EntityTotal, raw)
        except (ValueError, UnknownEventVersion) as exc:
            log.error("entity_total_unreadable", error=str(exc)[:300])
            return
        self.view.apply(total)
