"""The consumer loop: read priced and admin events, commit them to Postgres in batches (by size
and by time), publish the changed totals, dead-letter what cannot be stored.

Offsets never go to Kafka: they live in tally_consumer_offsets, written in the same transaction
as the rows. The live ledger joins a consumer group (several ledgers split the partitions); on
each assignment it claims its partitions in Postgres (store.claim: a new epoch each) and seeks to
the offsets stored there, and every batch is fenced by those epochs. A replay assigns itself every
partition and seeks the same way, unfenced."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.ledger.batching import Item, blamed, make_batch, read_item, total_event
from services.ledger.errors import BadData, PartitionsFenced, SchemaSwapped
from services.ledger.kafka_guards import STALL_CHECK_S, acknowledged, check_progress
from services.ledger.metrics import LedgerMetrics
from services.ledger.rollup import EntityState
from services.ledger.store import BatchResult, LedgerStore, is_data_error, is_transient
from shared.backoff import Backoff
from shared.dead_letters import RECORD_ERRORS, dead_letter, dead_letter_key, encoded, is_record_error
from shared.events import DeadLetter, encode
from shared.quarantine import QuarantineStore
from shared.record_limits import check_fits
from shared.topics import ENTITIES, PRICED, PRICED_DLQ, TOTALS

log = structlog.get_logger(__name__)

# Decoding this many events takes a few milliseconds: the commit in flight waits no longer.
YIELD_EVERY_ITEMS = 100
# Before giving its partitions up in a rebalance, a ledger lets its batch in flight commit for at
# most this long (past it, the next owner's claim fences that batch).
REVOKE_WAIT_S = 10.0


class Ledger:
    def __init__(self, *, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer | None, store: LedgerStore,
                 metrics: LedgerMetrics, topics: Sequence[str], priced_topic: str, dlq_topic: str | None,
                 totals_topic: str | None, batch_max_events: int, batch_max_ms: int, store_bodies: bool,
                 retry_max_delay_s: float, on_commit: Callable[[BatchResult, float], Awaitable[None] | None] | None = None) -> None:
        self.consumer = consumer
        self.producer = producer
        self.store = store
        self.metrics = metrics
        self.topics = list(topics)
        self.priced_topic = priced_topic
        self.dlq_topic = dlq_topic
        self.totals_topic = totals_topic
        self.batch_max_events = batch_max_events
        self.batch_max_ms = batch_max_ms
        self.store_bodies = store_bodies
        self.retry_max_delay_s = retry_max_delay_s
        self.on_commit = on_commit
        self.quarantine = QuarantineStore(store.pool, "ledger") if store is not None else None
        self.partitions: list[TopicPartition] = []
        self._checked_positions: dict[TopicPartition, int] = {}  # as of the last stall check
        # The last batch's totals, sent but maybe not yet acknowledged (see commit).
        self._totals_in_flight: asyncio.Future[list[object]] | None = None
        # A replay stops each partition at an offset: messages from there on are not taken.
        self.limits: dict[TopicPartition, int] | None = None
        self.group = False  # partitions from the consumer group, claimed and fenced in Postgres
        self.owner = f"{socket.gethostname()}:{os.getpid()}"  # shown in tally_partition_owners
        self._pending: asyncio.Task[None] | None = None  # the batch committing
        self._assignment = 0  # bumped by every rebalance: what was read before it is dropped

    async def assign(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Take every partition of the topics and seek to the offsets stored in Postgres."""
        self.consumer.assign(partitions)
        return await self.seek_to_stored(partitions)

    async def seek_to_stored(self, partitions: list[TopicPartition], *, claim: bool = True) -> dict[TopicPartition, int]:
        """Seek each partition to its offset stored in Postgres (in a group, claiming it first
        unless it is already this ledger's)."""
        self.partitions = partitions
        if self.group and claim:
            wanted = [(tp.topic, tp.partition) for tp in partitions]
            stored = await self.with_db_retry(lambda: self.store.claim(wanted, self.owner))
            log.info("ledger_partitions_claimed", partitions=[f"{t}[{p}]@{e}" for (t, p), e in sorted(self.store.epochs.items())])
        else:
            stored = await self.with_db_retry(self.store.load_offsets)
        positions: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
                positions[tp] = -1
            else:
                self.consumer.seek(tp, offset)
                positions[tp] = offset
        return positions

    async def run(self, bootstrap_servers: str, *, group: bool = False) -> None:
        """Read for good: every partition alone, or (group) the share the consumer group gives."""
        if group:
            self.group = True
            self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        else:
            await self.assign(await discover_partitions(bootstrap_servers, self.topics))
        await self.publish_totals(await self.with_db_retry(self.store.all_totals))
        await self.pump()

    async def take(self, partitions: list[TopicPartition]) -> None:
        """The group gives these partitions: claim them and seek to their stored offsets."""
        self._assignment += 1
        await self.seek_to_stored(partitions)

    async def release(self) -> None:
        """The group takes the partitions back: what was read is dropped (its next owner reads it
        again from the stored offsets), and the batch committing may finish first."""
        self._assignment += 1
        self.partitions = []
        if self._pending is not None:
            await asyncio.wait([self._pending], timeout=REVOKE_WAIT_S)

    async def pump(self, done: Callable[[], Awaitable[bool]] | None = None,
                   progress: Callable[[int], None] | None = None, idle_timeout_ms: int = 1000) -> None:
        """Read and commit batches until `done()` says so (forever if None). While one batch
        commits in Postgres, the next is read and decoded here: the two halves of the work
        overlap instead of taking turns. Batches still commit strictly one after another."""
        loop = asyncio.get_running_loop()
        last_check = loop.time()
        try:
            while done is None or not await done():
                assignment = self._assignment
                items = await self.collect(idle_timeout_ms)
                if done is None and loop.time() - last_check > STALL_CHECK_S:
                    last_check = loop.time()
                    await self.check_not_stalled()
                if self._pending is not None:
                    task, self._pending = self._pending, None
                    if await self._swapped(task):
                        continue  # what was just read is re-read from the new schema's offsets
                if items and assignment != self._assignment:
                    # Read across a rebalance, maybe from before the seeks to the stored offsets:
                    # read again from them (the partitions this ledger lost, their owners read).
                    await self.seek_to_stored(self.partitions, claim=False)
                    continue
                if items:
                    self._pending = asyncio.create_task(self.commit(items))
                    if progress is not None:
                        progress(len(items))
            if self._pending is not None:
                task, self._pending = self._pending, None
                await self._swapped(task)
        finally:
            if self._pending is not None:
                task, self._pending = self._pending, None
                await self._finish_on_exit(task)

    async def _swapped(self, task: asyncio.Task[None]) -> bool:
        try:
            await task
            return False
        except SchemaSwapped:
            log.warning("ledger_schema_swapped", action="seeking to the offsets stored in the new schema")
            await self.seek_to_stored(self.partitions)
            return True
        except PartitionsFenced as exc:
            # This ledger lost partitions while it could not tell (paused, cut off): the batch
            # rolled back. The worker restarts and rejoins the group with new clients.
            log.warning("ledger_partitions_fenced", error=str(exc))
            raise

    async def _finish_on_exit(self, task: asyncio.Task[None], timeout: float = 10.0) -> None:
        """On shutdown, let the batch in flight commit (bounded), so SIGTERM loses no work."""
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except (Exception, asyncio.TimeoutError, asyncio.CancelledError) as exc:  # noqa: BLE001 - logged; re-read on restart
            task.cancel()
            log.warning("ledger_batch_abandoned_on_exit", error=f"{type(exc).__name__}: {exc}")

    async def collect(self, idle_timeout_ms: int) -> list[Item]:
        items: list[Item] = []
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while len(items) < self.batch_max_events:
            if deadline is None:
                timeout = idle_timeout_ms
            else:
                timeout = int(max(0.0, deadline - loop.time()) * 1000)
            records = await self.consumer.getmany(timeout_ms=timeout, max_records=self.batch_max_events - len(items))
            for tp, messages in records.items():
                limit = self.limits.get(tp, 0) if self.limits is not None else None
                for m in messages:
                    if limit is not None and m.offset >= limit:
                        self.consumer.seek(tp, limit)
                        break
                    items.append(read_item(tp.topic, tp.partition, m.offset, m.value,
                                           priced_topic=self.priced_topic, store_bodies=self.store_bodies))
                    if len(items) % YIELD_EVERY_ITEMS == 0:
                        # Let the previous batch's commit send its next statement: decoding
                        # thousands of events without a pause would leave Postgres idle.
                        await asyncio.sleep(0)
            if not items:
                return items
            if deadline is None:
                deadline = loop.time() + self.batch_max_ms / 1000
            if loop.time() >= deadline:
                break
        self.metrics.consumed.inc(len(items))
        return items

    async def commit(self, items: Sequence[Item]) -> None:
        started = time.monotonic()
        await self.dead_letter([i for i in items if i.reason is not None])
        results = await self._commit_splitting(items)
        elapsed = time.monotonic() - started
        self.metrics.batches.inc()
        self.metrics.batch_seconds.inc(elapsed)
        self.metrics.batch_last.set(elapsed)
        now = datetime.now(timezone.utc)
        changed: dict[tuple[str, str], EntityState] = {}
        for result in results:
            self.metrics.inserted.inc(len(result.inserted))
            self.metrics.duplicates.inc(result.duplicates)
            for state in result.totals:
                changed[(state.entity_type, state.entity_id)] = state
            if self.on_commit is not None:
                maybe = self.on_commit(result, time.time())
                if maybe is not None:
                    await maybe
        ends = [it.log.end_time for it in items if it.log is not None]
        if ends:
            self.metrics.delay_max.set((now - min(ends)).total_seconds())
        # The totals are queued in the producer in commit order (so a key's totals stay in order)
        # but their acknowledgement is awaited one batch later: the next batch need not wait for
        # Kafka's round trip, and a failed send still stops the ledger (the restart republishes
        # every total).
        previous, self._totals_in_flight = self._totals_in_flight, None
        if previous is not None:
            await acknowledged(previous)
        self._totals_in_flight = await self.send_totals(list(changed.values()))

    async def _commit_splitting(self, items: Sequence[Item]) -> list[BatchResult]:
        """Commit; when the data is to blame, split the batch until the offending event stands
        alone, dead-letter it and commit the rest."""
        try:
            return [await self.with_db_retry(lambda: self.store.apply(make_batch(items)))]
        except BadData as bad:
            exc = bad.__cause__ or bad
            usable = [i for i in items if i.reason is None]
            if len(usable) <= 1:
                await self.dead_letter([blamed(i, exc) for i in usable])
                return [await self.with_db_retry(lambda: self.store.apply(make_batch([blamed(i, exc) for i in items])))]
            half = len(items) // 2
            first = await self._commit_splitting([i for i in items[:half]])
            return first + await self._commit_splitting([i for i in items[half:]])

    async def with_db_retry(self, action: Callable[[], Awaitable[object]]) -> object:
        """Postgres down: retry with capped exponential backoff, never skip (/health says 503)."""
        backoff = Backoff(0.1, self.retry_max_delay_s)
        while True:
            try:
                return await action()
            except Exception as exc:
                if is_data_error(exc):
                    raise BadData(str(exc)) from exc
                if not is_transient(exc):
                    raise
                self.metrics.db_retries.inc()
                log.warning("ledger_db_unavailable", error=f"{type(exc).__name__}: {str(exc)[:200]}", retry_in_s=backoff.delay)
            await backoff.sleep()

    async def dead_letter(self, items: Sequence[Item]) -> None:
        """Send each item's bounded dead letter; one the broker refuses (too large for the dlq
        topic, say) is quarantined in Postgres instead, so no record can stop the ledger. A
        transient failure (broker down, no acknowledgement) raises: the batch is re-read."""
        if not items:
            return
        for item in items:
            log.warning("ledger_dead_letter", topic=item.topic, partition=item.partition, offset=item.offset, reason=item.reason)
        if self.producer is None or self.dlq_topic is None:
            return  # a replay: these were dead-lettered when they were first read
        letters = [dead_letter(item.topic, item.partition, item.offset, item.reason or "", item.raw) for item in items]
        outcomes: list[object] = []
        for letter in letters:
            try:
                outcomes.append(await self.producer.send(self.dlq_topic, encoded(letter), key=dead_letter_key(letter)))
            except RECORD_ERRORS as exc:  # refused before it left (aiokafka's own size check)
                outcomes.append(exc)
        pending = [o for o in outcomes if isinstance(o, asyncio.Future)]
        await acknowledged(asyncio.gather(*pending, return_exceptions=True))
        refused: list[tuple[DeadLetter, BaseException]] = []
        for letter, outcome in zip(letters, outcomes):
            error = outcome.exception() if isinstance(outcome, asyncio.Future) else outcome
            if error is None:
                self.metrics.dead_lettered.inc()
            elif isinstance(error, BaseException) and is_record_error(error):
                refused.append((letter, error))
            elif isinstance(error, BaseException):
                raise error
        for letter, error in refused:
            if self.quarantine is None:
                raise error
            await self.with_db_retry(lambda: self.quarantine.put([letter], f"{type(error).__name__}: {error}"))
            self.metrics.quarantined.inc()

    async def publish_totals(self, states: Sequence[EntityState]) -> None:
        delivered = await self.send_totals(states)
        if delivered is not None:
            await acknowledged(delivered)

    async def send_totals(self, states: Sequence[EntityState]) -> asyncio.Future[list[object]] | None:
        """Queue the totals in the producer; returns the future of their acknowledgement."""
        if self.producer is None or self.totals_topic is None or not states:
            return None
        futures = []
        for state in states:
            key, value = f"{state.entity_type}:{state.entity_id}".encode(), encode(total_event(state))
            check_fits("totals", key, value)  # an id and a few numbers: small unless an id is unbounded
            futures.append(await self.producer.send(self.totals_topic, value, key=key))
        delivered = asyncio.gather(*futures)
        delivered.add_done_callback(lambda f: f.cancelled() or f.exception() or self.metrics.totals_published.inc(len(states)))
        return delivered

    async def check_not_stalled(self) -> None:
        """Every STALL_CHECK_S: raise ConsumerStalled if a partition with messages waiting has not
        moved since the previous check (kafka_guards.check_progress)."""
        # In a group, a partition being revoked may already be gone from the consumer.
        mine = [tp for tp in self.partitions if tp in self.consumer.assignment()] if self.group else self.partitions
        self._checked_positions = await check_progress(self.consumer, mine, self._checked_positions)


class _Rebalance(ConsumerRebalanceListener):
    """The consumer group's calls into the ledger: give partitions up, take (claim) new ones."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def on_partitions_revoked(self, revoked: object) -> None:
        await self.ledger.release()

    async def on_partitions_assigned(self, assigned: object) -> None:
        await self.ledger.take(sorted(assigned))  # type: ignore[call-overload]


async def discover_partitions(bootstrap_servers: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of `topics`, sorted (the topics must exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    missing = set(topics) - {tp.topic for tp in found}
    if missing:
        raise LookupError(f"topics {sorted(missing)} do not exist")
    return sorted(found)


def topics_for(settings_topic: Callable[[str], str]) -> tuple[list[str], str, str, str]:
    """(topics read, priced topic, dead-letter topic, totals topic), with the prefix applied."""
    return [settings_topic(PRICED), settings_topic(ENTITIES)], settings_topic(PRICED), settings_topic(PRICED_DLQ), settings_topic(TOTALS)
