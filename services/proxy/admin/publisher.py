"""Admin changes go to the entities topic (acks=all, awaited) and, once Kafka has them, straight
into this replica's own views, so a new key works here at once; other replicas read the topic."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.proxy.errors import ProxyError
from shared import topics
from shared.events import EntityChanged, SpendReset, encode
from shared.kafka import idempotent_producer
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

Applier = Callable[[EntityChanged | SpendReset], None]


class NotRecorded(ProxyError):
    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, type="service_unavailable", code="503")


class EntityPublisher:
    def __init__(self, common: CommonSettings, appliers: Sequence[Applier]) -> None:
        self.common = common
        self.topic = common.topic(topics.ENTITIES)
        self.appliers = list(appliers)
        self.producer: AIOKafkaProducer | None = None

    async def connect(self) -> None:
        """Run in the background (wiring.py, supervised): the proxy serves calls while Kafka is
        down; only admin changes answer 503 until the producer is up."""
        producer = idempotent_producer(self.common, linger_ms=0)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def publish(self, changes: Sequence[EntityChanged]) -> None:
        """Write every change to the log, then apply them here. Nothing is applied unless Kafka
        acknowledged it."""
        if self.producer is None:
            raise NotRecorded("not connected to Kafka yet: admin changes cannot be recorded, retry shortly")
        try:
            for change in changes:
                await self.producer.send_and_wait(
                    self.topic, encode(change), key=f"{change.entity_type}:{change.entity_id}".encode())
        except KafkaError as exc:
            raise NotRecorded(f"the change could not be recorded (Kafka: {type(exc).__name__}); nothing was applied here, retry") from exc
        for change in changes:
            for apply in self.appliers:
                apply(change)
            log.info("entity_changed", entity_type=change.entity_type, entity_id=_shown(change),
                     deleted=change.deleted)


def _shown(change: EntityChanged) -> str:
    return change.entity_id[:12] + "..." if change.entity_type == "key" else change.entity_id
