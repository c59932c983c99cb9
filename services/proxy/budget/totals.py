"""The ledger's running totals, as this replica last saw them on the compacted totals topic.

`TotalsView` is plain code (apply an EntityTotal, look one up). `TotalsSync` reads the whole topic
from the beginning with no consumer group (every replica needs every total) and keeps reading;
start-up waits, up to a timeout, until it has caught up with the topic's end."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.proxy.budget.core import LedgerTotal
from shared import topics
from shared.events import EntityTotal, UnknownEventVersion, decode_as
from shared.kafka import consumer as make_consumer
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


class TotalsView:
    def __init__(self) -> None:
        self._totals: dict[str, dict[str, LedgerTotal]] = {k: {} for k in ("key", "team", "user", "customer", "tag")}
        self.synced = False
        self.applied = 0

    def get(self, kind: str, entity_id: str) -> LedgerTotal | None:
        return self._totals[kind].get(entity_id)

    def apply(self, total: EntityTotal) -> None:
        self.applied += 1
        # One partition per entity key, read in order: the last message is the ledger's latest word.
        self._totals[total.entity_type][total.entity_id] = LedgerTotal(
            total.spend, total.as_of, total.window_start, total.budget_reset_at)


class TotalsSync:
    def __init__(self, common: CommonSettings, view: TotalsView, fetch_max_wait_ms: int = 50) -> None:
        self.common = common
        self.view = view
        self.topic = common.topic(topics.TOTALS)
        self.caught_up = asyncio.Event()
        self.fetch_max_wait_ms = fetch_max_wait_ms

    async def run(self) -> None:
        delay = 0.2
        while True:
            # Subscribed with no group: every partition, from the beginning (auto_offset_reset).
            consumer = make_consumer(self.common, topics.TOTALS, group_id=None, fetch_max_wait_ms=self.fetch_max_wait_ms)
            try:
                await consumer.start()
                assigned = await self._assignment(consumer)
                ends = await consumer.end_offsets(list(assigned))
                delay = 0.2
                await self._consume(consumer, ends)
            except (KafkaError, OSError) as exc:
                log.warning("totals_sync_retry", error=str(exc), retry_in_s=delay)
            finally:
                await consumer.stop()
            await asyncio.sleep(delay)  # backoff before reconnecting
            delay = min(delay * 2, 5.0)

    async def _assignment(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        """The topic's partitions, once the consumer has them (polling with a deadline)."""
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
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    self._apply(record.value)
            if not self.caught_up.is_set():
                await self._check_caught_up(consumer, ends)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return
        self.view.synced = True
        self.caught_up.set()
        log.info("totals_synced", totals=self.view.applied)

    def _apply(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            total = decode_as(EntityTotal, raw)
        except (ValueError, UnknownEventVersion) as exc:
            log.error("entity_total_unreadable", error=str(exc)[:300])
            return
        self.view.apply(total)
