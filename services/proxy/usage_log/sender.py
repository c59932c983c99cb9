"""The usage log's live path to Kafka: records from the emitter's queue, handed to the idempotent
producer as whole record batches per partition (more when a batch fills up), partitioned as
send() would (murmur2 of the key), without waiting for acks; each batch is tracked until the
broker acknowledges or refuses it.

What cannot go this way is handed back to the emitter, which owns the spool and the producer's
lifecycle: records over the topic's limit (`spool`), records a failed send left unsent
(`send_failed`), batches the broker refused (`ack_failed`), and, when the producer is replaced,
every batch still unacknowledged (`abandon`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.proxy.usage_log.batching import RECORD_OVERHEAD, CachedPartitioner, Record, fill_batch
from services.proxy.usage_log.spool_drain import batch_size

log = structlog.get_logger(__name__)


class BatchSender:
    def __init__(self, topic: str, *, max_in_flight: int, spool: Callable[[list[Record]], object],
                 acked: Callable[[list[Record]], None], send_failed: Callable[[BaseException, list[Record]], None],
                 ack_failed: Callable[[BaseException, list[Record]], None]) -> None:
        self.topic = topic
        self._spool = spool
        self._acked = acked
        self._send_failed = send_failed
        self._ack_failed = ack_failed
        # Sent batches, not yet acknowledged: if their producer is abandoned, they go to the spool.
        self._pending: dict[int, list[Record]] = {}
        self.pending_records = 0
        self._partitioner = CachedPartitioner()
        self._next_token = 0
        self._max_in_flight = max_in_flight
        self._room = asyncio.Event()
        self._room.set()

    @property
    def full(self) -> bool:
        """As many records wait for their acks as may: the sender waits for room."""
        return self.pending_records >= self._max_in_flight

    async def wait_for_room(self) -> None:
        """Until acks bring the records in flight below half the limit (or the producer is abandoned)."""
        self._room.clear()
        await self._room.wait()

    async def send(self, producer: AIOKafkaProducer, records: list[Record], limit: int | None) -> None:
        """`records` as one record batch per partition; `limit` is the topic's max.message.bytes
        when known."""
        if limit is not None:
            records = self._without_oversize(records, limit)
        try:
            partitions = sorted(await producer.partitions_for(self.topic))
        except (KafkaError, OSError) as exc:
            self._send_failed(exc, records)
            return
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(self._partitioner(record[0], partitions, partitions), []).append(record)
        groups = list(by_partition.items())
        for i, (partition, group) in enumerate(groups):
            try:
                while group:
                    try:
                        builder, taken = fill_batch(producer, group, limit)
                    except ValueError as exc:  # no batch holds it: the spool drain sets it aside
                        log.warning("usage_event_unbatchable", error=str(exc))
                        self._spool(group[:1])
                        group = group[1:]
                        continue
                    future = await producer.send_batch(builder, self.topic, partition=partition)
                    self._track(future, group[:taken])
                    group = group[taken:]
            except (KafkaError, OSError) as exc:
                # This partition's unsent rest, and every later partition's.
                self._send_failed(exc, group + [record for _partition, rest in groups[i + 1:] for record in rest])
                return

    def abandon(self) -> list[Record]:
        """The producer is being replaced, and a dead sender may never settle its futures: every
        batch still unacknowledged, handed back (an ack that comes later is ignored)."""
        records = [record for batch in self._pending.values() for record in batch]
        self._pending.clear()
        self.pending_records = 0
        self._room.set()
        return records

    def _without_oversize(self, records: list[Record], limit: int) -> list[Record]:
        """Records over the topic's limit go to the spool, whose drain sets them aside: sent, the
        broker would refuse the batch holding them and break the partition's sequence."""
        over = [r for r in records if len(r[0]) + len(r[1]) + len(r[2]) + RECORD_OVERHEAD > limit
                and batch_size(r[0], r[1], r[2]) > limit]
        if not over:
            return records
        log.warning("usage_events_over_topic_limit", events=len(over), max_message_bytes=limit,
                    request_ids=[r[2].decode() for r in over[:10]])
        self._spool(over)
        refused = {id(r) for r in over}
        return [r for r in records if id(r) not in refused]

    def _track(self, future: asyncio.Future, batch: list[Record]) -> None:  # type: ignore[type-arg]
        token = self._next_token
        self._next_token += 1
        self._pending[token] = batch
        self.pending_records += len(batch)
        future.add_done_callback(lambda f, t=token: self._on_ack(f, t))

    def _on_ack(self, future: asyncio.Future, token: int) -> None:  # type: ignore[type-arg]
        batch = self._pending.pop(token, None)
        if batch is None:
            return  # its producer was abandoned and the batch already handed to the spool
        self.pending_records -= len(batch)
        if not self._room.is_set() and self.pending_records < self._max_in_flight // 2:
            self._room.set()
        if future.cancelled() or future.exception() is not None:
            self._ack_failed(future.exception() if not future.cancelled() else asyncio.CancelledError(), batch)
            return
        self._acked(batch)
