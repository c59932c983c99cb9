"""Issue 14's faults (docs/faults.md, "Disk full, oversized and undeliverable records, drain"):
a full spool disk, a usage event too big to price, a dead letter the broker refuses, and SIGTERM
with calls longer than the drain time. Each runs on the fault rig (own broker, two proxy
replicas, every service its own process) and ends with the same books check as every scenario:
spend logs = answered calls at their exact costs, every total the sum of its logs, reconcile
clean (apart from the records a scenario injected to be set aside). A module of its own, so the
records it sets aside never reach test_faults.py's books."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import kafka
from shared.topics import UNLIMITED, USAGE, USAGE_DLQ
from tests.faults.load import LoadResult, run_load
from tests.faults.test_faults import MAX_CALLS, metric, under_load
from tests.fixtures.faults import FaultRig, long_mode
from tests.fixtures.polling import eventually
from tests.fixtures.stack import ROOT
from tests.fixtures.topics import read_topic

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

SPOOL_DISK = "256k"  # the tmpfs the disk-full scenario fills
OVERSIZED_BYTES = 1_048_400  # with its key and batch overhead just under the 1,048,588-byte limit; its priced event is not
TINY_MESSAGE_BYTES = "100"  # no record fits: the dead-letter topic's max.message.bytes in the refused-dead-letter scenario
DRAIN_S = 2.0  # TALLY_SHUTDOWN_DRAIN_S of the proxy sent SIGTERM
LONG_CALL_MS = 8000  # longer than the drain


# -- helpers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `directory` (we are root), unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)


async def restart_with(rig: FaultRig, name: str, env: dict[str, str]) -> dict[str, str]:
    """SIGTERM `name`, start it again with `env` added; returns its previous extra environment."""
    service = rig.stack.services[name]
    before = dict(service.extra_env)
    await asyncio.to_thread(rig.stack.kill, name, signal.SIGTERM)
    service.extra_env = {**before, **env}
    await rig.restart(name)
    return before


async def restore(rig: FaultRig, name: str, env: dict[str, str]) -> None:
    await asyncio.to_thread(rig.stack.kill, name, signal.SIGTERM)
    rig.stack.services[name].extra_env = env
    await rig.restart(name)


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, session.get(url) as resp:
        return resp.status


async def produce(rig: FaultRig, topic: str, key: bytes, value: bytes) -> None:
    producer = kafka.idempotent_producer(rig.stack.common, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(rig.stack.common.topic(topic), value, key=key)
    finally:
        await kafka.stop_clients(producer)


async def usage_template(rig: FaultRig) -> tuple[bytes, dict]:
    """(key, event) of a real usage event on the topic, to forge others from."""
    records = await read_topic(rig.stack.common, USAGE, timeout=120)
    if not records:  # run alone (-k): one ordinary call first
        rig.books.add(await run_load(rig.proxies, rig.population, rate=10, duration_s=5, max_calls=1, seed=20))
        records = await asyncio.to_thread(eventually, lambda: asyncio.run(read_topic(rig.stack.common, USAGE)), 30,
                                          "a usage event on the topic")
    return records[-1].key, orjson.loads(records[-1].value)


def quarantined_rows(database_url: str, request_id: str) -> list[tuple[str, str]]:
    """(stage, source topic) of every quarantined record of `request_id`."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT stage, source_topic FROM tally_dlq.quarantine WHERE request_id = %s",
                            (request_id,)).fetchall()


