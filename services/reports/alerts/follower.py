"""Follows entities.v1 (every budget, read whole at each start: a projection) and totals.v1 (from
the offsets kept in Postgres), decides crossings with the pure core and records each decision with
the offsets in one transaction. Every instance reads every partition: the decisions' unique key,
not a group coordinator, is what makes several instances, restarts and replays send each once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.reports.alerts.core import Budget, Rules, alert_key, budget_of, crossings, slack_message, webhook_event
from services.reports.alerts.store import AlertStore, Decision
from services.reports.jsonout import dumps
from shared.backoff import Backoff
from shared.events import EntityChanged, EntityTotal, UnknownEventVersion, decode
from shared.kafka import consumer as make_consumer, stop_clients
from shared.settings import CommonSettings
from shared.topics import ENTITIES, TOTALS

log = structlog.get_logger(__name__)

RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0


def decisions_for(budget: Budget, total: EntityTotal, rules: Rules, channels: tuple[str, ...]) -> list[Decision]:
    """The rows one total adds: each crossing it reached, once per channel, in the core's order."""
    out = []
    for crossing in crossings(budget, total, rules):
        event = webhook_event(budget, total, crossing)
        key = alert_key(total, crossing)
        for channel in channels:
            body = dumps(event) if channel == "webhook" else dumps(slack_message(event, total.as_of))
            out.append(Decision(key, channel, total.entity_type, total.entity_id, crossing.event, body))
    return out


class AlertFollower:
    def __init__(self, common: CommonSettings, store: AlertStore, rules: Rules, channels: tuple[str, ...],
                 on_decided: Callable[[], None]) -> None:
        self.common, self.store, self.rules, self.channels = common, store, rules, channels
        self.on_decided = on_decided
        self.entities_topic, self.totals_topic = common.topic(ENTITIES), common.topic(TOTALS)
        self.budgets: dict[tuple[str, str], Budget] = {}
        self.caught_up = asyncio.Event()  # entities read to their end once: totals are being decided
        self.skipped = 0  # records that could not be read

    async def run(self) -> None:
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            consumer = make_consumer(self.common, ENTITIES, TOTALS, group_id=None)
            try:
                await consumer.start()
                await self._follow(consumer, backoff)
            except (KafkaError, OSError) as exc:
                log.warning("alerts_follow_retry", error=str(exc), retry_in_s=backoff.delay)
            finally:
                await stop_clients(consumer)
            await backoff.sleep()

    async def _follow(self, consumer: AIOKafkaConsumer, backoff: Backoff) -> None:
        assigned = await self._assignment(consumer)
        entities = TopicPartition(self.entities_topic, 0)
        totals = sorted(tp for tp in assigned if tp.topic == self.totals_topic)
        consumer.seek(entities, 0)
        self.budgets.clear()
        end = (await consumer.end_offsets([entities]))[entities]
        while await consumer.position(entities) < end:
            for records in (await consumer.getmany(entities, timeout_ms=1000)).values():
                self._apply_entities(records)
        stored = await self.store.offsets(self.totals_topic)
        for tp in totals:
            consumer.seek(tp, stored.get(tp.partition, 0))
        backoff.reset()
        self.caught_up.set()
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            # Budgets first: a total read in the same batch as its entity's change sees the change.
            self._apply_entities(batches.get(entities, []))
            await self._decide({tp: records for tp, records in batches.items() if tp != entities})

    async def _assignment(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        """Every partition of both topics, once metadata names them (records read while waiting
        are read again: the caller seeks)."""
        deadline = asyncio.get_running_loop().time() + 30
        while {tp.topic for tp in consumer.assignment()} != {self.entities_topic, self.totals_topic}:
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaError(f"{self.totals_topic} or {self.entities_topic} has no partitions (do they exist?)")
            await consumer.getmany(timeout_ms=100, max_records=1)
        return consumer.assignment()

    def _apply_entities(self, records: list) -> None:
        for record in records:
            change = self._read(record, EntityChanged)
            if change is None:
                continue
            budget = budget_of(change)
            if budget is None:
                self.budgets.pop((change.entity_type, change.entity_id), None)
            else:
                self.budgets[(change.entity_type, change.entity_id)] = budget

    async def _decide(self, batches: dict[TopicPartition, list]) -> None:
        if not batches:
            return
        decisions: list[Decision] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, records in batches.items():
            for record in records:
                total = self._read(record, EntityTotal)
                budget = self.budgets.get((total.entity_type, total.entity_id)) if total is not None else None
                if total is not None and budget is not None:
                    decisions.extend(decisions_for(budget, total, self.rules, self.channels))
            offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        if await self.store.record(decisions, offsets):
            self.on_decided()

    def _read(self, record, kind: type) -> object | None:  # noqa: ANN001 - an aiokafka ConsumerRecord
        """The record as `kind`, or None: other event types on the topic are not ours, and a record
        that cannot be read is counted and passed (no single record stops the follower)."""
        try:
            event = decode(record.value) if record.value is not None else None
        except (ValueError, ValidationError, UnknownEventVersion) as exc:
            self.skipped += 1
            log.warning("alerts_record_unreadable", topic=record.topic, partition=record.partition, offset=record.offset, error=str(exc)[:300])
            return None
        return event if isinstance(event, kind) else None
