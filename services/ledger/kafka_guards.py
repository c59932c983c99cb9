"""Bounded waits on the aiokafka calls that can hang after a broker restart: the stall check,
a partition's position, the producer's acknowledgement. Each turns a hang into a LedgerError;
the supervisor then restarts the worker with new clients, resuming from the offsets stored in
Postgres, so nothing is lost or repeated."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.ledger.errors import ConsumerStalled, KafkaAckTimeout
from shared.kafka import stalled_partitions

# After a broker restart aiokafka's sender can die without failing the futures it holds; a wait
# bounded by this turns that hang into an error.
KAFKA_ACK_TIMEOUT_S = 30.0
STALL_CHECK_S = 15.0
POSITION_TIMEOUT_S = 10.0


async def acknowledged(delivery: Awaitable[object], timeout: float = KAFKA_ACK_TIMEOUT_S) -> object:
    try:
        return await asyncio.wait_for(delivery, timeout)
    except asyncio.TimeoutError as exc:
        raise KafkaAckTimeout(f"Kafka did not acknowledge within {timeout}s") from exc


async def check_progress(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition],
                         checked: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Run every STALL_CHECK_S: a partition with messages waiting whose position has not moved
    since the previous check (`checked`) is stalled. After a broker restart aiokafka's fetcher
    can stay disconnected for good, and a fetcher that stopped fetching some partitions while
    still reading others would hide behind their progress. Returns the positions to compare
    with next time."""
    try:
        ends = await asyncio.wait_for(consumer.end_offsets(list(partitions)), 10)
    except (asyncio.TimeoutError, KafkaError) as exc:
        raise ConsumerStalled(f"cannot read the topics' end offsets: {exc!r}") from exc
    positions = {tp: await position(consumer, tp) for tp in ends}
    stalled = stalled_partitions(checked, positions, ends)
    if stalled:
        raise ConsumerStalled(f"{sum(stalled.values())} messages waiting on {len(stalled)} partition(s) but none read"
                              f" for {STALL_CHECK_S}s: {sorted(f'{tp.topic}[{tp.partition}]' for tp in stalled)}")
    return positions


async def position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The consumer's position, bounded: aiokafka's `position()` waits, without end, for a
    partition whose position must be reset; were that reset to hang, the read loop, which asks for
    positions every round, would stop with no stall check to notice. A position unknown for
    POSITION_TIMEOUT_S is a stall."""
    try:
        return await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_S)
    except asyncio.TimeoutError as exc:
        raise ConsumerStalled(f"the position of {tp.topic}[{tp.partition}] stayed unknown for {POSITION_TIMEOUT_S}s") from exc
