"""A Kafka consumer stopped while a failed fetch waits out its retry backoff (what a broker
restart leaves behind) raises a CancelledError out of aiokafka's stop() (aio-libs/aiokafka#647).
Before this was handled, that error silently ended the ledger's supervisor after a broker restart,
and the ledger never read again. Real broker; the fetch is made to fail by closing the consumer's
connections (a test-only reach into aiokafka's client)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import TopicPartition

from shared import kafka
from shared.settings import CommonSettings
from shared.supervise import supervise
from shared.topics import PRICED
from tests.fixtures.polling import eventually_async


async def _consumer_with_a_failed_fetch(settings: CommonSettings, caplog: pytest.LogCaptureFixture):
    consumer = kafka.consumer(settings, group_id=None, retry_backoff_ms=10_000, fetch_max_wait_ms=5_000)
    await consumer.start()
    tp = TopicPartition(settings.topic(PRICED), 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    caplog.clear()

    async def failed() -> bool:
        # Cut the connections until a fetch was waiting on one of them when it closed.
        for connection in list(consumer._client._conns.values()):
            connection.close()
        return "Failed fetch messages" in caplog.text

    await eventually_async(failed, 10, "the fetch in flight to fail")
    return consumer


async def test_a_supervised_worker_whose_consumer_stops_mid_backoff_runs_again(settings: CommonSettings, caplog):
    """A worker whose consumer is stopped while a failed fetch backs off is restarted by its supervisor."""
    caplog.set_level(logging.ERROR, logger="aiokafka")
    runs = []

    async def worker() -> None:
        runs.append(len(runs))
        if len(runs) > 1:
            return
        consumer = await _consumer_with_a_failed_fetch(settings, caplog)
        try:
            raise RuntimeError("stalled")  # what the ledger's stall check raises
        finally:
            await kafka.stop_clients(consumer)

    await asyncio.wait_for(supervise("w", worker, first_delay=0), 30)
    assert runs == [0, 1]


async def test_stop_clients_absorbs_the_cancelled_error_and_closes_the_consumer(settings: CommonSettings, caplog):
    """stop_clients on a consumer mid-backoff does not raise aiokafka's CancelledError, and closes it."""
    caplog.set_level(logging.ERROR, logger="aiokafka")
    consumer = await _consumer_with_a_failed_fetch(settings, caplog)
    await kafka.stop_clients(consumer)
    assert consumer._closed
