"""The proxy's usage log against the real broker under faults: a record Kafka refuses is set aside
and never stops the spool, a full disk refuses new calls and loses no accepted event, and a
restart recovers every complete journal line around torn ones."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.proxy.usage_log.emitter import UsageEmitter
from services.proxy.usage_log.journal import Journal
from services.proxy.usage_log.record import encode_usage
from services.proxy.usage_log.set_aside import SetAside
from services.proxy.usage_log.spool import Spool
from services.proxy.usage_log.spool_drain import topic_message_limit
from shared import topics
from shared.events import UsageEvent
from shared.health import HEALTH_CHECKS, add_health_routes
from shared.kafka import ensure_topics, idempotent_producer
from shared.metrics import Registry
from shared.settings import CommonSettings
from shared.topics import TopicSpec
from tests.fixtures.topics import read_topic
from tests.integration.test_proxy_relay import MASTER, base_url, start_proxy, upstream  # noqa: F401 - fixtures
from tests.fixtures.polling import eventually_async
from tests.integration.test_proxy_spool import call_event, closed_port, forwarder, unreachable  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

TOPIC_LIMIT = 10_240  # the test topic's max.message.bytes


@pytest.fixture
async def kafka(kafka_bootstrap: str, topic_prefix: str) -> CommonSettings:
    """This test's topics; its usage topic has one partition and accepts at most TOPIC_LIMIT bytes a batch."""
    common = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await ensure_topics(common, [TopicSpec(topics.USAGE, 1, {"max.message.bytes": str(TOPIC_LIMIT)})])
    await ensure_topics(common)  # the others, as the proxy expects them
    return common


def make_emitter(common: CommonSettings, spool_dir: Path, *, learn_limit: bool = True, **options) -> UsageEmitter:  # type: ignore[no-untyped-def]
    """The emitter as app.py builds it, on this test's topic and spool directory."""
    topic = common.topic(topics.USAGE)
    limit = (lambda: topic_message_limit(common.kafka_bootstrap_servers, topic)) if learn_limit else None
    return UsageEmitter(topic, lambda: idempotent_producer(common, request_timeout_ms=10000), Spool(spool_dir), Registry(),
                        journal=Journal(spool_dir), drain_interval_s=0.2, message_limit=limit, **options)


def big_event(n: int) -> UsageEvent:
    return call_event(n).model_copy(update={"metadata": {"p": "x" * 20_000}})


async def request_ids_on_topic(common: CommonSettings) -> Counter[str]:
    return Counter(r.headers[0][1].decode() for r in await read_topic(common, topics.USAGE))


