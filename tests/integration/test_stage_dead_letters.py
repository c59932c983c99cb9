"""The ledger sets aside what it cannot store and goes on: bounded dead letters, a quarantine when
the dead letter is refused, an honest /health and lag when it cannot advance, and the dlq command."""

from __future__ import annotations

import asyncio
import hashlib

import psycopg
import pytest

from services.ledger.app import PROGRESS, build_app
from services.ledger.reconcile import find_differences
from services.ledger.settings import LedgerSettings
from shared import kafka
from shared.events import DeadLetter, decode_as, encode
from shared.quarantine import ensure_quarantine_tables
from shared.topics import PRICED, PRICED_DLQ
from tests.fixtures.ledger_support import InProcessLedger, count_logs, poll, priced, produce, produce_raw, query
from tests.fixtures.stack import serving
from tests.fixtures.stages import dlq, health, limit_topic, metric, read_topic

pytestmark = pytest.mark.integration

# The event that stopped the ledger for good: a NUL, and 300,000 double quotes in its metadata.
POISON = dict(request_id="poison", end_user="a\x00b", metadata={"p": '"' * 300_000})


async def test_a_poison_event_is_dead_lettered_bounded_and_the_200_after_it_are_stored(settings):
    """The NUL event's dead letter is a few KB pointing at it; 200 ordinary events after it are all stored within seconds."""
    poison = encode(priced(**POISON))
    await produce_raw(settings, PRICED, [poison], key=b"k")
    await produce(settings, [priced(request_id=f"after-{i}") for i in range(200)])
    async with InProcessLedger(settings):
        await poll(lambda: _logs_are(settings, 200), timeout=10, what="200 rows after the poison event")
    (record,) = await read_topic(settings, PRICED_DLQ)
    letter = decode_as(DeadLetter, record.value)
    (source,) = [r for r in await read_topic(settings, PRICED) if r.value == poison]
    assert len(poison) > 600_000 and len(record.value) < 8_000
    assert (letter.source_topic, letter.partition, letter.offset) == (settings.topic(PRICED), source.partition, source.offset)
    assert (letter.payload_bytes, letter.payload_sha256) == (len(poison), hashlib.sha256(poison).hexdigest())
    assert letter.request_id == "poison" and letter.excerpt == poison[:4096].decode()
    assert letter.reason == "end_user contains a NUL character, which Postgres text and JSON refuse"


async def test_a_refused_dead_letter_is_quarantined_and_the_ledger_goes_on(settings):
    """With a dlq topic that takes only 500-byte records, the poison event is quarantined in Postgres, where reconcile
    finds it set aside; the rest is stored."""
    await limit_topic(settings, PRICED_DLQ, 500)
    await produce(settings, [priced(**POISON), *(priced(request_id=f"after-{i}") for i in range(20))])
    async with InProcessLedger(settings) as ledger:
        await poll(lambda: _logs_are(settings, 20), timeout=15, what="20 rows after the poison event")
        await poll(lambda: _quarantined(settings, 1), what="the quarantined record")
        assert ledger.metrics.quarantined.get() == 1.0 and ledger.metrics.dead_lettered.get() == 0.0
    rows = await query(settings.database_url, "SELECT stage, source_topic, source_offset, request_id, payload_bytes, reason"
                                              " FROM tally_dlq.quarantine")
    assert rows == [("ledger", settings.topic(PRICED), 0, "poison", len(encode(priced(**POISON))), rows[0][5])]
    assert rows[0][5].startswith("end_user contains a NUL character, which Postgres text and JSON refuse;"
                                 " the dead letter could not be sent: MessageSizeTooLargeError")
    assert await read_topic(settings, PRICED_DLQ) == []
    found = [str(d) for d in await find_differences(LedgerSettings(**settings.model_dump()))]
    assert 'dead-lettered by ledger poison: priced 0.000051, not in "LiteLLM_SpendLogs"' in found  # reconcile sees it


async def test_health_names_the_stuck_partition_and_the_lag_stays_true_until_it_recovers(settings):
    """Neither dead letter nor quarantine possible: /health is 503 naming the partition, offset and error, lag counts
    every waiting event though the worker keeps restarting; once the quarantine is back, 200 and lag 0."""
    await limit_topic(settings, PRICED_DLQ, 500)
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await conn.execute("DROP TABLE tally_dlq.quarantine")
    await produce(settings, [priced(**POISON), *(priced(request_id=f"after-{i}") for i in range(3))])
    (poison,) = [r for r in await read_topic(settings, PRICED) if b"\"request_id\":\"poison\"" in r.value]
    ledger_settings = LedgerSettings(**settings.model_dump(), stall_after_s=1.0, progress_interval_s=0.2)
    async with serving(build_app(ledger_settings)) as base:
        async def stalled() -> bool:
            status, body = await health(base)
            return status == 503 and "last error" in body["checks"]["progress"]

        await poll(stalled, timeout=30, what="/health naming the stall")
        status, body = await health(base)
        progress = body["checks"]["progress"]
        assert progress.startswith(f"StageStalled: ledger: {settings.topic(PRICED)}[{poison.partition}] at offset 0 has not"
                                   " advanced for ")
        assert "(4 waiting); last error (" in progress and 'UndefinedTable: relation "tally_dlq.quarantine"' in progress
        assert body["checks"]["kafka"] == "ok" and body["checks"]["postgres"] == "ok"
        assert await metric(base, "tally_ledger_consumer_lag") == 4.0
        await ensure_quarantine_tables(settings.database_url)

        async def recovered() -> bool:
            return (await health(base))[0] == 200 and await metric(base, "tally_ledger_consumer_lag") == 0.0

        await poll(recovered, timeout=40, what="/health 200 and lag 0 after the quarantine is back")
    assert await count_logs(settings.database_url) == 3


