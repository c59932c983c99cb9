"""Consume usage → price → produce priced, inside one Kafka transaction per batch.

The input offsets are committed inside the same transaction (consume-transform-produce), and the
priced topic is read with read_committed downstream, so a crash at any point neither loses nor
duplicates a priced event: an aborted batch is simply re-read from the last committed offsets.

Two batches are in hand at a time: while one batch's transaction goes to the broker (produce,
offsets, commit: round trips during which the pricer would sit idle), the next batch is priced.
Transactions still commit one after the other in fetch order; a batch priced while the one
before it failed is thrown away and re-read with it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId
from aiokafka.producer.message_accumulator import BatchBuilder

from services.pricer.errors import LettersRefused, PricedRefused
from services.pricer.group_fenced_offsets import FencedOffsets, GroupMember, member_of
from services.pricer.pricing_step import Priced, Rejected, VersionUnknown, price_message
from services.pricer.settings import PricerSettings
from shared.backoff import Backoff
from shared.dead_letters import dead_letter, dead_letter_key, encoded, is_record_error
from shared.events import DeadLetter, utcnow
from shared.metrics import Registry
from shared.pricing.feed import CatalogFeed
from shared.pricing.versions import CatalogVersions
from shared.quarantine import QuarantineStore
from shared.record_limits import MAX_RECORD_BYTES, fits, record_bytes
from shared.topics import PRICED, USAGE_DLQ

log = structlog.get_logger(__name__)

# After a broker restart aiokafka's transactional producer can lose its sender task (an expired
# batch leaves a gap in the sequence numbers: OutOfOrderSequenceNumber) and then wait for ever in
# the commit or abort of the open transaction. No healthy batch takes this long.
BATCH_DEADLINE_S = 30.0
PRODUCER_DEAD = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)
# Pricing a batch hands the event loop back this often (~10 ms of work), so the previous batch's
# transaction, the fetcher and /health move on meanwhile.
YIELD_EVERY = 200
CATALOG_CATCH_UP_S = 5.0  # how long an event naming an unseen catalog version waits for it


class PricerMetrics:
    def __init__(self, registry: Registry) -> None:
        self.priced = registry.counter("pricer_events_priced_total", "Usage events priced and produced")
        self.unpriced = registry.counter("pricer_events_unpriced_total", "Events whose model has no price (spend 0, marked)")
        self.dead_lettered = registry.counter("pricer_events_dead_lettered_total", "Events sent to the dead-letter topic")
        self.quarantined = registry.counter("pricer_events_quarantined_total",
                                            "Events neither priced nor dead-lettered (the send was refused), kept in Postgres")
        self.aborted = registry.counter("pricer_transactions_aborted_total", "Batches aborted and re-read")
        self.lag = registry.gauge("pricer_consumer_lag", "Messages between the group's committed offsets and the end of the usage topic")


@dataclass(slots=True)
class PricedBatch:
    """One fetched batch, priced and laid out in record batches, waiting for its transaction."""

    generation: int  # the group assignment it was fetched under
    member: GroupMember  # the same, as the broker knows it: checked when the offsets are committed
    started: float
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # (priced partition, records, the one usage record's coordinates when isolating)
    record_batches: list[tuple[int, BatchBuilder, tuple[str, int, int] | None]] = field(default_factory=list)
    isolated: bool = False  # one priced record per record batch
    dead_letters: list[DeadLetter] = field(default_factory=list)
    priced: int = 0
    unpriced: int = 0


@dataclass(slots=True)
class SetAside:
    """Records set aside by this process, kept across worker restarts: a refused record batch can
    leave the producer unusable (a gap in its sequence numbers), and the worker that replaces it
    must not meet the same record blind. By coordinates: None, quarantined (passed over); a
    reason, dead-lettered instead of produced."""

    records: dict[tuple[str, int, int], str | None] = field(default_factory=dict)
    isolating: bool = False  # the broker refused a priced record batch: send records one by one


class Pricer(ConsumerRebalanceListener):
    def __init__(self, settings: PricerSettings, catalogs: CatalogVersions, consumer: AIOKafkaConsumer,
                 producer: AIOKafkaProducer, metrics: PricerMetrics, quarantine: QuarantineStore, set_aside: SetAside,
                 catalog_feed: CatalogFeed | None = None) -> None:
        self.settings = settings
        self.catalogs = catalogs
        self.catalog_feed = catalog_feed
        self.unknown_versions: set[str] = set()  # named by events, read for, never found: priced as current
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        self.quarantine = quarantine
        self.set_aside = set_aside
        self.priced_topic = settings.topic(PRICED)
        self.dlq_topic = settings.topic(USAGE_DLQ)
        self._generation = 0
        self._committing: asyncio.Task[None] | None = None
        self._offsets = FencedOffsets(producer)

    async def run(self) -> None:
        backoff = Backoff(0.5, 10.0)  # before re-reading a batch the broker aborted
        try:
            while True:
                generation = self._generation  # taken first: a batch fetched across a rebalance is re-read
                member = member_of(self.consumer)
                batch = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.batch_size)
                work = await self._price(batch, generation, member) if batch else None
                if self._committing is not None:
                    try:
                        await asyncio.shield(self._committing)  # on SIGTERM the batch still finishes
                        backoff.reset()
                    except ProducerFenced:
                        log.error("pricer_fenced", transactional_id=self.settings.transactional_id)
                        raise
                    except (TimeoutError, *PRODUCER_DEAD) as exc:
                        # The producer cannot recover by itself: the supervisor starts a new one (same
                        # transactional id, so the open transaction is aborted) and re-reads the batch.
                        log.warning("pricer_producer_stuck", error=repr(exc), deadline_s=BATCH_DEADLINE_S)
                        raise
                    except PricedRefused as refused:
                        # The broker refused priced records though each fits MAX_RECORD_BYTES (a topic
                        # or broker configured below it). Send each priced record alone to find the
                        # one refused; dead-letter it. No backoff: nothing is down.
                        self.metrics.aborted.inc()
                        log.warning("pricer_priced_refused", error=repr(refused.batches[0][1]))
                        for where, error in refused.batches:
                            if where is None:
                                self.set_aside.isolating = True
                            else:
                                self.set_aside.records[where] = f"the broker refused the priced event: {type(error).__name__}: {error}"
                        self._committing = work = None
                        await self._rewind(self.consumer.assignment())
                    except LettersRefused as refused:
                        # The transaction aborted for these dead letters alone: keep them in Postgres,
                        # then re-read the batch, passing over them (no backoff: nothing is down).
                        self.metrics.aborted.inc()
                        await self._quarantine(refused.letters)
                        self._committing = work = None
                        await self._rewind(self.consumer.assignment())
                    except KafkaError as exc:
                        self.metrics.aborted.inc()
                        log.warning("pricer_batch_aborted", error=repr(exc), retry_in_s=backoff.delay)
                        # The batch priced meanwhile comes after the aborted one: both are read again.
                        self._committing = work = None
                        await self._rewind(self.consumer.assignment())
                        await backoff.sleep()
                    self._committing = None
                if work is None:
                    continue
                if work.generation == self._generation:
                    self._committing = asyncio.create_task(self._commit(work))
                else:
                    # Fetched across a rebalance: maybe from before the positions were reset to
                    # the committed offsets, maybe after (and then consumed past them). Either way
                    # go back to the committed offsets; the partitions' new owners read it again.
                    await self._rewind(self.consumer.assignment() & work.offsets.keys())
        finally:
            if self._committing is not None and not self._committing.done():
                # Let the batch in flight commit (or abort) before the producer is stopped.
                await asyncio.wait([self._committing])

    async def on_partitions_revoked(self, revoked: object) -> None:
        """Before the group moves partitions, finish the transaction in flight: it holds offsets
        of partitions this pricer still owns. What was priced but not yet sent is dropped."""
        self._generation += 1
        if self._committing is not None:
            await asyncio.wait([self._committing])

    async def on_partitions_assigned(self, assigned: object) -> None:
        """Positions restart at the committed offsets: drop anything fetched before this."""
        self._generation += 1

    async def _price(self, batch: dict[TopicPartition, list], generation: int, member: GroupMember) -> PricedBatch:
        """Price a fetched batch and build its record batches; no transaction is needed yet, so
        this runs while the previous batch's transaction is still on its way."""
        work = PricedBatch(generation=generation, member=member, started=time.perf_counter(), isolated=self.set_aside.isolating)
        priced_at = utcnow().isoformat()  # one time stamp for the batch: it is priced as one
        partitions = await self._priced_partitions()
        since_yield = 0
        for tp, messages in batch.items():
            # Priced events go to the same partition number as their usage event: the key
            # (hashed api key) keeps its order, and records travel in whole batches.
            partition = tp.partition % partitions
            builder = self.producer.create_batch()
            for message in messages:
                where = (message.topic, message.partition, message.offset)
                if self.set_aside.records and where in self.set_aside.records:
                    if self.set_aside.records[where] is None:
                        continue  # quarantined after its dead letter was refused
                    work.dead_letters.append(self._dead_letter(message, self.set_aside.records[where]))
                    continue
                outcome = price_message(self.catalogs, message.value, priced_at)
                if isinstance(outcome, VersionUnknown):
                    outcome = await self._price_under_unknown_version(outcome.version, message.value, priced_at)
                headers = [] if isinstance(outcome, Rejected) else [("request_id", outcome.request_id.encode())]
                if not isinstance(outcome, Rejected) and not fits(message.key, outcome.value, headers):
                    outcome = Rejected(f"the priced event would be {record_bytes(message.key, outcome.value, headers)} bytes,"
                                       f" over the record limit of {MAX_RECORD_BYTES} bytes")
                if isinstance(outcome, Rejected):
                    work.dead_letters.append(self._dead_letter(message, outcome.reason))
                    continue
                work.priced += 1
                work.unpriced += outcome.unpriced
                if work.isolated:
                    builder.append(key=message.key, value=outcome.value, timestamp=None, headers=headers)
                    work.record_batches.append((partition, builder, where))
                    builder = self.producer.create_batch()
                elif builder.append(key=message.key, value=outcome.value, timestamp=None, headers=headers) is None:
                    work.record_batches.append((partition, builder, None))
                    builder = self.producer.create_batch()
                    builder.append(key=message.key, value=outcome.value, timestamp=None, headers=headers)
                since_yield += 1
                if since_yield == YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)  # let the previous transaction's next round trip go out
            if builder.record_count():
                work.record_batches.append((partition, builder, None))
            work.offsets[tp] = messages[-1].offset + 1
        return work

    async def _price_under_unknown_version(self, version: str, raw: bytes, priced_at: str) -> Priced | Rejected:
        """A proxy quoted under a version published a moment ago: read the catalog topic up to it.
        A version never published (a proxy that could not reach Kafka at start) is priced as the
        current one, and not waited for again."""
        if version not in self.unknown_versions and self.catalog_feed is not None:
            await self.catalog_feed.read_to_end(CATALOG_CATCH_UP_S)
            if version not in self.catalogs:
                self.unknown_versions.add(version)
                log.warning("pricer_catalog_version_unknown", version=version, current=self.catalogs.current.version)
        return price_message(self.catalogs, raw, priced_at, unknown_ok=True)  # type: ignore[return-value]

    async def _commit(self, work: PricedBatch) -> None:
        async with asyncio.timeout(BATCH_DEADLINE_S), self.producer.transaction():
            deliveries = [
                await self.producer.send_batch(builder, self.priced_topic, partition=partition)
                for partition, builder, _ in work.record_batches
            ]
            letters = [await self.producer.send(self.dlq_topic, encoded(letter), key=dead_letter_key(letter))
                       for letter in work.dead_letters]
            # aiokafka commits a transaction even when one of its batches failed (seen after a
            # broker restart: OutOfOrderSequenceNumber), which would commit the input offsets of
            # events never priced. Every delivery must succeed first, or the transaction aborts.
            await asyncio.gather(*deliveries, *letters, return_exceptions=True)
            refused_batches = [(where, sent.exception()) for (_, _, where), sent in zip(work.record_batches, deliveries)
                               if sent.exception() is not None and is_record_error(sent.exception())]
            if refused_batches:
                raise PricedRefused(refused_batches)  # find the record to blame, dead-letter it, run the batch again
            refused = [(letter, sent.exception()) for letter, sent in zip(work.dead_letters, letters)
                       if sent.exception() is not None and is_record_error(sent.exception())]
            if refused:
                raise LettersRefused(refused)  # record-specific: quarantine them and run the batch again
            for delivery in (*deliveries, *letters):
                delivery.result()  # anything else aborts the batch, to be retried with backoff
            # With the generation and member id it was read under: the group coordinator refuses
            # the offsets (and so the transaction) of a pricer that lost the partitions meanwhile.
            await self._offsets.send_offsets(work.offsets, self.settings.group_id, work.member)
        if work.isolated:
            self.set_aside.isolating = False  # the refused record was found and set aside
        self.metrics.priced.inc(work.priced)
        self.metrics.unpriced.inc(work.unpriced)
        self.metrics.dead_lettered.inc(len(work.dead_letters))
        log.debug("pricer_batch", events=work.priced + len(work.dead_letters),
                  ms=round((time.perf_counter() - work.started) * 1000, 2))

    async def _priced_partitions(self) -> int:
        # Fetches the priced topic's metadata on first use, then answers from the cache.
        return len(await self.producer.partitions_for(self.priced_topic))

    def _dead_letter(self, message, reason: str) -> DeadLetter:  # noqa: ANN001
        log.warning("usage_dead_lettered", reason=reason, partition=message.partition, offset=message.offset)
        return dead_letter(message.topic, message.partition, message.offset, reason, message.value)

    async def _quarantine(self, refused: list[tuple[DeadLetter, BaseException]]) -> None:
        """Keep in Postgres the records whose dead letters the broker refused. Postgres down: the
        error ends the worker, which the supervisor restarts with backoff (the batch is re-read)."""
        for letter, error in refused:
            await self.quarantine.put([letter], f"{type(error).__name__}: {error}")
            self.set_aside.records[(letter.source_topic, letter.partition, letter.offset)] = None
            self.metrics.quarantined.inc()

    async def _rewind(self, partitions: set[TopicPartition]) -> None:
        """Go back to the last committed offsets and read from there again."""
        for tp in partitions:
            committed = await self.consumer.committed(tp)
            if tp not in self.consumer.assignment():
                continue  # revoked meanwhile: its new owner reads from the committed offset
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

