"""Usage events to Kafka, off the request path, never lost.

`emit()` is synchronous and cheap: it writes the event to the journal (see journal.py: what keeps an
answered call's event through a SIGKILL), appends it to a bounded in-memory queue and wakes the
sender.
The sender hands events to the idempotent producer without waiting for acks, as whole record
batches per partition (what has queued up since its last turn: aiokafka's per-message send()
costs about three times the CPU of appending to a batch); a failed batch goes to the spool.
While Kafka is unreachable (not yet connected, or a send just failed) events go straight to the
spool; the drain loop retries the spool every `drain_interval_s` and, when a
whole file is acknowledged, marks Kafka healthy again. On start-up a non-empty spool is drained
first. A full queue spills to the spool synchronously: back-pressure, not loss."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId
from aiokafka.partitioner import DefaultPartitioner, murmur2

from services.proxy.journal import Journal
from services.proxy.spool import Spool
from services.proxy.record import encode_usage
from shared.events import UsageEvent
from shared.metrics import Registry

log = structlog.get_logger(__name__)

SEND_ALL_TIMEOUT_S = 30.0  # a spool file or shutdown flush that gets no answer in this long failed
MAX_BATCH_RECORDS = 5_000  # taken from the queue per turn of the sender
Record = tuple[bytes, bytes, bytes, int | None]  # (key, value, request_id, journal segment)

# aiokafka's sender task dies on these and every later send fails the same way (e.g. batches that
# expired while the broker was down leave a gap in a partition's sequence numbers): the producer is
# replaced by a new one, with a new producer id.
PRODUCER_FATAL = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)


class CachedPartitioner:
    """aiokafka's default partitioning (Java's murmur2 of the key), remembered per key: the pure
    Python murmur2 costs tens of microseconds and the same few api-key hashes repeat."""

    def __init__(self, limit: int = 100_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._limit = limit

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._limit:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def _fill_batch(producer: AIOKafkaProducer, group: list[Record]):  # noqa: ANN202 - aiokafka's BatchBuilder
    """A record batch with as many of `group` as fit; returns it and how many it took."""
    builder = producer.create_batch()
    taken = 0
    for key, value, request_id, _segment in group:
        if builder.append(key=key, value=value, timestamp=None, headers=[("request_id", request_id)]) is None:
            break
        taken += 1
    if taken == 0:
        raise ValueError(f"a usage event of {len(group[0][1])} bytes does not fit in a record batch")
    return builder, taken


class UsageEmitter:
    def __init__(
        self,
        topic: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        spool: Spool,
        registry: Registry,
        *,
        journal: Journal,
        queue_size: int = 50_000,
        max_in_flight: int = 20_000,
        drain_interval_s: float = 1.0,
    ) -> None:
        self.topic = topic
        self._factory = producer_factory
        self.spool = spool
        self.journal = journal
        self.producer: AIOKafkaProducer | None = None
        self.healthy = False  # connected and the last send succeeded
        self._queue: collections.deque[Record] = collections.deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        # Sent batches, not yet acknowledged: if their producer is abandoned, they go to the spool.
        self._pending: dict[int, list[Record]] = {}
        self._pending_records = 0
        self._partitioner = CachedPartitioner()
        self._next_token = 0
        self._max_in_flight = max_in_flight
        self._room = asyncio.Event()
        self._room.set()
        self._failed: list[Record] = []
        self._drain_interval = drain_interval_s
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._drain_lock = asyncio.Lock()
        self.sent = registry.counter("proxy_usage_events_sent_total", "Usage events acknowledged by Kafka")
        self.spooled = registry.counter("proxy_usage_events_spooled_total", "Usage events written to the spool")
        registry.gauge("proxy_usage_queue_length", "Usage events waiting in memory", callback=lambda: float(len(self._queue)))
        registry.gauge("proxy_spool_pending", "Usage events in the spool waiting for Kafka", callback=lambda: float(self.spool.pending))

    # -- request path ---------------------------------------------------------------------------

    def emit(self, event: UsageEvent) -> None:
        value = encode_usage(event)
        record = (event.api_key_hash.encode(), value, event.request_id.encode(), self.journal.append(value))
        if len(self._queue) >= self._queue_size:
            self._to_spool([record])
            return
        self._queue.append(record)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def refusal(self) -> str | None:
        """Why the usage log cannot accept events now (the proxy then refuses calls), or None."""
        return None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        leftovers = self.journal.read_leftovers()
        if leftovers:
            # A previous process died before these were safe: the spool sends them (again).
            self.spool.append(leftovers)
            self.spooled.inc(len(leftovers))
            log.warning("journal_recovered", events=len(leftovers))
        self.journal.drop_leftovers()
        self._tasks = [asyncio.create_task(self._connect_loop(), name="usage-connect"),
                       asyncio.create_task(self._send_loop(), name="usage-send"),
                       asyncio.create_task(self._drain_loop(), name="usage-drain")]

    async def close(self, timeout: float = 10.0) -> None:
        """Send what is queued if Kafka is healthy, spool the rest, stop the producer."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        leftover = list(self._queue)
        self._queue.clear()
        if self.producer is not None and self.healthy and leftover:
            try:
                await asyncio.wait_for(self._send_all(leftover), timeout)
                for record in leftover:
                    if record[3] is not None:
                        self.journal.done(record[3])
                leftover = []
            except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                log.warning("usage_flush_failed", error=str(exc), events=len(leftover))
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.producer.stop(), timeout)
            except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                log.warning("producer_stop_failed", error=str(exc))
        self._to_spool(leftover + self._failed)
        self._failed = []
        self.spool.close()
        self.journal.close()

    async def check(self) -> None:
        """For /health: raises unless a broker answers right now."""
        if self.producer is None:
            raise ConnectionError("not connected to Kafka (usage events are going to the spool)")
        client = self.producer.client
        if not await client.force_metadata_update() or not client.cluster.brokers():
            raise ConnectionError("no Kafka broker answers")

    # -- background -----------------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        delay = 0.2
        while self.producer is None:
            producer = self._factory()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka_unreachable", error=str(exc), retry_in_s=delay)
                await producer.stop()
                await asyncio.sleep(delay)  # backoff between connection attempts
                delay = min(delay * 2, 5.0)
                continue
            self.producer = producer
            log.info("kafka_connected")
            await self._drain_once()  # a non-empty spool goes first
            if not self.spool.pending:
                self.healthy = True

    async def _send_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self._failed:
                    self._to_spool(self._failed)
                    self._failed = []
                if not self.healthy or self.producer is None:
                    batch = list(self._queue)
                    self._queue.clear()
                    self._to_spool(batch)
                    break
                if self._pending_records >= self._max_in_flight:
                    self._room.clear()
                    await self._room.wait()
                    continue
                await self._send_batches()

    async def _send_batches(self) -> None:
        """What is queued, up to MAX_BATCH_RECORDS, as one record batch per partition (more when
        a batch fills up), partitioned as send() would (murmur2 of the key)."""
        producer = self.producer
        assert producer is not None
        records = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH_RECORDS))]
        try:
            partitions = sorted(await producer.partitions_for(self.topic))
        except (KafkaError, OSError) as exc:
            self._mark_failed(exc)
            self._failed.extend(records)
            return
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(self._partitioner(record[0], partitions, partitions), []).append(record)
        groups = list(by_partition.items())
        for i, (partition, group) in enumerate(groups):
            try:
                while group:
                    builder, taken = _fill_batch(producer, group)
                    future = await producer.send_batch(builder, self.topic, partition=partition)
                    self._track(future, group[:taken])
                    group = group[taken:]
            except (KafkaError, OSError, ValueError) as exc:
                self._mark_failed(exc)
                self._failed.extend(group)  # this partition's unsent rest, and every later partition's
                for _partition, rest in groups[i + 1:]:
                    self._failed.extend(rest)
                return

    def _track(self, future: asyncio.Future, batch: list[Record]) -> None:  # type: ignore[type-arg]
        token = self._next_token
        self._next_token += 1
        self._pending[token] = batch
        self._pending_records += len(batch)
        future.add_done_callback(lambda f, t=token: self._on_ack(f, t))

    def _on_ack(self, future: asyncio.Future, token: int) -> None:  # type: ignore[type-arg]
        batch = self._pending.pop(token, None)
        if batch is None:
            return  # its producer was abandoned and the batch already handed to the spool
        self._pending_records -= len(batch)
        if not self._room.is_set() and self._pending_records < self._max_in_flight // 2:
            self._room.set()
        if future.cancelled() or future.exception() is not None:
            self._mark_failed(future.exception() if not future.cancelled() else asyncio.CancelledError())
            self._failed.extend(batch)
            if not self._wakeup.is_set():
                self._wakeup.set()
            return
        self.sent.inc(len(batch))
        for record in batch:
            if record[3] is not None:
                self.journal.done(record[3])

    def _mark_failed(self, exc: BaseException | None, *, producer_dead: bool = False) -> None:
        if self.healthy:
            log.warning("kafka_send_failed", error=str(exc))
        self.healthy = False
        if (producer_dead or isinstance(exc, PRODUCER_FATAL)) and self.producer is not None and not self._closing:
            log.warning("kafka_producer_replaced", error=repr(exc), unacknowledged=self._pending_records)
            dead, self.producer = self.producer, None  # meanwhile events go to the spool
            # A dead sender may never settle its futures: what it held goes to the spool now (a
            # copy Kafka did get is deduplicated downstream by request id).
            for batch in self._pending.values():
                self._failed.extend(batch)
            self._pending.clear()
            self._pending_records = 0
            self._room.set()
            self._wakeup.set()
            self._tasks.append(asyncio.create_task(self._reconnect(dead), name="usage-reconnect"))

    async def _reconnect(self, dead: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(dead.stop(), 10)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            log.warning("producer_stop_failed", error=str(exc))
        await self._connect_loop()

    def _to_spool(self, records: list[Record]) -> None:
        """Into the fsync'd spool; from then on the journal need not keep them."""
        if not records:
            return
        self.spool.append(r[1] for r in records)
        self.spooled.inc(len(records))
        for record in records:
            if record[3] is not None:
                self.journal.done(record[3])

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(self._drain_interval)  # the retry period of the spool
            if self._failed and not self._queue:
                self._to_spool(self._failed)
                self._failed = []
            if self.producer is not None and (self.spool.pending or not self.healthy):
                await self._drain_once()

    async def _drain_once(self) -> None:
        """Send every spooled event; release each file Kafka fully acknowledged."""
        async with self._drain_lock:
            await self._drain_files()

    async def _drain_files(self) -> None:
        for path in self.spool.claim():
            records = []
            for value in self.spool.read(path):
                try:
                    head = orjson.loads(value)
                    records.append((head["api_key_hash"].encode(), value, head["request_id"].encode(), None))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.error("spool_line_unreadable", file=str(path), line=value[:200].decode(errors="replace"))
            try:
                await self._send_all(records)
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                # No answer for a whole file means the producer's sender is gone: replace it.
                self._mark_failed(exc, producer_dead=isinstance(exc, asyncio.TimeoutError))
                return
            self.spool.release(path, len(records))
            self.sent.inc(len(records))
            log.info("spool_drained", file=path.name, events=len(records))
        self.healthy = True

    async def _send_all(self, records: list[Record]) -> None:
        producer = self.producer  # the same one throughout, even if a failure replaces it meanwhile
        assert producer is not None
        futures = [await producer.send(self.topic, value, key=key, headers=[("request_id", rid)]) for key, value, rid, _ in records]
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), SEND_ALL_TIMEOUT_S)