async def topic_holds(common: CommonSettings, wanted: list[str], timeout: float = 20.0) -> Counter[str]:
    """Poll the topic until every wanted request id is on it; returns the count of every id."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await request_ids_on_topic(common)
        if all(seen[w] for w in wanted):
            return seen
        assert asyncio.get_running_loop().time() < deadline, f"missing on the topic: {[w for w in wanted if not seen[w]]}"
        await asyncio.sleep(0.2)  # poll interval, bounded by the deadline


# -- (a) a record over the topic's limit -----------------------------------------------------------


@pytest.mark.parametrize("learn_limit", [True, False], ids=["limit-known", "broker-refuses"])
async def test_an_oversized_spooled_record_is_set_aside_and_the_others_sent_once(kafka: CommonSettings, tmp_path: Path,
                                                                                 learn_limit: bool) -> None:
    """Between ordinary spooled events, one over max.message.bytes is set aside; the others reach Kafka once; later events flow."""
    before, big, after = call_event(1), big_event(2), call_event(3)
    spool = Spool(tmp_path)
    spool.append([encode_usage(before), encode_usage(big), encode_usage(after)])
    spool.close()
    emitter = make_emitter(kafka, tmp_path, learn_limit=learn_limit)
    await emitter.start()
    try:
        await eventually_async(lambda: emitter.spool.pending == 0 and emitter.healthy, 30, "the spool to drain")
        later = call_event(4)
        emitter.emit(later)
        seen = await topic_holds(kafka, [before.request_id, after.request_id, later.request_id])
        assert seen == Counter({before.request_id: 1, after.request_id: 1, later.request_id: 1})
        (entry,) = SetAside(tmp_path).entries()
        assert entry["request_id"] == big.request_id and entry["bytes"] == len(encode_usage(big))
        expected = (f"over the topic's max.message.bytes ({TOPIC_LIMIT})" if learn_limit else "MessageSizeTooLargeError")
        assert expected in str(entry["reason"])
        assert (tmp_path / str(entry["raw_file"])).read_bytes() == encode_usage(big)
        assert emitter.set_aside_total.get() == 1
        assert sorted(p.name for p in tmp_path.glob("*.draining")) == []
    finally:
        await emitter.close()


async def test_an_oversized_live_event_goes_aside_and_the_next_events_flow(kafka: CommonSettings, tmp_path: Path) -> None:
    """An event over the limit emitted while Kafka is healthy is set aside, not sent; the events around it arrive once."""
    emitter = make_emitter(kafka, tmp_path)
    await emitter.start()
    try:
        await eventually_async(lambda: emitter.healthy and emitter.limit == TOPIC_LIMIT, 20, "the emitter to connect")
        events = [call_event(1), big_event(2), call_event(3)]
        for event in events:
            emitter.emit(event)
        await eventually_async(lambda: emitter.set_aside_total.get() == 1, 20, "the big event to be set aside")
        last = call_event(4)
        emitter.emit(last)
        seen = await topic_holds(kafka, [events[0].request_id, events[2].request_id, last.request_id])
        assert seen == Counter({events[0].request_id: 1, events[2].request_id: 1, last.request_id: 1})
        assert [e["request_id"] for e in SetAside(tmp_path).entries()] == [events[1].request_id]
    finally:
        await emitter.close()


# -- (b) disk full -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs as the spool directory (needs root: skipped, saying why, where mounting is refused)."""
    directory = tmp_path / "spool"
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (run as root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the disk refuses: the returned file is what to delete to free it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def health_of(app_url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as http:
        async with http.get(app_url + "/health") as response:
            return response.status, await response.json()


@pytest.fixture
async def health_server() -> AsyncIterator[Callable[[UsageEmitter], asyncio.Future]]:
    """/health exactly as the proxy serves it, its "kafka" check being the emitter's (app.py)."""
    servers: list[TestServer] = []

    async def serve(emitter: UsageEmitter) -> str:
        app = web.Application()
        add_health_routes(app, Registry())
        app[HEALTH_CHECKS]["kafka"] = emitter.check
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield serve  # type: ignore[misc]
    for server in servers:
        await server.close()


async def test_a_full_spool_disk_refuses_calls_and_loses_no_accepted_event(kafka: CommonSettings, small_disk: Path, forwarder,
                                                                           health_server) -> None:
    """Kafka away and the disk full: refusal() and /health name the cause; freed, every accepted event reaches Kafka."""
    port = closed_port()
    emitter = make_emitter(unreachable(kafka, port), small_disk)
    await emitter.start()
    url = await health_server(emitter)
    try:
        accepted = [call_event(n) for n in range(5)]
        for event in accepted:
            emitter.emit(event)
        await eventually_async(lambda: emitter.spool.pending == 5, 10, "the first events in the spool")
        filler = fill(small_disk)
        n = 5
        while emitter.refusal() is None:  # the last pages of the files may still take a line or two
            assert n < 40, "the disk never refused a write"
            accepted.append(call_event(n))
            emitter.emit(accepted[-1])
            n += 1
            await asyncio.sleep(0.01)  # lets the sender try the spool
        reason = emitter.refusal()
        assert reason is not None and reason.startswith("the usage log cannot be written: [Errno 28] No space left on device: ")
        assert str(small_disk) in reason
        status, body = await health_of(url)
        assert (status, body["checks"]["kafka"]) == (503, f"UsageLogUnwritable: {reason}"[:300])
        assert all(not task.done() for task in emitter._tasks)
        filler.unlink()
        await eventually_async(lambda: emitter.refusal() is None, 20, "the refusal to end once space returns")
        await forwarder(port)  # Kafka is back
        await eventually_async(lambda: emitter.spool.pending == 0 and emitter.healthy, 30, "the spool to drain")
        seen = await topic_holds(kafka, [e.request_id for e in accepted])
        assert set(seen) == {e.request_id for e in accepted}
        assert (await health_of(url))[0] == 200
    finally:
        await emitter.close()


async def test_a_full_journal_disk_makes_the_proxy_unhealthy_until_space_returns(kafka: CommonSettings, small_disk: Path,
                                                                                 start_proxy) -> None:
    """The whole proxy with Kafka up: its /health answers 503 naming the disk, answered calls still reach Kafka, and it recovers."""
    proxy = await start_proxy(common=kafka, spool_dir=small_disk)
    url = base_url(proxy)
    filler = fill(small_disk)
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(40):
            async with http.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                                 json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}) as response:
                if response.status != 200:
                    break
                ids.append(response.headers["x-litellm-call-id"])
            status, body = await health_of(url)
            if status == 503:
                break
    assert status == 503 and body["checks"]["kafka"].startswith("UsageLogUnwritable: the usage log cannot be written: [Errno 28]")
    filler.unlink()
    deadline = asyncio.get_running_loop().time() + 20
    while (await health_of(url))[0] != 200:
        assert asyncio.get_running_loop().time() < deadline, "health did not recover once space returned"
        await asyncio.sleep(0.2)  # poll interval, bounded by the deadline
    seen = await topic_holds(kafka, ids)
    assert {i: seen[i] for i in ids} == {i: 1 for i in ids}


# -- (c) restart with torn lines -----------------------------------------------------------------


async def test_a_restart_recovers_every_complete_line_around_torn_ones(kafka: CommonSettings, tmp_path: Path) -> None:
    """Journal and spool files with torn fragments: every complete line reaches Kafka once, the fragments are counted."""
    events = [call_event(n) for n in range(6)]
    lines = [encode_usage(e) for e in events]
    # A journal segment: a fragment glued to a complete line (written before lines were self-delimiting),
    # a fragment on a line of its own, and a torn last line.
    (tmp_path / "journal-1-0.jsonl").write_bytes(
        lines[0] + b"\n" + lines[5][:40] + lines[1] + b"\n" + lines[5][:70] + b"\n" + lines[2] + b"\n" + lines[5][:90])
    (tmp_path / "spool.jsonl").write_bytes(lines[3] + b"\n" + lines[4] + b"\n" + lines[5][:100])
    emitter = make_emitter(kafka, tmp_path)
    assert emitter.spool.pending == 2
    await emitter.start()
    try:
        assert emitter.journal.torn_lines == 3
        seen = await topic_holds(kafka, [e.request_id for e in events[:5]])
        assert seen == Counter({e.request_id: 1 for e in events[:5]})
        await eventually_async(lambda: emitter.spool.pending == 0, 10, "the spool to be released")
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("journal-", "spool"))) == []
        # The spool's torn last line became a line of its own when the leftovers were appended:
        # not a record, so set aside where an operator can see it.
        (entry,) = SetAside(tmp_path).entries()
        assert (entry["excerpt"], str(entry["reason"])[:15]) == (lines[5][:100].decode(), "not valid JSON:")
    finally:
        await emitter.close()
