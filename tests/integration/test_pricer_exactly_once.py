"""The pricer against a real broker: every usage event priced exactly once, even across SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from shared.events import DeadLetter, PricedUsageEvent, TokenUsage, UsageEvent, decode, encode
from shared.kafka import idempotent_producer
from shared.topics import PRICED, USAGE, USAGE_DLQ
from tests.fixtures.polling import eventually, eventually_async
from tests.fixtures.stack import free_port
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 13, 12, 0, tzinfo=timezone.utc)


def usage(i: int) -> UsageEvent:
    return UsageEvent(request_id=f"req-{i:06d}", call_type="acompletion", start_time=T0, end_time=T0,
                      api_key_hash=f"{i % 7:064x}", model_group="gpt-4o-mini", model="openai/gpt-4o-mini",
                      usage=TokenUsage(prompt_tokens=20, completion_tokens=80))


async def produce(settings, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        for key, value in payloads:
            await producer.send(settings.topic(USAGE), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def start_pricer(settings, log: Path, port: int | None = None, instance: str = "0") -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "PRICER_INSTANCE": instance,
           "TALLY_TOPIC_PREFIX": settings.topic_prefix, "PRICER_PORT": str(port or free_port()), "PRICER_BATCH_SIZE": "200"}
    return subprocess.Popen([sys.executable, "-m", "services.pricer"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def priced_so_far(port: int) -> float:
    """The pricer's own count of events priced, from its /metrics (0 until it answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    line = next((l for l in text.splitlines() if l.startswith("tally_pricer_events_priced_total")), "x 0")
    return float(line.split()[-1])


async def wait_for_priced(settings, count: int, timeout: float) -> list:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        records = await read_topic(settings, PRICED)
        if len(records) >= count or loop.time() > deadline:
            return records


async def stopped_mid_stream_and_restarted(settings, tmp_path, sig: int, total: int = 20_000) -> tuple[list, list]:
    """Stops a pricer with `sig` once its first transactions committed, restarts it, and returns
    (what was priced before the restart, everything priced in the end)."""
    await produce(settings, [(e.api_key_hash.encode(), encode(e)) for e in map(usage, range(total))])
    port = free_port()
    pricer = start_pricer(settings, tmp_path / "pricer.log", port)
    try:
        # Stop as soon as the first transactions have committed: the rest is still to price.
        eventually(lambda: priced_so_far(port) >= 200, 60, "the pricer's first batches")
        pricer.send_signal(sig)
        assert pricer.wait(timeout=60) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        partial = await read_topic(settings, PRICED)
        pricer = start_pricer(settings, tmp_path / "pricer.log")
        records = await wait_for_priced(settings, total, timeout=120)
    finally:
        pricer.send_signal(signal.SIGKILL)
        pricer.wait()
    return partial, records


def priced_once_each(records: list, total: int) -> bool:
    counts = Counter(decode(r.value).request_id for r in records)
    return len(counts) == total and set(counts.values()) == {1}


async def test_sigkill_mid_batch_prices_each_request_exactly_once(settings, tmp_path):
    """Killed with SIGKILL while pricing and restarted, the pricer leaves each request id once."""
    partial, records = await stopped_mid_stream_and_restarted(settings, tmp_path, signal.SIGKILL)
    assert 0 < len(partial) < 20_000, f"killed after {len(partial)} of 20000: not mid-stream"
    assert priced_once_each(records, 20_000)


async def test_two_pricers_sharing_the_group_price_each_request_once_when_one_is_killed(settings, tmp_path):
    """Two pricers split the partitions (a rebalance while both price); one is SIGKILLed, the
    other takes its partitions over (another rebalance): each request id is priced once."""
    ports = [free_port(), free_port()]
    pricers = [start_pricer(settings, tmp_path / f"pricer-{i}.log", port, instance=str(i)) for i, port in enumerate(ports)]
    produced = 0

    async def both_pricing() -> bool:
        """Feed events a few hundred at a time until both pricers priced some: one pricer alone
        would price a whole topic produced up front before the second joins the group."""
        nonlocal produced
        if all(priced_so_far(port) >= 200 for port in ports):
            return True
        batch = [usage(i) for i in range(produced, produced + 500)]
        await produce(settings, [(f"{e.request_id}".encode(), encode(e)) for e in batch])  # keys spread over every partition
        produced += len(batch)
        return False

    try:
        await eventually_async(both_pricing, 60, "both pricers' first batches", 0.2)
        rest = [usage(i) for i in range(produced, produced + 20_000)]  # still being priced when one pricer dies
        await produce(settings, [(e.api_key_hash.encode(), encode(e)) for e in rest])
        total = produced + len(rest)
        pricers[0].send_signal(signal.SIGKILL)
        pricers[0].wait()
        records = await wait_for_priced(settings, total, timeout=120)
    finally:
        for pricer in pricers:
            pricer.send_signal(signal.SIGKILL)
            pricer.wait()
    assert priced_once_each(records, total)


async def test_sigterm_lets_the_batch_in_flight_finish_and_a_restart_goes_on(settings, tmp_path):
    """A pricer stopped with SIGTERM mid-stream exits cleanly; restarted, each request is priced once."""
    _partial, records = await stopped_mid_stream_and_restarted(settings, tmp_path, signal.SIGTERM)
    assert priced_once_each(records, 20_000)


async def test_priced_event_carries_the_exact_cost_and_catalog_version(settings, tmp_path):
    """gpt-4o-mini, 20 in + 80 out: 20 * 1.5e-07 + 80 * 6e-07 = 0.000051, with the catalog version."""
    event = usage(1)
    await produce(settings, [(b"k", encode(event))])
    pricer = start_pricer(settings, tmp_path / "pricer.log")
    try:
        records = await wait_for_priced(settings, 1, timeout=60)
    finally:
        pricer.send_signal(signal.SIGKILL)
        pricer.wait()
    priced = decode(records[0].value)
    assert isinstance(priced, PricedUsageEvent)
    assert (priced.cost.total, priced.priced_model, priced.unpriced) == (Decimal("0.000051"), "gpt-4o-mini", False)
    assert len(priced.catalog_version) >= 8


async def test_unreadable_events_go_to_the_dead_letter_topic_and_pricing_goes_on(settings, tmp_path):
    """A broken message is dead-lettered with its reason; the good one after it is still priced."""
    good = usage(2)
    await produce(settings, [(b"k", b'{"type": "usage", "schema_version": 1}'), (b"k", encode(good))])
    pricer = start_pricer(settings, tmp_path / "pricer.log")
    try:
        priced = await wait_for_priced(settings, 1, timeout=60)
        letters = await read_topic(settings, USAGE_DLQ)
    finally:
        pricer.send_signal(signal.SIGKILL)
        pricer.wait()
    assert [decode(r.value).request_id for r in priced] == ["req-000002"]
    letter = decode(letters[0].value)
    assert isinstance(letter, DeadLetter) and letter.reason.startswith("invalid usage event: request_id: Field required")
