"""Keeps the in-memory KeyTable current from the entities topic (every replica reads it all, no
consumer group). At start-up the app waits, up to key_sync_timeout_s, for the table to catch up
with the topic's end; /health/readiness says 503 until it has."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from aiohttp import web

from services.proxy.auth.keys import KeyTable
from services.proxy.sync.topic_follower import TopicFollower
from shared import topics
from shared.events import EntityChanged, SpendReset, UnknownEventVersion, decode
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


EntityListener = Callable[[EntityChanged | SpendReset], None]
# Others who keep a view of the entities topic (budgets: teams, users, customers, spend resets).
ENTITY_LISTENERS: web.AppKey[list[EntityListener]] = web.AppKey("entity_listeners", list)


class KeySync(TopicFollower):
    retry_event = "key_sync_retry"

    def __init__(self, common: CommonSettings, table: KeyTable, listeners: Sequence[EntityListener] = ()) -> None:
        super().__init__(common, topics.ENTITIES)
        self.table = table
        self.listeners = list(listeners)
        self.applied = 0

    def on_caught_up(self) -> None:
        self.table.synced = True
        log.info("key_table_synced", keys=len(self.table), changes=self.applied)

    def apply(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            event = decode(raw)
        except (ValueError, UnknownEventVersion) as exc:
            log.error("entity_event_unreadable", error=str(exc)[:300])
            return
        if isinstance(event, EntityChanged):
            self.table.apply(event)
            self.applied += 1
        if isinstance(event, (EntityChanged, SpendReset)):
            for listener in self.listeners:
                listener(event)


KEY_SYNC: web.AppKey[KeySync] = web.AppKey("key_sync", KeySync)  # set by app.py's key_sync context
