"""Kafka helpers: the idempotent producer, consumers, and topic creation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.backoff import Backoff
from shared.settings import CommonSettings
from shared.supervise import cancelled_from_outside
from shared.topics import TopicSpec, topic_specs

log = structlog.get_logger(__name__)


def idempotent_producer(settings: CommonSettings, **overrides: object) -> AIOKafkaProducer:
    """acks=all + idempotence: a retried send is never written twice to a partition."""
    options: dict[str, object] = dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


def transactional_producer(settings: CommonSettings, transactional_id: str) -> AIOKafkaProducer:
    return idempotent_producer(settings, transactional_id=transactional_id, linger_ms=2)


def consumer(settings: CommonSettings, *topics: str, group_id: str | None, **overrides: object) -> AIOKafkaConsumer:
    """A read_committed consumer that never auto-commits: callers decide where offsets live."""
    options: dict[str, object] = dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=2000,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    options.update(overrides)
    return AIOKafkaConsumer(*[settings.topic(t) for t in topics], **options)


def stalled_partitions(previous: Mapping[TopicPartition, int], positions: Mapping[TopicPartition, int],
                       ends: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The partitions with messages waiting whose position has not moved since the previous check,
    and how many wait on each: a consumer that checks this now and then notices a fetcher that
    stopped fetching without an error (guarded against after broker restarts)."""
    return {tp: end - positions[tp] for tp, end in ends.items() if positions[tp] < end and previous.get(tp) == positions[tp]}


async def stop_clients(*clients: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop every client, each whatever the others do. aiokafka's consumer.stop() can raise the
    CancelledError of a fetch it cancels while that fetch waits out a retry backoff (a broker
    just went away; aio-libs/aiokafka#647): not a cancellation of ours, and it must neither skip
    the clients after it nor end the caller's worker. Our own cancellation still propagates."""
    cancelled = False
    for client in clients:
        try:
            await client.stop()
        except asyncio.CancelledError:
            if cancelled_from_outside():
                cancelled = True
            else:
                log.warning("kafka_client_stop_raised", client=type(client).__name__, error="CancelledError")
        except Exception as exc:  # noqa: BLE001 - the client is dropped either way
            log.warning("kafka_client_stop_raised", client=type(client).__name__, error=f"{type(exc).__name__}: {exc}")
    if cancelled:
        raise asyncio.CancelledError


async def ensure_topics(settings: CommonSettings, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left alone.
    Each is replicated on up to three brokers: one alone, three in a cluster (docs/operations.md)."""
    specs = list(specs if specs is not None else topic_specs())
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if settings.topic(s.name) not in existing]
        if not wanted:
            return []
        replication_factor = min(3, len((await admin.describe_cluster())["brokers"]))
        new = [
            NewTopic(settings.topic(s.name), num_partitions=s.partitions, replication_factor=replication_factor, topic_configs=s.config)
            for s in wanted
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another process created them first
        return [t.name for t in new]
    finally:
        await admin.close()


async def wait_for_broker(settings: CommonSettings, timeout: float = 60.0) -> None:
    """Poll the broker's metadata until it answers, with backoff, up to `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    backoff = Backoff(0.2, 2.0)
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except KafkaError as exc:
            if loop.time() + backoff.delay > deadline:
                raise TimeoutError(f"Kafka at {settings.kafka_bootstrap_servers} did not answer in {timeout}s") from exc
        finally:
            await admin.close()
        await backoff.sleep()
