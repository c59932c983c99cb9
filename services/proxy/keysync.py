"""Keeps the in-memory KeyTable current from the entities topic (every replica reads it all, no
consumer group). At start-up the app waits, up to key_sync_timeout_s, for the table to catch up
with the topic's end; /health/readiness says 503 until it has."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiohttp import web

from services.proxy.auth import KeyTable
from shared import topics
from shared.events import EntityChanged, SpendReset, UnknownEventVersion, decode
from shared.kafka import consumer as make_consumer
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


EntityListener = Callable[[EntityChanged | SpendReset], None]
# Others who keep a view of the entities topic (budgets: teams, users, customers, spend resets).
ENTITY_LISTENERS: web.AppKey[list[EntityListener]] = web.AppKey("entity_listeners", list)


class KeySync:
    def __init__(self, common: CommonSettings, table: KeyTable, listeners: Sequence[EntityListener] = ()) -> None:
        self.common = common
        self.table = table
        self.listeners = list(listeners)
        self.topic = common.topic(topics.ENTITIES)
        self.caught_up = asyncio.Event()
        self.applied = 0

    async def run(self) -> None:
        delay = 0.2
        while True:
            # No group: every replica reads every partition from the beginning.
            consumer = make_consumer(self.common, topics.ENTITIES, group_id=None)
            try:
                await consumer.start()
                assigned = await self._assignment(consumer)
                ends = await consumer.end_offsets(list(assigned))
                await self._consume(consumer, ends)
            except (KafkaError, OSError) as exc:
                log.warning("key_sync_retry", error=str(exc), retry_in_s=delay)
            finally:
                await consumer.stop()
            await asyncio.sleep(delay)  # backoff before reconnecting
            delay = min(delay * 2, 5.0)

    async def _assignment(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        """The partitions of the entities topic, once metadata names them (polling with a deadline)."""
        deadline = asyncio.get_running_loop().time() + 30
        while not consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaError(f"topic {self.topic} has no partitions (does it exist?)")
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    self._apply(record.value)
        return consumer.assignment()

    async def _consume(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        await self._check_caught_up(consumer, ends)
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for record in records:
                    self._apply(record.value)
            if not self.caught_up.is_set():
                await self._check_caught_up(consumer, ends)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return
        self.table.synced = True
        self.caught_up.set()
        log.info("key_table_synced", keys=len(self.table), changes=self.applied)

    def _apply(self, raw: bytes | None) -> None:
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
