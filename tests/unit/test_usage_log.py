"""The proxy's usage log without a broker: torn writes never cost a complete line, one bad spooled
record never stops the drain, and a disk that refuses writes is reported, never fatal."""

from __future__ import annotations

import asyncio
import errno
import os
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RecordTooLargeError

from services.proxy.usage_log import journal as journal_module
from services.proxy.usage_log.emitter import SpoolStalled, UsageEmitter, UsageLogUnwritable
from services.proxy.usage_log.journal import Journal, recover_lines
from services.proxy.usage_log.set_aside import SetAside
from services.proxy.usage_log.spool import Spool
from services.proxy.usage_log.spool_drain import batch_size, drain_file
from shared.events import TokenUsage, UsageEvent
from shared.metrics import Registry
from tests.fixtures.events import usage_event as make_usage_event
from tests.fixtures.polling import eventually_async


def line(n: int, pad: int = 0) -> bytes:
    """A spooled record as the drain sees it: JSON with the key and the request id."""
    return orjson.dumps({"event_id": f"e{n}", "request_id": f"req-{n}", "api_key_hash": "k" * 64, "pad": "x" * pad})


def usage_event(n: int) -> UsageEvent:
    """The n-th of a run of llama3 calls, each with its own request id."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    return make_usage_event(request_id=f"req-{n}", start_time=now, end_time=now, api_key_hash="k" * 64, model_group="llama3",
                            model="groq/llama3-8b-8192", custom_llm_provider=None, usage=TokenUsage(),
                            quoted_cost=Decimal("0.0000074"))


def enospc(path: str | None = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


class DiskFillsAfter:
    """os.write that writes `allowed` more bytes, then refuses like a full disk."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self._write = os.write  # the real one: the test patches os.write itself

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.allowed <= 0:
            raise enospc()
        written = self._write(fd, bytes(data[:self.allowed]))
        self.allowed -= written
        return written


# -- journal ---------------------------------------------------------------------------------------


def test_a_write_torn_by_a_full_disk_is_cut_back_and_the_next_line_kept(tmp_path, monkeypatch):
    """A line the disk refused half-way leaves no fragment; the lines before and after are recovered."""
    journal = Journal(tmp_path)
    journal.append(line(1))
    monkeypatch.setattr(journal_module.os, "write", DiskFillsAfter(10))
    with pytest.raises(OSError) as refused:
        journal.append(line(2))
    monkeypatch.undo()
    assert refused.value.errno == errno.ENOSPC and refused.value.filename.startswith(str(tmp_path / "journal-"))
    journal.append(line(3))
    recovered = Journal(tmp_path)
    assert recovered.read_leftovers() == [line(1), line(3)]
    assert recovered.torn_lines == 0