async def test_transaction_markers_are_no_lag_and_an_idle_ledger_stays_healthy(settings):
    """Priced events written in transactions (as the pricer does) leave a marker after the last record: once they are
    stored, the lag is 0 and /health stays 200 past the stall time."""
    producer = kafka.transactional_producer(settings, f"{settings.topic_prefix}test-tx")
    await producer.start()
    try:
        for batch in range(3):
            async with producer.transaction():
                for i in range(5):
                    event = priced(request_id=f"tx-{batch}-{i}")
                    await producer.send(settings.topic(PRICED), encode(event), key=b"k")
    finally:
        await producer.stop()
    ledger_settings = LedgerSettings(**settings.model_dump(), stall_after_s=1.0, progress_interval_s=0.2)
    app = build_app(ledger_settings)
    async with serving(app) as base:
        await poll(lambda: _logs_are(settings, 15), what="15 rows")
        stored_at = asyncio.get_running_loop().time()

        async def idle_past_the_stall_time() -> bool:
            # A measurement taken more than stall_after_s after the last row, and still no stall.
            return (asyncio.get_running_loop().time() - stored_at > 2.0 and app[PROGRESS].lag == 0
                    and min(app[PROGRESS].since.values()) > stored_at + 1.0)

        await poll(idle_past_the_stall_time, what="a measurement past the stall time")
        assert await health(base) == (200, {"status": "healthy", "checks": {
            "kafka": "ok", "worker": "ok", "progress": "ok", "postgres": "ok"}})
        assert await metric(base, "tally_ledger_consumer_lag") == 0.0


async def test_dlq_list_show_and_replay_store_a_fixed_record_exactly_once(settings):
    """A row the database refuses is dead-lettered; `dlq list` and `show` name it; after the fix `replay` stores it
    once, and a second replay does nothing and says so."""
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await conn.execute("""ALTER TABLE "LiteLLM_SpendLogs" ADD CONSTRAINT not_blocked CHECK (request_id <> 'blocked')""")
    await produce(settings, [priced(request_id="blocked"), priced(request_id="fine")])
    async with InProcessLedger(settings):
        await poll(lambda: _logs_are(settings, 1), what="the fine row")
        await poll(lambda: _letters(settings, 1), what="the dead letter")
        (letter,) = [decode_as(DeadLetter, r.value) for r in await read_topic(settings, PRICED_DLQ)]
        where = f"{letter.source_topic}:{letter.partition}:{letter.offset}"

        status, out, _ = await dlq(settings, "ledger", "list")
        assert status == 0
        assert f"{where} " in out and "dead letter" in out and "CheckViolation" in out
        assert out.splitlines()[-1] == "ledger: 1 record(s) set aside, 0 replayed"

        status, out, _ = await dlq(settings, "ledger", "show", where)
        assert status == 0 and "request id:   blocked" in out and '"request_id":"blocked"' in out
        assert "original record (key " in out

        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
            await conn.execute('ALTER TABLE "LiteLLM_SpendLogs" DROP CONSTRAINT not_blocked')
        status, out, _ = await dlq(settings, "ledger", "replay", where)
        assert status == 0 and out.startswith(f"{where}: replayed to {letter.source_topic}[{letter.partition}] at offset 2")
        await poll(lambda: _logs_are(settings, 2), what="the replayed row")

        status, out, _ = await dlq(settings, "ledger", "replay", where)
        assert status == 0 and out.startswith(f"{where}: already replayed at ") and out.rstrip().endswith("nothing done")
        status, _, err = await dlq(settings, "ledger", "replay", f"{letter.source_topic}:{letter.partition}:99")
        assert status == 2 and "nothing set aside at" in err
    blocked = await query(settings.database_url, """SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE request_id = 'blocked'""")
    assert blocked == [(1,)] and await count_logs(settings.database_url) == 2



async def _logs_are(settings, expected: int) -> bool:
    return await count_logs(settings.database_url) == expected


async def _quarantined(settings, expected: int) -> bool:
    return (await query(settings.database_url, "SELECT count(*) FROM tally_dlq.quarantine"))[0][0] == expected


async def _letters(settings, expected: int) -> bool:
    return len(await read_topic(settings, PRICED_DLQ)) == expected
