"""Following a whole topic with no consumer group: every replica reads every partition from the
beginning and keeps reading, and `caught_up` is set once it has reached the end the topic had at
connect time. A dropped connection reconnects with capped backoff and reads from the start again
(what it feeds is a projection of the topic, so applying a message twice changes nothing)."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.backoff import Backoff
from shared.kafka import consumer as make_consumer, stalled_partitions, stop_clients
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0  # the backoff between attempts to (re)connect


class TopicFollower:
    """Subclasses say what a message does (`apply`) and what catching up means (`on_caught_up`)."""

    retry_event = "topic_follow_retry"

    def __init__(self, common: CommonSettings, topic: str, *, fetch_max_wait_ms: int | None = None,
                 poll_timeout_ms: int = 1000, poll_max_records: int = 1000, stall_check_s: float = 15.0) -> None:
        self.common = common
        self.base_topic = topic
        self.topic = common.topic(topic)
        self.caught_up = asyncio.Event()
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.poll_timeout_ms = poll_timeout_ms
        self.poll_max_records = poll_max_records
        self.stall_check_s = stall_check_s
        self._consumer: AIOKafkaConsumer | None = None  # while connected
        self._advanced = asyncio.Event()  # set (and replaced) after every batch read
        self._reading_to_end: asyncio.Task[bool] | None = None

    def apply(self, raw: bytes | None) -> None:
        raise NotImplementedError

    def on_caught_up(self) -> None:
        """Called once, when the follower first reaches the topic's end."""

    async def run(self) -> None:
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            overrides = {} if self.fetch_max_wait_ms is None else {"fetch_max_wait_ms": self.fetch_max_wait_ms}
            consumer = make_consumer(self.common, self.base_topic, group_id=None, **overrides)
            try:
                await consumer.start()
                assigned = await self._assignment(consumer)
                ends = await consumer.end_offsets(list(assigned))
                backoff.reset()
                await self._consume(consumer, ends)
            except (KafkaError, OSError) as exc:
                log.warning(self.retry_event, error=str(exc), retry_in_s=backoff.delay)
            finally:
                await stop_clients(consumer)
            await backoff.sleep()

    async def _assignment(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        """The topic's partitions, once metadata names them (polling with a deadline)."""
        deadline = asyncio.get_running_loop().time() + 30
        while not consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaError(f"topic {self.topic} has no partitions (does it exist?)")
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    self.apply(record.value)
        return consumer.assignment()

    async def _consume(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        await self._check_caught_up(consumer, ends)
        self._consumer = consumer
        loop = asyncio.get_running_loop()
        next_check, checked = loop.time() + self.stall_check_s, {}
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.poll_max_records)
                for records in batches.values():
                    for record in records:
                        self.apply(record.value)
                self._advanced.set()
                self._advanced = asyncio.Event()
                if not self.caught_up.is_set():
                    await self._check_caught_up(consumer, ends)
                if loop.time() >= next_check:
                    next_check, checked = loop.time() + self.stall_check_s, await self._check_not_stalled(consumer, checked)
        finally:
            self._consumer = None

    async def _check_not_stalled(self, consumer: AIOKafkaConsumer, checked: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Messages waiting on a partition whose position has not moved since the last check: the
        fetcher is stuck (aiokafka's fetcher can stop without an error after a broker restart; the
        ledger has the same guard). Reconnect rather than serve a key table or budget totals that
        no longer change. A wait past 10 s is a TimeoutError, which reconnects as well."""
        ends = await asyncio.wait_for(consumer.end_offsets(list(consumer.assignment())), 10)
        positions = {tp: await asyncio.wait_for(consumer.position(tp), 10) for tp in ends}
        stalled = stalled_partitions(checked, positions, ends)
        if stalled:
            raise FollowerStalled(f"{sum(stalled.values())} messages waiting on {self.topic} but none read for {self.stall_check_s}s")
        return positions

    async def read_to_end(self, timeout: float) -> bool:
        """Apply everything the topic holds right now (a change just made through another replica
        or worker); True once done, False when not connected or not done within `timeout`.
        Concurrent callers share one round trip to the broker."""
        if self._reading_to_end is None or self._reading_to_end.done():
            self._reading_to_end = asyncio.create_task(self._read_to_end(timeout))
        return await asyncio.shield(self._reading_to_end)

    async def _read_to_end(self, timeout: float) -> bool:
        consumer = self._consumer
        if consumer is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                ends = await consumer.end_offsets(list(consumer.assignment()))
                while True:
                    advanced = self._advanced
                    if await self._reached(consumer, ends):
                        return True
                    await advanced.wait()
        except (TimeoutError, KafkaError, OSError):
            return False

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _check_caught_up(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        if not await self._reached(consumer, ends):
            return
        if not self.caught_up.is_set():
            self.caught_up.set()
            self.on_caught_up()


class FollowerStalled(KafkaError):
    """Messages wait but none are read: the follower reconnects (run() retries Kafka errors)."""
