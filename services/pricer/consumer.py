"""Consume usage → price → produce priced, inside one Kafka transaction per batch.

The input offsets are committed inside the same transaction (consume-transform-produce), and the
priced topic is read with read_committed downstream, so a crash at any point neither loses nor
duplicates a priced event: an aborted batch is simply re-read from the last committed offsets."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId

from services.pricer.pricing_step import Rejected, price_message
from services.pricer.settings import PricerSettings
from shared.events import DeadLetter, encode, utcnow
from shared.metrics import Registry
from shared.pricing import Catalog
from shared.topics import PRICED, USAGE_DLQ

log = structlog.get_logger(__name__)

# After a broker restart aiokafka's transactional producer can lose its sender task (an expired
# batch leaves a gap in the sequence numbers: OutOfOrderSequenceNumber) and then wait for ever in
# the commit or abort of the open transaction. No healthy batch takes this long.
BATCH_DEADLINE_S = 30.0
PRODUCER_DEAD = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)


class PricerMetrics:
    def __init__(self, registry: Registry) -> None:
        self.priced = registry.counter("pricer_events_priced_total", "Usage events priced and produced")
        self.unpriced = registry.counter("pricer_events_unpriced_total", "Events whose model has no price (spend 0, marked)")
        self.dead_lettered = registry.counter("pricer_events_dead_lettered_total", "Events sent to the dead-letter topic")
        self.aborted = registry.counter("pricer_transactions_aborted_total", "Batches aborted and re-read")
        self.lag = registry.gauge("pricer_consumer_lag", "Messages behind the end of the usage topic")


class Pricer:
    def __init__(self, settings: PricerSettings, catalog: Catalog, consumer: AIOKafkaConsumer,
                 producer: AIOKafkaProducer, metrics: PricerMetrics) -> None:
        self.settings = settings
        self.catalog = catalog
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        self.priced_topic = settings.topic(PRICED)
        self.dlq_topic = settings.topic(USAGE_DLQ)
        self._lag_measured_at = 0.0

    async def run(self) -> None:
        delay = 0.5
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.batch_size)
            await self._update_lag()
            if not batch:
                continue
            try:
                async with asyncio.timeout(BATCH_DEADLINE_S):
                    await self._process(batch)
                delay = 0.5
            except ProducerFenced:
                log.error("pricer_fenced", transactional_id=self.settings.transactional_id)
                raise
            except (TimeoutError, *PRODUCER_DEAD) as exc:
                # The producer cannot recover by itself: the supervisor starts a new one (same
                # transactional id, so the open transaction is aborted) and re-reads the batch.
                log.warning("pricer_producer_stuck", error=repr(exc), deadline_s=BATCH_DEADLINE_S)
                raise
            except KafkaError as exc:
                self.metrics.aborted.inc()
                log.warning("pricer_batch_aborted", error=repr(exc), retry_in_s=delay)
                await self._rewind(list(batch))
                await asyncio.sleep(delay)  # capped backoff before re-reading the batch
                delay = min(delay * 2, 10.0)

    async def _process(self, batch: dict[TopicPartition, list]) -> None:
        started = time.perf_counter()
        offsets: dict[TopicPartition, int] = {}
        priced = unpriced = rejected = 0
        deliveries: list[asyncio.Future] = []  # type: ignore[type-arg]
        priced_at = utcnow().isoformat()  # one time stamp for the batch: it is priced as one
        async with self.producer.transaction():
            for tp, messages in batch.items():
                # Priced events go to the same partition number as their usage event: the key
                # (hashed api key) keeps its order, and records travel in whole batches.
                partition = tp.partition % await self._priced_partitions()
                builder = self.producer.create_batch()
                for message in messages:
                    outcome = price_message(self.catalog, message.value, priced_at)
                    if isinstance(outcome, Rejected):
                        rejected += 1
                        deliveries.append(await self._dead_letter(message, outcome.reason))
                        continue
                    priced += 1
                    unpriced += outcome.unpriced
                    headers = [("request_id", outcome.request_id.encode())]
                    if builder.append(key=message.key, value=outcome.value, timestamp=None, headers=headers) is None:
                        deliveries.append(await self.producer.send_batch(builder, self.priced_topic, partition=partition))
                        builder = self.producer.create_batch()
                        builder.append(key=message.key, value=outcome.value, timestamp=None, headers=headers)
                if builder.record_count():
                    deliveries.append(await self.producer.send_batch(builder, self.priced_topic, partition=partition))
                offsets[tp] = messages[-1].offset + 1
            # aiokafka commits a transaction even when one of its batches failed (seen after a
            # broker restart: OutOfOrderSequenceNumber), which would commit the input offsets of
            # events never priced. Every delivery must succeed first, or the transaction aborts.
            await asyncio.gather(*deliveries)
            await self.producer.send_offsets_to_transaction(offsets, self.settings.group_id)
        self.metrics.priced.inc(priced)
        self.metrics.unpriced.inc(unpriced)
        self.metrics.dead_lettered.inc(rejected)
        log.debug("pricer_batch", events=priced + rejected, ms=round((time.perf_counter() - started) * 1000, 2))

    async def _priced_partitions(self) -> int:
        # Fetches the priced topic's metadata on first use, then answers from the cache.
        return len(await self.producer.partitions_for(self.priced_topic))

    async def _dead_letter(self, message, reason: str) -> asyncio.Future:  # type: ignore[type-arg]  # noqa: ANN001
        raw = message.value or b""
        letter = DeadLetter(source_topic=message.topic, partition=message.partition, offset=message.offset,
                            reason=reason, payload=raw.decode("utf-8", errors="replace"))
        log.warning("usage_dead_lettered", reason=reason, partition=message.partition, offset=message.offset)
        return await self.producer.send(self.dlq_topic, encode(letter), key=message.key)

    async def _rewind(self, partitions: list[TopicPartition]) -> None:
        """After an abort, go back to the last committed offsets and read the batch again."""
        for tp in partitions:
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    async def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_measured_at < 1.0:
            return
        self._lag_measured_at = now
        lag = 0
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is not None:
                lag += max(0, end - await self.consumer.position(tp))
        self.metrics.lag.set(lag)
