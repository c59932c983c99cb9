"""Usage events to Kafka, off the request path, never lost.

`emit()` is synchronous and cheap: it writes the event to the journal (see journal.py: what keeps an
answered call's event through a SIGKILL), appends it to a bounded in-memory queue and wakes the
sender.
The sender (sender.py) hands events to the idempotent producer without waiting for acks, as whole record
batches per partition (what has queued up since its last turn: aiokafka's per-message send()
costs about three times the CPU of appending to a batch); a failed batch goes to the spool.
While Kafka is unreachable (not yet connected, or a send just failed) events go straight to the
spool; the drain loop retries the spool every `drain_interval_s` and, when a
whole file is acknowledged, marks Kafka healthy again. On start-up a non-empty spool is drained
first. A full queue spills to the spool synchronously: back-pressure, not loss.

The spool drain sets aside what Kafka refuses for a reason of the record's own and goes on
(spool_drain.py). While the journal or spool cannot be written (disk full, read-only, I/O error)
`refusal()` says why (write_refusal.py), so that the relay answers 503 before it pays an upstream;
events that could not be written wait in memory and are retried with a capped backoff, and a successful write probe
ends the refusal. `check()` (the /health "kafka" check) fails while the usage log cannot be
written, while no broker answers, and while spooled events wait without the spool advancing for
`stall_after_s`. Nothing here raises into the request path, and no background task ends on OSError."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId

from services.proxy.usage_log.batching import MAX_BATCH_RECORDS, Record
from services.proxy.usage_log.disk import UsageDisk
from services.proxy.usage_log.journal import Journal
from services.proxy.usage_log.record import encode_usage
from services.proxy.usage_log.set_aside import SetAside
from services.proxy.usage_log.spool import Spool
from services.proxy.usage_log.sender import BatchSender
from services.proxy.usage_log.spool_drain import RECORD_ERRORS, drain_file
from services.proxy.usage_log.write_refusal import WriteRefusal
from shared.backoff import Backoff
from shared.events import UsageEvent
from shared.health import kafka_check
from shared.metrics import Registry

log = structlog.get_logger(__name__)

SEND_ALL_TIMEOUT_S = 30.0  # a spool file or shutdown flush that gets no answer in this long failed
CONNECT_RETRY_FIRST_S, CONNECT_RETRY_MAX_S = 0.2, 5.0  # the backoff between attempts to reach a broker

# aiokafka's sender task dies on these and every later send fails the same way (e.g. batches that
# expired while the broker was down leave a gap in a partition's sequence numbers): the producer is
# replaced by a new one, with a new producer id.
PRODUCER_FATAL = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)


class UsageLogUnwritable(OSError):
    """The journal or spool cannot be written: new calls are refused until it can."""


class SpoolStalled(RuntimeError):
    """Spooled usage events wait and the spool does not advance although a broker answers."""


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
        stall_after_s: float = 60.0,
        message_limit: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        self.topic = topic
        self._factory = producer_factory
        self.spool = spool
        self.journal = journal
        self.set_aside = SetAside(spool.directory)
        self.producer: AIOKafkaProducer | None = None
        self.healthy = False  # connected and the last send succeeded
        self.limit: int | None = None  # the topic's max.message.bytes, once the broker said
        self._message_limit = message_limit
        self._queue: collections.deque[Record] = collections.deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._failed: list[Record] = []
        self._drain_interval = drain_interval_s
        self._stall_after = stall_after_s
        self._progress_at = time.monotonic()  # the spool last advanced, emptied or began to wait
        self._drain_error: str | None = None
        self.writes = WriteRefusal(registry, drain_interval_s)  # refused disk writes: why calls are refused
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._drain_lock = asyncio.Lock()
        self._careful: dict[Path, int] = {}  # spool files whose next lines go one at a time (spool_drain.py)
        self.sent = registry.counter("proxy_usage_events_sent_total", "Usage events acknowledged by Kafka")
        self.spooled = registry.counter("proxy_usage_events_spooled_total", "Usage events written to the spool")
        self.disk = UsageDisk(journal, spool, self.writes, self.spooled, first_waiting=self._progressed)
        self.sender = BatchSender(topic, max_in_flight=max_in_flight, spool=self.disk.to_spool, acked=self._acked,
                                  send_failed=self._send_failed, ack_failed=self._ack_failed)
        self.set_aside_total = registry.counter(
            "proxy_usage_events_set_aside_total", "Spooled usage events Kafka refuses for a reason of their own, set aside")
        registry.gauge("proxy_usage_queue_length", "Usage events waiting in memory", callback=lambda: float(len(self._queue)))
        registry.gauge("proxy_spool_pending", "Usage events in the spool waiting for Kafka", callback=lambda: float(self.spool.pending))
        registry.gauge("proxy_usage_held_in_memory", "Usage events neither sent nor written to disk yet",
                       callback=lambda: float(len(self.disk.held)))

    # -- request path ---------------------------------------------------------------------------

    def emit(self, event: UsageEvent) -> None:
        """Journal, queue and wake the sender. Never raises: an event the disk refuses waits in
        memory, and `refusal()` turns new calls away until the disk takes writes again."""
        try:
            value = encode_usage(event)
        except (ValueError, TypeError) as exc:  # the answer is sent; this event cannot be recorded at all
            log.error("usage_event_unencodable", request_id=event.request_id, error=f"{type(exc).__name__}: {exc}")
            return
        try:
            segment: int | None = self.journal.append(value)
        except OSError as exc:
            self.writes.failed(exc)
            segment = None
        record = (event.api_key_hash.encode(), value, event.request_id.encode(), segment)
        if len(self._queue) >= self._queue_size:
            self.disk.to_spool([record])
            return
        self._queue.append(record)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def refusal(self) -> str | None:
        """Why new calls must be refused before their upstream is paid (their usage could not be
        written down), or None."""
        return self.writes.reason

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self.disk.adopt_leftovers()
        except OSError as exc:
            self.writes.failed(exc)  # the segments stay on disk; the drain loop tries again
        self._progressed()
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
        self.writes.reason = None  # a last attempt, whatever failed before
        held, self.disk.held = self.disk.held, []
        self.disk.to_spool(leftover + self._failed + held)
        self._failed = []
        if self.disk.held:
            # Those with a journal line are recovered by the next start; the others are lost.
            lost = [r[2].decode() for r in self.disk.held if r[3] is None]
            log.error("usage_events_not_saved", error=self.writes.reason, in_journal=len(self.disk.held) - len(lost),
                      lost=len(lost), lost_request_ids=lost[:100])
        self.spool.close()
        self.journal.close()

    async def check(self) -> None:
        """For /health: raises while the usage log cannot be written, while no broker answers,
        and while spooled events wait and the spool has not advanced for `stall_after_s`."""
        if self.writes.reason is not None:
            raise UsageLogUnwritable(self.writes.reason)
        if self.producer is None:
            self._progressed()  # a stall is only counted while a broker answers
            raise ConnectionError("not connected to Kafka (usage events are going to the spool)")
        try:
            await kafka_check(self.producer)()
        except (KafkaError, OSError):
            self._progressed()
            raise
        idle = self.stalled_for()
        if idle is not None:
            cause = f"; last attempt: {self._drain_error}" if self._drain_error else ""
            raise SpoolStalled(f"{self.spool.pending} usage events wait in the spool and none was sent or set aside "
                               f"for {idle:.0f}s although Kafka answers{cause}")

    def stalled_for(self) -> float | None:
        """Seconds the spool has had events waiting without advancing, once that reaches
        `stall_after_s`; None otherwise."""
        if not self.spool.pending:
            return None
        idle = time.monotonic() - self._progress_at
        return idle if idle >= self._stall_after else None

    # -- background -----------------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        backoff = Backoff(CONNECT_RETRY_FIRST_S, CONNECT_RETRY_MAX_S)
        while self.producer is None:
            producer = self._factory()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka_unreachable", error=str(exc), retry_in_s=backoff.delay)
                await producer.stop()
                await backoff.sleep()
                continue
            self.producer = producer
            self._progressed()  # a broker answers from now on
            log.info("kafka_connected")
            await self._learn_limit()  # before the spool drains: records over it are set aside unsent
            try:
                await self._drain_once()  # a non-empty spool goes first
            except OSError as exc:
                self.writes.failed(exc)
            if not self.spool.pending:
                self.healthy = True

    async def _learn_limit(self) -> None:
        if self._message_limit is None:
            return
        try:
            async with self._drain_lock:  # the drain waits for it
                self.limit = await asyncio.wait_for(self._message_limit(), 5)
        except Exception as exc:  # noqa: BLE001 - an optional look-up: without it the broker's refusal is the check
            log.warning("topic_message_limit_unknown", topic=self.topic, error=f"{type(exc).__name__}: {exc}")
            return
        log.info("topic_message_limit", topic=self.topic, max_message_bytes=self.limit)

    async def _send_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self._failed:
                    failed, self._failed = self._failed, []
                    self.disk.to_spool(failed)
                producer = self.producer
                if not self.healthy or producer is None:
                    batch = list(self._queue)
                    self._queue.clear()
                    self.disk.to_spool(batch)
                    break
                if self.sender.full:
                    await self.sender.wait_for_room()
                    continue
                records = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH_RECORDS))]
                await self.sender.send(producer, records, self.limit)

    def _acked(self, batch: list[Record]) -> None:
        self.sent.inc(len(batch))
        for record in batch:
            if record[3] is not None:
                self.journal.done(record[3])

    def _send_failed(self, exc: BaseException, records: list[Record]) -> None:
        self._mark_failed(exc)
        self._failed.extend(records)

    def _ack_failed(self, exc: BaseException, batch: list[Record]) -> None:
        # A batch the broker refused as too large leaves a gap in the partition's sequence:
        # the producer is replaced, and the spool's drain sets aside the record at fault.
        self._mark_failed(exc, producer_dead=isinstance(exc, RECORD_ERRORS))
        self._failed.extend(batch)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _mark_failed(self, exc: BaseException | None, *, producer_dead: bool = False) -> None:
        if self.healthy:
            log.warning("kafka_send_failed", error=str(exc))
        self.healthy = False
        if (producer_dead or isinstance(exc, PRODUCER_FATAL)) and self.producer is not None and not self._closing:
            log.warning("kafka_producer_replaced", error=repr(exc), unacknowledged=self.sender.pending_records)
            dead, self.producer = self.producer, None  # meanwhile events go to the spool
            # What the dead producer held goes to the spool now (a copy Kafka did get is
            # deduplicated downstream by request id).
            self._failed.extend(self.sender.abandon())
            self._wakeup.set()
            self._tasks.append(asyncio.create_task(self._reconnect(dead), name="usage-reconnect"))

    async def _reconnect(self, dead: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(dead.stop(), 10)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            log.warning("producer_stop_failed", error=str(exc))
        await self._connect_loop()

    def _progressed(self) -> None:
        """The spool advanced, emptied or began to wait: the stall clock starts again."""
        self._progress_at = time.monotonic()

    def _recover_writes(self) -> None:
        def to_kafka(records: list[Record]) -> None:
            self._queue.extendleft(reversed(records))
            self._wakeup.set()

        self.disk.recover(to_kafka if self.healthy and self.producer is not None else None)

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(self._drain_interval)  # the retry period of the spool
            try:
                if self.writes.due():
                    self._recover_writes()
                if self._failed and not self._queue:
                    failed, self._failed = self._failed, []
                    self.disk.to_spool(failed)
                if self.producer is not None and (self.spool.pending or not self.healthy):
                    await self._drain_once()
            except OSError as exc:  # the disk (spool files, marker, set-aside file): refused, retried
                self.writes.failed(exc)

    async def _drain_once(self) -> None:
        """Send every spooled event; release each file whose every line is done."""
        async with self._drain_lock:
            await self._drain_files()

    async def _drain_files(self) -> None:
        producer = self.producer
        assert producer is not None
        for path in self.spool.claim():
            outcome = await drain_file(producer, self.topic, self.spool, self.set_aside, path, limit=self.limit,
                                       timeout=SEND_ALL_TIMEOUT_S, careful_until=self._careful.get(path, 0))
            if outcome.careful_until:
                self._careful[path] = outcome.careful_until
            self.sent.inc(outcome.sent)
            self.set_aside_total.inc(outcome.set_aside)
            if outcome.sent or outcome.set_aside:
                self._progressed()
            if outcome.error is not None:
                self._drain_error = f"{type(outcome.error).__name__}: {outcome.error}"[:300]
                # No answer in time means the producer's sender is gone, and a refused batch leaves
                # a gap in its sequence: replace it.
                dead = outcome.producer_broken or isinstance(outcome.error, asyncio.TimeoutError)
                self._mark_failed(outcome.error, producer_dead=dead)
                return
            self._careful.pop(path, None)
            log.info("spool_drained", file=path.name, events=outcome.sent, set_aside=outcome.set_aside)
        self._drain_error = None
        self.healthy = True

    async def _send_all(self, records: list[Record]) -> None:
        producer = self.producer  # the same one throughout, even if a failure replaces it meanwhile
        assert producer is not None
        futures = [await producer.send(self.topic, value, key=key, headers=[("request_id", rid)]) for key, value, rid, _ in records]
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), SEND_ALL_TIMEOUT_S)
