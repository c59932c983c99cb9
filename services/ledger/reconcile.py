"""python -m services.ledger reconcile: do the books balance?

Reads the usage topic (what the proxy answered, with the cost it quoted), the pricer's dead
letters, the priced topic (the authoritative cost) and Postgres, and prints every request id that
is missing, extra or mismatched along the way, then every running total and daily rollup that is
not the sum of its logs. Exit status 1 on any difference. Run it when traffic is quiet, or with
--settle N to re-check for up to N seconds while the pipeline drains.

Memory stays flat whatever the topics hold: each topic is streamed, message by message, into a
temporary Postgres table of (reading order, request id, cost), and the comparisons are SQL over
those tables and the spend logs (before, a topic's every message and every request id were held
in memory: gigabytes for millions of calls). A progress bar per topic shows on a terminal."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from tqdm import tqdm

from services.ledger.checks import Difference, check_schema
from services.ledger.consumer import discover_partitions
from services.ledger.settings import LedgerSettings
from shared.events import DeadLetter, decode_as
from shared import kafka
from shared.settings import CommonSettings
from shared.topics import PRICED, PRICED_DLQ, USAGE, USAGE_DLQ

# One row per readable message; `seq` is the reading order ("first read" decides, as before).
TEMP_TABLES = (
    "CREATE TEMP TABLE rc_usage (seq bigint NOT NULL, request_id text NOT NULL, quoted numeric)",
    "CREATE TEMP TABLE rc_priced (seq bigint NOT NULL, request_id text NOT NULL, cost numeric NOT NULL, start_time timestamptz)",
    "CREATE TEMP TABLE rc_usage_dlq (seq bigint NOT NULL, request_id text NOT NULL)",
    "CREATE TEMP TABLE rc_priced_dlq (seq bigint NOT NULL, request_id text NOT NULL)",
)
_UNREADABLE = (orjson.JSONDecodeError, KeyError, TypeError, ArithmeticError, ValueError)


def usage_row(raw: bytes) -> tuple[str, Decimal | None]:
    data = orjson.loads(raw)
    quoted = data.get("quoted_cost")
    return data["request_id"], None if quoted is None else Decimal(str(quoted))


def priced_row(raw: bytes) -> tuple[str, Decimal, str | None]:
    data = orjson.loads(raw)
    usage = data["usage_event"]
    return usage["request_id"], Decimal(str(data["cost"]["total"])), usage.get("start_time")


def dead_letter_row(raw: bytes) -> tuple[str]:
    """The request id a dead letter names (v1 letters are upcast: read from their payload)."""
    request_id = decode_as(DeadLetter, raw).request_id
    if request_id is None:
        raise KeyError("a dead letter with no readable request id")
    return (request_id,)



async def copy_topic(settings: CommonSettings, topic: str, conn: psycopg.AsyncConnection, table: str,
                     columns: str, parse: Callable[[bytes], tuple[Any, ...]], progress: bool) -> int:
    """Every committed message of `topic` up to its end right now, parsed into `table`
    (unreadable messages skipped and counted)."""
    partitions = await discover_partitions(settings.kafka_bootstrap_servers, [settings.topic(topic)])
    consumer = kafka.consumer(settings, group_id=None, max_poll_records=10000)
    await consumer.start()
    seq = unreadable = 0
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        async with conn.cursor().copy(f"COPY {table} (seq, {columns}) FROM STDIN") as copy:
            with tqdm(total=total, unit="msg", unit_scale=True, desc=topic, file=sys.stderr, disable=not progress) as bar:
                while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                    batch = await consumer.getmany(timeout_ms=500)
                    for messages in batch.values():
                        for m in messages:
                            if m.value is None:
                                continue
                            try:
                                row = parse(m.value)
                            except _UNREADABLE:
                                unreadable += 1
                                continue
                            seq += 1
                            await copy.write_row((seq, *row))
                        bar.update(len(messages))
    finally:
        await kafka.stop_clients(consumer)
    return unreadable


# (label, SQL giving (request_id, detail) in request-id order, byte-wise as Python sorts)
_FIRST_PRICE = "SELECT DISTINCT ON (request_id) request_id, cost, start_time FROM rc_priced ORDER BY request_id, seq"
_FIRST_QUOTE = ("SELECT DISTINCT ON (request_id) request_id, quoted FROM rc_usage WHERE quoted IS NOT NULL"
                " ORDER BY request_id, seq")
_USAGE_IDS = "SELECT DISTINCT request_id FROM rc_usage"
_ORDER = ' ORDER BY request_id COLLATE "C"'
TOPIC_CHECKS: tuple[tuple[str, str], ...] = (
    ("missing in priced", "SELECT request_id, 'a usage event the pricer never priced' FROM (" + _USAGE_IDS + ") u"
     " WHERE NOT EXISTS (SELECT FROM rc_priced p WHERE p.request_id = u.request_id)"
     " AND NOT EXISTS (SELECT FROM rc_usage_dlq d WHERE d.request_id = u.request_id)" + _ORDER),
    ("dead-lettered by pricer", "SELECT request_id, 'answered but not priced' FROM (" + _USAGE_IDS + ") u"
     " WHERE EXISTS (SELECT FROM rc_usage_dlq d WHERE d.request_id = u.request_id)" + _ORDER),
    ("extra in priced", "SELECT request_id, 'priced without a usage event' FROM (" + _FIRST_PRICE + ") p"
     " WHERE NOT EXISTS (SELECT FROM rc_usage u WHERE u.request_id = p.request_id)" + _ORDER),
    ("conflicting prices", "SELECT p.request_id, p.request_id || ': priced ' || f.cost || ' and ' || p.cost"
     " FROM rc_priced p JOIN (" + _FIRST_PRICE + ") f USING (request_id) WHERE p.cost <> f.cost ORDER BY p.seq"),
    ("quote mismatch", "SELECT p.request_id, 'x-litellm-response-cost said ' || q.quoted || ', priced ' || p.cost"
     " FROM (" + _FIRST_PRICE + ") p JOIN (" + _FIRST_QUOTE + ") q USING (request_id) WHERE q.quoted <> p.cost" + _ORDER),
)
LOG_CHECKS: tuple[tuple[str, str], ...] = (
    ("missing in spend logs", "SELECT p.request_id, 'priced ' || p.cost || ', not in \"LiteLLM_SpendLogs\"',"
     " EXISTS (SELECT FROM rc_priced_dlq d WHERE d.request_id = p.request_id) FROM (" + _FIRST_PRICE + ") p"
     ' WHERE NOT EXISTS (SELECT FROM "LiteLLM_SpendLogs" l WHERE l.request_id = p.request_id)'
     # A day behind the retention horizon was dropped whole: its logs are not missing. (An event
     # refused there as too late is still reported: it is in the ledger's dead letters.)
     " AND (p.start_time < (SELECT horizon::timestamp AT TIME ZONE 'UTC' FROM tally_spend_log_retention)"
     " IS NOT TRUE OR EXISTS (SELECT FROM rc_priced_dlq d WHERE d.request_id = p.request_id))" + _ORDER),
    ("extra in spend logs", "SELECT l.request_id, 'spend ' || l.spend || ' with no priced event', false"
     ' FROM "LiteLLM_SpendLogs" l WHERE NOT EXISTS (SELECT FROM rc_priced p WHERE p.request_id = l.request_id)' + _ORDER),
    ("spend mismatch", "SELECT l.request_id, 'logged ' || l.spend || ', priced ' || p.cost, false"
     ' FROM "LiteLLM_SpendLogs" l JOIN (' + _FIRST_PRICE + ") p USING (request_id) WHERE l.spend <> p.cost" + _ORDER),
)


async def find_differences(settings: LedgerSettings, progress: bool = False) -> list[Difference]:
    options = f"-c search_path={settings.db_schema}" if settings.db_schema != "public" else ""
    out: list[Difference] = []
    async with await psycopg.AsyncConnection.connect(settings.database_url, options=options) as conn:
        for statement in TEMP_TABLES:
            await conn.execute(statement)
        for topic, table, columns, parse in ((USAGE, "rc_usage", "request_id, quoted", usage_row),
                                             (PRICED, "rc_priced", "request_id, cost, start_time", priced_row),
                                             (USAGE_DLQ, "rc_usage_dlq", "request_id", dead_letter_row),
                                             (PRICED_DLQ, "rc_priced_dlq", "request_id", dead_letter_row)):
            await copy_topic(settings, topic, conn, table, columns, parse, progress)
        # A record whose dead letter was refused is in the quarantine instead: set aside all the same.
        for topic, table in ((USAGE, "rc_usage_dlq"), (PRICED, "rc_priced_dlq")):
            await conn.execute(f"INSERT INTO {table} (seq, request_id) SELECT -id, request_id FROM tally_dlq.quarantine"  # type: ignore[arg-type]
                               " WHERE source_topic = %s AND request_id IS NOT NULL", (settings.topic(topic),))
        for table in ("rc_usage", "rc_priced", "rc_usage_dlq", "rc_priced_dlq"):
            await conn.execute(f"CREATE INDEX ON {table} (request_id)")
            await conn.execute(f"ANALYZE {table}")
        for label, query in TOPIC_CHECKS:
            async with conn.cursor(name="reconcile") as cur:
                await cur.execute(query)
                out.extend([Difference(label, rid, detail) async for rid, detail in cur])
        for label, query in LOG_CHECKS:
            async with conn.cursor(name="reconcile") as cur:
                await cur.execute(query)
                out.extend([Difference("dead-lettered by ledger" if refused else label, rid, detail)
                            async for rid, detail, refused in cur])
        out.extend(await check_schema(conn))
        await conn.rollback()
    return out


async def reconcile_command(settings: LedgerSettings, settle_s: float = 0.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while True:
        differences = await find_differences(settings, progress=sys.stderr.isatty())
        if not differences or loop.time() >= deadline:
            break
        await asyncio.sleep(1.0)  # the pipeline is draining: look again
    for d in differences:
        print(d)
    print(f"reconcile: {len(differences)} difference(s)")
    return 1 if differences else 0