def test_a_torn_fragment_that_could_not_be_cut_never_swallows_the_next_line(tmp_path, monkeypatch):
    """When even the cut fails, the next line starts on a line of its own: recovered, fragment counted."""
    journal = Journal(tmp_path)
    journal.append(line(1))
    monkeypatch.setattr(journal_module.os, "write", DiskFillsAfter(10))
    monkeypatch.setattr(journal_module.os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        journal.append(line(2))
    monkeypatch.undo()
    journal.append(line(3))
    segment = next(tmp_path.glob("journal-*"))
    assert segment.read_bytes() == line(1) + b"\n" + line(2)[:10] + b"\n" + line(3) + b"\n"
    recovered = Journal(tmp_path)
    assert recovered.read_leftovers() == [line(1), line(3)]
    assert recovered.torn_lines == 1


def test_a_complete_line_glued_to_an_older_torn_fragment_is_recovered(tmp_path):
    """A file written before lines were self-delimiting: the record after the fragment is kept."""
    (tmp_path / "journal-1-0.jsonl").write_bytes(line(1) + b"\n" + line(2)[:15] + line(3) + b"\n" + line(4)[:7])
    recovered = Journal(tmp_path)
    assert recovered.read_leftovers() == [line(1), line(3)]
    assert recovered.torn_lines == 2


def test_recover_lines_counts_every_fragment_and_keeps_every_record():
    """Blank lines are ignored, fragments counted, whole records kept in order."""
    data = line(1) + b"\n\n" + b'{"event_id":"e9","req' + b"\n" + line(2) + b"\n" + b"[1,2]\n"
    assert recover_lines(data) == ([line(1), line(2)], 2)


# -- spool -----------------------------------------------------------------------------------------


def test_a_spool_write_the_disk_refuses_leaves_nothing_behind(tmp_path, monkeypatch):
    """A batch is written whole or not at all: no fragment, no count, the next batch intact."""
    spool = Spool(tmp_path)
    spool.append([line(1)])
    monkeypatch.setattr(journal_module.os, "write", DiskFillsAfter(25))
    with pytest.raises(OSError) as refused:
        spool.append([line(2), line(3)])
    monkeypatch.undo()
    assert refused.value.errno == errno.ENOSPC and refused.value.filename == str(spool.active_path)
    assert spool.pending == 1
    spool.append([line(4)])
    assert spool.active_path.read_bytes() == line(1) + b"\n" + line(4) + b"\n"
    assert Spool(tmp_path).pending == 2


def test_a_marked_part_of_a_draining_file_is_not_counted_again_after_a_restart(tmp_path):
    """The progress marker survives the process: a new Spool counts and resumes after it."""
    spool = Spool(tmp_path)
    spool.append([line(n) for n in range(5)])
    (path,) = spool.claim()
    spool.advance(path, 3)
    assert spool.pending == 2
    spool.close()
    again = Spool(tmp_path)
    assert (again.pending, again.progress(path)) == (2, 3)
    again.release(path, 2)
    assert (again.pending, sorted(p.name for p in tmp_path.iterdir())) == (0, [])


# -- the drain, with a fake producer ---------------------------------------------------------------


class FakeProducer:
    """aiokafka's send(): each request id acknowledged, refused for itself, or failing transiently."""

    def __init__(self, refuse: dict[str, BaseException] | None = None, refuse_at_send: dict[str, BaseException] | None = None) -> None:
        self.refuse = refuse or {}
        self.refuse_at_send = refuse_at_send or {}
        self.attempted: list[str] = []
        self.acknowledged: list[str] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future:  # type: ignore[type-arg]
        request_id = dict(headers)["request_id"].decode()
        self.attempted.append(request_id)
        if request_id in self.refuse_at_send:
            raise self.refuse_at_send[request_id]
        future = asyncio.get_running_loop().create_future()
        if request_id in self.refuse:
            future.set_exception(self.refuse[request_id])
        else:
            self.acknowledged.append(request_id)
            future.set_result(None)
        return future


def spooled(tmp_path: Path, lines: list[bytes]) -> tuple[Spool, Path]:
    spool = Spool(tmp_path)
    spool.append(lines)
    (path,) = spool.claim()
    return spool, path


async def test_a_record_kafka_refuses_is_found_alone_set_aside_and_the_rest_of_the_file_sent(tmp_path):
    """A batch refused as too large is retried one record at a time: only the culprit is set aside, each other goes once."""
    spool, path = spooled(tmp_path, [line(1), line(2, pad=3000), line(3)])
    too_large = MessageSizeTooLargeError()
    attempts = [FakeProducer(refuse={"req-2": too_large, "req-3": too_large}),  # one batch, refused whole
                FakeProducer(refuse={"req-2": too_large}), FakeProducer()]  # each a new producer, as the emitter makes
    careful_until, outcomes = 0, []
    for producer in attempts:
        outcome = await drain_file(producer, "t", spool, SetAside(tmp_path), path, limit=None, timeout=5,  # type: ignore[arg-type]
                                   careful_until=careful_until)
        careful_until = outcome.careful_until or careful_until
        outcomes.append((outcome.sent, outcome.set_aside, outcome.error, outcome.producer_broken))
    assert outcomes == [(1, 0, too_large, True), (0, 1, too_large, True), (1, 0, None, False)]
    assert [p.acknowledged for p in attempts] == [["req-1"], [], ["req-3"]]
    (entry,) = SetAside(tmp_path).entries()
    assert (entry["reason"], entry["request_id"], entry["bytes"], entry["source"]) == (
        "MessageSizeTooLargeError: [Error 10] MessageSizeTooLargeError", "req-2", len(line(2, pad=3000)), path.name)
    assert len(entry["excerpt"]) == 2048  # type: ignore[arg-type]
    assert (tmp_path / str(entry["raw_file"])).read_bytes() == line(2, pad=3000)
    assert (spool.pending, path.exists(), path.with_suffix(".acked").exists()) == (0, False, False)


async def test_unreadable_records_and_records_over_the_limit_are_set_aside_unsent(tmp_path):
    """Bad JSON, a record without a request id, one over max.message.bytes, one refused at send: none stops the file."""
    no_id = orjson.dumps({"event_id": "e5", "api_key_hash": "k"})
    spool, path = spooled(tmp_path, [b"{not json", line(1), no_id, line(2, pad=600), line(3), line(4)])
    producer = FakeProducer(refuse_at_send={"req-4": RecordTooLargeError("too big for a request")})
    outcome = await drain_file(producer, "t", spool, SetAside(tmp_path), path, limit=500, timeout=5)  # type: ignore[arg-type]
    assert (outcome.sent, outcome.set_aside) == (2, 4)
    assert producer.attempted == ["req-1", "req-3", "req-4"]
    reasons = [str(e["reason"]) for e in SetAside(tmp_path).entries()]
    assert reasons[0].startswith("not valid JSON: ")
    assert reasons[1:] == ["no api_key_hash or request_id",
                           f"MessageSizeTooLargeError: {batch_size(b'k' * 64, line(2, pad=600), b'req-2')} bytes, over the topic's max.message.bytes (500)",
                           "RecordTooLargeError: too big for a request"]
    assert spool.pending == 0


async def test_a_transient_failure_keeps_what_was_done_and_the_next_attempt_resumes_after_it(tmp_path):
    """Lines acknowledged before a broker failure are marked durably and never sent again."""
    spool, path = spooled(tmp_path, [line(n) for n in range(1, 7)])
    down = FakeProducer(refuse={"req-4": KafkaConnectionError("broker gone")})
    outcome = await drain_file(down, "t", spool, SetAside(tmp_path), path, limit=None, timeout=5, chunk=2)  # type: ignore[arg-type]
    assert (outcome.sent, type(outcome.error)) == (3, KafkaConnectionError)
    assert (spool.pending, Spool(tmp_path).progress(path), path.exists()) == (3, 3, True)
    back = FakeProducer()
    outcome = await drain_file(back, "t", Spool(tmp_path), SetAside(tmp_path), path, limit=None, timeout=5, chunk=2)  # type: ignore[arg-type]
    assert (outcome.sent, outcome.error, back.attempted) == (3, None, ["req-4", "req-5", "req-6"])
    assert not path.exists()


async def test_a_set_aside_the_disk_refuses_moves_nothing_past_the_record(tmp_path, monkeypatch):
    """Without its set-aside line written, a refused record is not passed over: no loss."""
    spool, path = spooled(tmp_path, [line(1), line(2)])
    producer = FakeProducer(refuse={"req-2": MessageSizeTooLargeError()})
    set_aside = SetAside(tmp_path)
    monkeypatch.setattr(set_aside, "add", lambda items, source: (_ for _ in ()).throw(enospc(str(set_aside.path))))
    with pytest.raises(OSError):
        await drain_file(producer, "t", spool, set_aside, path, limit=None, timeout=5, careful_until=2)  # type: ignore[arg-type]
    assert (spool.pending, spool.progress(path)) == (1, 1)


# -- the emitter when the disk refuses -------------------------------------------------------------


class Unreachable:
    """A producer whose broker never answers: the emitter spools."""

    async def start(self) -> None:
        raise KafkaConnectionError("no broker")

    async def stop(self) -> None:
        return None


class FullDisk:
    """Makes writes to the files `refuse(path)` picks fail like a full disk (all files while `full`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.refuse = lambda path: False
        real = os.write

        def write(fd: int, data: bytes | memoryview) -> int:
            if self.full or self.refuse(os.readlink(f"/proc/self/fd/{fd}")):
                raise enospc()
            return real(fd, data)

        monkeypatch.setattr(journal_module.os, "write", write)


def emitter_on(tmp_path: Path, producer_factory=Unreachable, **options) -> UsageEmitter:  # type: ignore[no-untyped-def]
    return UsageEmitter("t.usage.v1", producer_factory, Spool(tmp_path), Registry(), journal=Journal(tmp_path),  # type: ignore[arg-type]
                        drain_interval_s=0.01, **options)


async def test_a_full_disk_refuses_calls_keeps_events_in_memory_and_recovers(tmp_path, monkeypatch):
    """emit() never raises; refusal() and check() name the cause; every event reaches the spool once space returns."""
    disk = FullDisk(monkeypatch)
    emitter = emitter_on(tmp_path)
    await emitter.start()
    try:
        emitter.emit(usage_event(1))
        await eventually_async(lambda: emitter.spool.pending == 1, 5.0, "the first event in the spool", 0.01)
        assert emitter.refusal() is None
        disk.full = True
        emitter.emit(usage_event(2))
        emitter.emit(usage_event(3))
        reason = emitter.refusal()
        assert reason is not None and reason.startswith("the usage log cannot be written: [Errno 28] No space left on device: ")
        with pytest.raises(UsageLogUnwritable, match=r"^the usage log cannot be written: \[Errno 28\]"):
            await emitter.check()
        await eventually_async(lambda: len(emitter.disk.held) == 2, 5.0, "both events held in memory", 0.01)
        assert all(not task.done() for task in emitter._tasks)
        disk.full = False
        await eventually_async(lambda: emitter.refusal() is None, 5.0, "the refusal to end", 0.01)
        assert emitter.spool.pending == 3
    finally:
        await emitter.close()
    spooled_ids = [orjson.loads(v)["request_id"] for p in Spool(tmp_path).claim() for v in Spool(tmp_path).read(p)]
    assert spooled_ids == ["req-1", "req-2", "req-3"]


async def test_a_journaled_event_the_spool_refuses_at_shutdown_is_recovered_by_the_next_start(tmp_path, monkeypatch):
    """An answered call whose event reached only the journal is not lost when the spool stays full."""
    disk = FullDisk(monkeypatch)
    disk.refuse = lambda path: path.endswith("spool.jsonl")
    emitter = emitter_on(tmp_path)
    await emitter.start()
    emitter.emit(usage_event(1))
    await eventually_async(lambda: len(emitter.disk.held) == 1, 5.0, "the event held in memory", 0.01)
    assert emitter.refusal() is not None and emitter.refusal().endswith(f"No space left on device: '{tmp_path / 'spool.jsonl'}'")  # type: ignore[union-attr]
    await emitter.close()
    disk.refuse = lambda path: False
    assert [orjson.loads(v)["request_id"] for v in Journal(tmp_path).read_leftovers()] == ["req-1"]


class Answering:
    """A producer whose broker answers metadata requests (for the health check)."""

    class client:  # noqa: N801 - aiokafka's attribute name
        class cluster:  # noqa: N801
            @staticmethod
            def brokers() -> set[int]:
                return {1}

        @staticmethod
        async def force_metadata_update() -> bool:
            return True


async def test_health_names_a_spool_that_waits_without_progress_while_kafka_answers(tmp_path):
    """Spooled events that do not move for stall_after_s make check() fail with the count and the last error."""
    emitter = emitter_on(tmp_path, stall_after_s=0.0)
    emitter.spool.append([line(1), line(2)])
    emitter.producer = Answering()  # type: ignore[assignment]
    emitter._drain_error = "KafkaTimeoutError: no answer"
    with pytest.raises(SpoolStalled, match=r"^2 usage events wait in the spool and none was sent or set aside for 0s "
                                           r"although Kafka answers; last attempt: KafkaTimeoutError: no answer$"):
        await emitter.check()
    (path,) = emitter.spool.claim()
    emitter.spool.release(path, 2)
    await emitter.check()  # nothing waits: healthy
