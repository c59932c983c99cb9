"""python -m services.ledger reconcile: do the books balance?

Reads the usage topic (what the proxy answered, with the cost it quoted), the pricer's dead
letters, the priced topic (the authoritative cost) and Postgres, and prints every request id that
is missing, extra or mismatched along the way, then every running total and daily rollup that is
not the sum of its logs. Exit status 1 on any difference. Run it when traffic is quiet, or with
--settle N to re-check for up to N seconds while the pipeline drains."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
import psycopg

from services.ledger.checks import Difference, check_schema
from services.ledger.consumer import discover_partitions
from services.ledger.settings import LedgerSettings
from shared import kafka
from shared.settings import CommonSettings
from shared.topics import PRICED, PRICED_DLQ, USAGE, USAGE_DLQ


@dataclass
class TopicView:
    costs: dict[str, Decimal] = field(default_factory=dict)  # request_id → cost (first read)
    quoted: dict[str, Decimal] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    unreadable: int = 0


async def read_topic(settings: CommonSettings, topic: str) -> Iterator[bytes]:
    """Every committed message of `topic` up to its end right now."""
    partitions = await discover_partitions(settings.kafka_bootstrap_servers, [settings.topic(topic)])
    consumer = kafka.consumer(settings, group_id=None, max_poll_records=10000)
    await consumer.start()
    values: list[bytes] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                values.extend(m.value for m in messages if m.value is not None)
    finally:
        await consumer.stop()
    return iter(values)


def _usage_view(values: Iterator[bytes]) -> TopicView:
    view = TopicView()
    for raw in values:
        try:
            data = orjson.loads(raw)
            request_id = data["request_id"]
            quoted = data.get("quoted_cost")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            view.unreadable += 1
            continue
        view.costs.setdefault(request_id, Decimal(0))
        if quoted is not None:
            view.quoted.setdefault(request_id, Decimal(str(quoted)))
    return view


def _priced_view(values: Iterator[bytes]) -> TopicView:
    view = TopicView()
    for raw in values:
        try:
            data = orjson.loads(raw)
            request_id = data["usage_event"]["request_id"]
            cost = Decimal(str(data["cost"]["total"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            view.unreadable += 1
            continue
        first = view.costs.setdefault(request_id, cost)
        if first != cost:
            view.conflicts.append(f"{request_id}: priced {first} and {cost}")
    return view


def _dead_letter_ids(values: Iterator[bytes], inner: str) -> set[str]:
    """Request ids inside dead letters (payload = the refused event's JSON)."""
    ids: set[str] = set()
    for raw in values:
        try:
            payload = orjson.loads(orjson.loads(raw)["payload"])
            ids.add(payload["usage_event"]["request_id"] if inner == "priced" else payload["request_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return ids


async def find_differences(settings: LedgerSettings) -> list[Difference]:
    usage = _usage_view(await read_topic(settings, USAGE))
    priced = _priced_view(await read_topic(settings, PRICED))
    unpriceable = _dead_letter_ids(await read_topic(settings, USAGE_DLQ), "usage")
    refused = _dead_letter_ids(await read_topic(settings, PRICED_DLQ), "priced")
    out: list[Difference] = []
    for rid in sorted(set(usage.costs) - set(priced.costs) - unpriceable):
        out.append(Difference("missing in priced", rid, "a usage event the pricer never priced"))
    for rid in sorted(unpriceable & set(usage.costs)):
        out.append(Difference("dead-lettered by pricer", rid, "answered but not priced"))
    for rid in sorted(set(priced.costs) - set(usage.costs)):
        out.append(Difference("extra in priced", rid, "priced without a usage event"))
    for line in priced.conflicts:
        out.append(Difference("conflicting prices", line.split(":")[0], line))
    for rid in sorted(set(priced.costs) & set(usage.quoted)):
        if usage.quoted[rid] != priced.costs[rid]:
            out.append(Difference("quote mismatch", rid, f"x-litellm-response-cost said {usage.quoted[rid]}, priced {priced.costs[rid]}"))
    options = f"-c search_path={settings.db_schema}" if settings.db_schema != "public" else ""
    async with await psycopg.AsyncConnection.connect(settings.database_url, options=options) as conn:
        logged: dict[str, Decimal] = {}
        async with conn.cursor(name="reconcile_logs") as cur:
            await cur.execute('SELECT request_id, spend FROM "LiteLLM_SpendLogs"')
            async for rid, spend in cur:
                logged[rid] = spend
        for rid in sorted(set(priced.costs) - set(logged)):
            label = "dead-lettered by ledger" if rid in refused else "missing in spend logs"
            out.append(Difference(label, rid, f"priced {priced.costs[rid]}, not in \"LiteLLM_SpendLogs\""))
        for rid in sorted(set(logged) - set(priced.costs)):
            out.append(Difference("extra in spend logs", rid, f"spend {logged[rid]} with no priced event"))
        for rid in sorted(set(logged) & set(priced.costs)):
            if logged[rid] != priced.costs[rid]:
                out.append(Difference("spend mismatch", rid, f"logged {logged[rid]}, priced {priced.costs[rid]}"))
        out.extend(await check_schema(conn))
        await conn.rollback()
    return out


async def reconcile_command(settings: LedgerSettings, settle_s: float = 0.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while True:
        differences = await find_differences(settings)
        if not differences or loop.time() >= deadline:
            break
        await asyncio.sleep(1.0)  # the pipeline is draining: look again
    for d in differences:
        print(d)
    print(f"reconcile: {len(differences)} difference(s)")
    return 1 if differences else 0