async def set_topic_config(rig: FaultRig, topic: str, configs: dict[str, str]) -> None:
    """Replace `topic`'s configuration (AlterConfigs is not incremental: pass every setting)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=rig.stack.common.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, rig.stack.common.topic(topic), configs=configs)])
    finally:
        await admin.close()


# -- the scenarios --------------------------------------------------------------------------------


async def test_spool_disk_full(faults: FaultRig, tmp_path: Path):
    """Kafka down and proxy-b's spool disk full: new calls get a 503 before the upstream; once space
    and Kafka return, every call answered before is in the books."""
    replica = "proxy-b"
    url = faults.stack.url(replica)
    with tmpfs(tmp_path / "spool", SPOOL_DISK) as spool:
        before = await restart_with(faults, replica, {"TALLY_SPOOL_DIR": str(spool)})
        try:
            await asyncio.to_thread(faults.broker.stop)
            try:
                result = await run_load([url], faults.population, rate=100, duration_s=10, max_calls=1000, seed=21)
                refused = [f for f in result.failed if f.status == 503]
                assert result.answered, "no call was answered before the disk filled"
                assert refused, f"no 503 once the disk filled: {result.summary()}; e.g. {result.failed[:2]}"
                assert len(refused) == len(result.failed), f"failures other than 503: {result.failed[:3]}"
                assert await status_of(url + "/health") == 503
                faults.books.add(LoadResult(rate=result.rate, answered=result.answered))  # 503s were never recorded
                # Space returns (the tmpfs grows), then the broker.
                subprocess.run(["mount", "-o", "remount,size=64m", str(spool)], check=True, capture_output=True)
            finally:
                await asyncio.to_thread(faults.broker.start)
            await asyncio.to_thread(eventually, lambda: asyncio.run(status_of(url + "/health")) == 200, 60, f"{replica} healthy")
            await asyncio.to_thread(eventually, lambda: asyncio.run(metric(url, "tally_proxy_spool_pending")) == 0.0, 60,
                                    f"{replica}'s spool drained")
            await faults.assert_books_balance()
        finally:
            await restore(faults, replica, before)


@long_mode  # in make test: tests/integration/test_pricer_dead_letters.py, test_stage_dead_letters.py
async def test_oversized_usage_event_is_dead_lettered(faults: FaultRig):
    """A usage event just under the broker's limit (its priced event would not fit): the pricer
    dead-letters it and every call around it is booked."""
    key, event = await usage_template(faults)
    request_id = f"oversized-{uuid.uuid4()}"
    event = {**event, "request_id": request_id, "event_id": str(uuid.uuid4())}
    event["metadata"] = {**(event.get("metadata") or {}), "padding": "x"}
    event["metadata"]["padding"] = "x" * (OVERSIZED_BYTES - len(orjson.dumps(event)))
    faults.set_aside.add(request_id)

    async def inject() -> None:
        await produce(faults, USAGE, key, orjson.dumps(event))

    result = await under_load(faults, inject, seed=22)
    assert result.failed == []
    await faults.assert_books_balance()
    listed = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.pricer", "dlq", "list", cwd=ROOT, env=faults.env(),
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await listed.communicate()
    assert listed.returncode == 0, out.decode(errors="replace")[-2000:]


@long_mode  # in make test: the quarantine tests in test_pricer_dead_letters.py, test_stage_dead_letters.py
async def test_dead_letter_refused_by_the_broker_is_quarantined(faults: FaultRig):
    """The pricer's dead-letter topic takes only 100-byte messages: an unpriceable event is
    quarantined in Postgres with its coordinates and the pricer goes on."""
    key, event = await usage_template(faults)
    request_id = f"unpriceable-{uuid.uuid4()}"
    bad = {**event, "request_id": request_id, "event_id": str(uuid.uuid4()), "schema_version": 999}
    faults.set_aside.add(request_id)
    await set_topic_config(faults, USAGE_DLQ, {**UNLIMITED, "max.message.bytes": TINY_MESSAGE_BYTES})
    try:
        async def inject() -> None:
            await produce(faults, USAGE, key, orjson.dumps(bad))

        result = await under_load(faults, inject, seed=23)
        assert result.failed == []
        await faults.assert_books_balance()
        assert quarantined_rows(faults.stack.common.database_url, request_id) == [("pricer", faults.stack.common.topic(USAGE))]
    finally:
        await set_topic_config(faults, USAGE_DLQ, dict(UNLIMITED))


@long_mode  # in make test: tests/integration/test_proxy_settlement.py's SIGTERM drain tests
async def test_sigterm_with_calls_longer_than_the_drain(faults: FaultRig):
    """SIGTERM to proxy-b (drain 2 s) with 8 s calls in flight: it exits within the drain, and
    every call it answered is in the books."""
    replica = "proxy-b"
    before = await restart_with(faults, replica, {"TALLY_SHUTDOWN_DRAIN_S": str(DRAIN_S)})
    exited_after: list[float] = []
    try:
        async def sigterm() -> None:
            long_calls = asyncio.create_task(run_load([faults.stack.url(replica)], faults.population, rate=20, duration_s=1.0,
                                                      max_calls=MAX_CALLS, seed=24, steer={"delay_ms": LONG_CALL_MS}))
            await asyncio.sleep(1.5)  # the fault's moment: after the 1 s in which the long calls are sent, while they run
            began = time.monotonic()
            await asyncio.to_thread(faults.stack.kill, replica, signal.SIGTERM)
            exited_after.append(time.monotonic() - began)
            long = await long_calls
            assert long.answered == [], f"calls of {LONG_CALL_MS} ms answered across a {DRAIN_S} s drain: {long.summary()}"
            faults.books.add(LoadResult(rate=long.rate, failed=long.failed))  # cut calls: ambiguous at most
            await faults.restart(replica)

        result = await under_load(faults, sigterm, seed=25)
        assert [f for f in result.failed if not f.ambiguous] == []
        assert exited_after[0] < DRAIN_S + 5, f"{replica} took {exited_after[0]:.1f}s to exit after SIGTERM"
        await faults.assert_books_balance()
    finally:
        await restore(faults, replica, before)
