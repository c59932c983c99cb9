"""Helpers shared by the ledger's integration tests (no tests here): hand-built priced events
with exact Decimal costs, producing them, running the ledger in-process, and polling Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from services.ledger.consumer import Ledger, topics_for
from services.ledger.metrics import LedgerMetrics
from services.ledger.store import LedgerStore, make_pool
from shared import kafka
from shared.events import CostBreakdown, EntityChanged, Event, PricedUsageEvent, SpendReset, TokenUsage, UsageEvent, encode
from shared.metrics import Registry
from shared.settings import CommonSettings
from shared.topics import ENTITIES, PRICED

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def key_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def priced(
    *, request_id: str | None = None, key: str = "sk-a", cost: str = "0.000051", at: datetime = T0,
    team: str | None = "team-a", user: str | None = "user-a", end_user: str | None = "cust-a",
    tags: Iterable[str] = ("tag-a",), model: str = "openai/gpt-4o-mini", status: str = "success",
    prompt: int = 20, completion: int = 80, quoted: str | None = None, **usage_fields: Any,
) -> PricedUsageEvent:
    usage = UsageEvent(
        request_id=request_id or str(uuid.uuid4()), call_type="acompletion", status=status,  # type: ignore[arg-type]
        start_time=at, end_time=at + timedelta(milliseconds=250), api_key_hash=key_hash(key),
        user_id=user, team_id=team, end_user=end_user, model_group="gpt-4o-mini", model=model,
        custom_llm_provider="openai", usage=TokenUsage(prompt_tokens=prompt, completion_tokens=completion),
        request_tags=list(tags), quoted_cost=Decimal(quoted) if quoted is not None else Decimal(cost), **usage_fields,
    )
    return PricedUsageEvent(usage_event=usage, cost=CostBreakdown(total=Decimal(cost)),
                            priced_model="gpt-4o-mini", catalog_version="test-1")


def key_changed(key: str, *, at: datetime, **state: Any) -> EntityChanged:
    return EntityChanged(entity_type="key", entity_id=key_hash(key), state=state, occurred_at=at)


def spend_reset(at: datetime) -> SpendReset:
    return SpendReset(occurred_at=at)


async def produce(settings: CommonSettings, events: Iterable[Event]) -> None:
    """Send events to their topics (priced: keyed by api key hash; admin: by entity)."""
    producer = kafka.idempotent_producer(settings)
    await producer.start()
    try:
        futures = []
        for event in events:
            if isinstance(event, PricedUsageEvent):
                topic, key = PRICED, event.usage_event.api_key_hash
            elif isinstance(event, EntityChanged):
                topic, key = ENTITIES, f"{event.entity_type}:{event.entity_id}"
            else:
                topic, key = ENTITIES, "spend_reset"
            futures.append(await producer.send(settings.topic(topic), encode(event), key=key.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_raw(settings: CommonSettings, topic: str, payloads: Iterable[bytes], key: bytes = b"k") -> None:
    producer = kafka.idempotent_producer(settings)
    await producer.start()
    try:
        for payload in payloads:
            await producer.send_and_wait(settings.topic(topic), payload, key=key)
    finally:
        await producer.stop()


_RUNNING: list[InProcessLedger] = []


class InProcessLedger:
    """The ledger's consumer loop run as a task in the test's event loop."""

    def __init__(self, settings: CommonSettings, *, schema: str = "public", batch_max_events: int = 500, store_bodies: bool = False) -> None:
        self.settings = settings
        self.schema = schema
        self.batch_max_events = batch_max_events
        self.store_bodies = store_bodies
        self.metrics = LedgerMetrics(Registry())

    async def __aenter__(self) -> InProcessLedger:
        topics, priced_topic, dlq, totals = topics_for(self.settings.topic)
        self.pool = make_pool(self.settings.database_url, self.schema, 2)
        await self.pool.open()
        self.producer = kafka.idempotent_producer(self.settings)
        self.consumer = kafka.consumer(self.settings, group_id=None)
        await self.producer.start()
        await self.consumer.start()
        self.ledger = Ledger(
            consumer=self.consumer, producer=self.producer,
            store=LedgerStore(self.pool, "tally-ledger", store_bodies=self.store_bodies), metrics=self.metrics,
            topics=topics, priced_topic=priced_topic, dlq_topic=dlq, totals_topic=totals,
            batch_max_events=self.batch_max_events, batch_max_ms=50, store_bodies=self.store_bodies, retry_max_delay_s=1.0,
        )
        self.task = asyncio.create_task(self.ledger.run(self.settings.kafka_bootstrap_servers))
        _RUNNING.append(self)
        return self

    def check(self) -> None:
        """Raise the loop's own error if it died (so a test fails with the cause, not a timeout)."""
        if self.task.done() and not self.task.cancelled() and self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]

    async def __aexit__(self, *exc: object) -> None:
        _RUNNING.remove(self)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()
        await self.pool.close()


async def poll(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `condition` until true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        for ledger in _RUNNING:
            ledger.check()
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval, not a wait for the condition itself


async def query(database_url: str, text: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(text, params)
        return await cur.fetchall()


async def count_logs(database_url: str) -> int:
    return (await query(database_url, 'SELECT count(*) FROM "LiteLLM_SpendLogs"'))[0][0]


async def wait_for_logs(database_url: str, expected: int, timeout: float = 30.0) -> None:
    async def enough() -> bool:
        return await count_logs(database_url) >= expected

    await poll(enough, timeout, f"{expected} spend log rows")
