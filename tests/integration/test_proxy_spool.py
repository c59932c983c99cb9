"""With Kafka unreachable usage events wait in the spool on disk and reach Kafka when it returns,
or when the proxy restarts with a reachable broker.

The spool tests drive the proxy's UsageEmitter directly: the whole app cannot start with Kafka
down today, because the admin routes' entities producer (services/proxy/admin/publisher.py)
connects at start-up."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from datetime import datetime, timezone

from services.proxy.app import EMITTER
from services.proxy.usage_log.emitter import UsageEmitter
from services.proxy.usage_log.journal import Journal
from services.proxy.usage_log.spool import Spool
from shared import topics
from shared.events import UsageEvent
from shared.kafka import idempotent_producer
from shared.keys import hash_key
from shared.metrics import Registry
from shared.settings import CommonSettings
from tests.fixtures.polling import eventually_async
from tests.integration.test_proxy_relay import (  # noqa: F401 - fixtures
    LLAMA3_COST, MASTER, ProxyFactory, base_url, event_for, kafka, start_proxy, upstream,
)

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def chat(proxy_url: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "user": "palantir"}) as response:
            assert response.status == 200
            assert response.headers["x-litellm-response-cost"] == "0.0000074"
            return response.headers["x-litellm-call-id"]


@pytest.fixture
async def forwarder(kafka_bootstrap: str) -> AsyncIterator[Callable[[int], asyncio.Future]]:
    """Starts a TCP relay port -> the real broker on demand: "Kafka comes back" on that port."""
    host, _, port = kafka_bootstrap.rpartition(":")
    servers: list[asyncio.Server] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_reader, broker_writer), pipe(broker_reader, client_writer))

    async def open_on(listen_port: int) -> None:
        servers.append(await asyncio.start_server(handle, "127.0.0.1", listen_port))

    yield open_on
    for server in servers:
        server.close()


def make_emitter(common: CommonSettings, spool_dir: Path) -> UsageEmitter:
    """The proxy's emitter exactly as app.py builds it, on this test's topic and spool directory."""
    return UsageEmitter(common.topic(topics.USAGE), lambda: idempotent_producer(common, request_timeout_ms=10000),
                        Spool(spool_dir), Registry(), journal=Journal(spool_dir), drain_interval_s=0.2)


def unreachable(common: CommonSettings, port: int | None = None) -> CommonSettings:
    return common.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port or closed_port()}"})


def call_event(n: int) -> UsageEvent:
    now = datetime.now(timezone.utc)
    return UsageEvent(request_id=f"req-{n}-{now.timestamp()}", call_type="acompletion", start_time=now, end_time=now,
                      api_key_hash=hash_key(MASTER), model_group="llama3", model="groq/llama3-8b-8192", end_user="palantir",
                      quoted_cost=LLAMA3_COST)


async def test_unreachable_kafka_spools_and_a_restart_sends_the_spool(kafka: CommonSettings, tmp_path: Path) -> None:
    """Kafka down: events go to the spool file; the next start with Kafka reachable sends them."""
    emitter = make_emitter(unreachable(kafka), tmp_path)
    await emitter.start()
    events = [call_event(n) for n in range(3)]
    for event in events:
        emitter.emit(event)
    await eventually_async(lambda: emitter.spool.pending == 3, 10, "the events to reach the spool")
    assert not emitter.healthy
    await emitter.close()
    assert all(e.request_id.encode() in b"".join(p.read_bytes() for p in tmp_path.iterdir()) for e in events)

    restarted = make_emitter(kafka, tmp_path)
    assert restarted.spool.pending == 3
    await restarted.start()
    try:
        for event in events:
            record, got = await event_for(kafka, event.request_id)
            assert (got, record.key) == (event, hash_key(MASTER).encode())
        await eventually_async(lambda: restarted.spool.pending == 0, 10, "the spool to be released")
        assert list(tmp_path.glob("*.draining")) == []
    finally:
        await restarted.close()


async def test_spooled_events_drain_when_kafka_returns(kafka: CommonSettings, forwarder, tmp_path: Path) -> None:
    """Events spooled while Kafka is away reach the topic once it answers, without a restart."""
    port = closed_port()
    emitter = make_emitter(unreachable(kafka, port), tmp_path)
    await emitter.start()
    try:
        first, second = call_event(1), call_event(2)
        emitter.emit(first)
        emitter.emit(second)
        await eventually_async(lambda: emitter.spool.pending == 2, 10, "both events to reach the spool")
        await forwarder(port)  # Kafka is back
        for event in (first, second):
            _, got = await event_for(kafka, event.request_id)
            assert got == event
        await eventually_async(lambda: emitter.spool.pending == 0 and emitter.healthy, 20, "the spool to drain")
        third = call_event(3)
        emitter.emit(third)  # and new events go straight to Kafka again
        _, got = await event_for(kafka, third.request_id)
        assert got == third
        assert emitter.spool.pending == 0
    finally:
        await emitter.close()
