"""The monitor task of a stage (pricer, ledger): every few seconds, the end offsets of its input
and the offsets it has committed, read apart from the worker, into StageProgress and the lag
gauge. The worker may be restarting, stuck on a record or gone: the numbers stay true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import psycopg
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from psycopg_pool import PoolTimeout

from shared import kafka
from shared.health import Partition, StageProgress
from shared.metrics import Metric
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

# (topic, partition) -> the next offset the stage will process, as it has committed it.
CommittedReader = Callable[[], Awaitable[dict[Partition, int]]]
MEASURE_ERRORS = (KafkaError, psycopg.Error, PoolTimeout, OSError, asyncio.TimeoutError)


async def monitor(settings: CommonSettings, topics: Sequence[str], read_committed: CommittedReader,
                  progress: StageProgress, lag: Metric, interval_s: float) -> None:
    """Measure until cancelled. A measurement that fails keeps the last one (and is logged):
    /health's own Kafka and Postgres checks say what is down."""
    consumer = kafka.consumer(settings, group_id=None, max_partition_fetch_bytes=256 * 1024, fetch_max_bytes=1024 * 1024)
    started = False
    try:
        while True:
            try:
                if not started:
                    await consumer.start()
                    started = True
                await asyncio.wait_for(measure(consumer, topics, read_committed, progress, lag), timeout=max(10.0, interval_s))
            except MEASURE_ERRORS as exc:
                log.warning("stage_progress_unmeasured", stage=progress.stage, error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(interval_s)  # the measuring period
    finally:
        if started:
            await kafka.stop_clients(consumer)


async def measure(consumer, topics: Sequence[str], read_committed: CommittedReader,  # noqa: ANN001
                  progress: StageProgress, lag: Metric) -> None:
    partitions = []
    for topic in topics:
        # Waits for the topic's metadata (a consumer with no subscription has none yet); raises
        # UnknownTopicOrPartitionError if it does not exist.
        found = await consumer._client._wait_on_metadata(topic)  # noqa: SLF001
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    committed = await read_committed()
    loop = asyncio.get_running_loop()
    # Nothing committed yet: the stage starts from the beginning of the partition.
    positions = {tp: max(committed.get((tp.topic, tp.partition), 0), starts[tp]) for tp in partitions}
    # A gap that has not moved may hold no record at all: the marker ending a transaction (the
    # pricer writes priced.v1 in transactions) or an aborted transaction's records take offsets
    # that no reader ever sees. Read from the committed offset to tell.
    unmoved = [tp for tp in partitions if positions[tp] < ends[tp]
               and progress.committed.get((tp.topic, tp.partition)) == positions[tp]]
    for tp, readable in (await records_between(consumer, unmoved, positions, ends)).items():
        if not readable:
            positions[tp] = ends[tp]
    lag.set(float(progress.observe({(tp.topic, tp.partition): o for tp, o in positions.items()},
                                   {(tp.topic, tp.partition): ends[tp] for tp in partitions}, loop.time(), time.time())))


async def records_between(consumer, partitions: list[TopicPartition], starts: dict[TopicPartition, int],  # noqa: ANN001
                          ends: dict[TopicPartition, int], timeout_s: float = 2.0) -> dict[TopicPartition, bool]:
    """For each partition, whether a record a read_committed reader would see lies in [start, end).
    A partition not settled within the timeout counts as holding one (the cautious answer)."""
    found: dict[TopicPartition, bool] = {}
    if not partitions:
        return found
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(found) < len(partitions) and loop.time() < deadline:
        open_ = [tp for tp in partitions if tp not in found]
        batch = await consumer.getmany(*open_, timeout_ms=200, max_records=len(open_))
        for tp, messages in batch.items():
            if any(m.offset < ends[tp] for m in messages):
                found[tp] = True
        for tp in open_:
            if tp not in found and await consumer.position(tp) >= ends[tp]:
                found[tp] = False  # read up to the end and nothing was there
    return {tp: found.get(tp, True) for tp in partitions}
