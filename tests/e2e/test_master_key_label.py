"""Calls made with the master key are recorded under LiteLLM's label `litellm_proxy_master_key`,
and the master key's SHA-256 (reversible offline for a guessable key) is written nowhere a reader
looks: no table row, no usage or priced event, no /spend/logs answer. Real stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from aiokafka import TopicPartition

from shared import topics
from shared.kafka import consumer as make_consumer
from shared.keys import hash_key
from shared.master_key import MASTER_KEY_ALIAS
from shared.settings import CommonSettings
from tests.fixtures.polling import eventually
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxy(tally_stack: TallyStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tally_stack.url("proxy"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def master_call(tally_stack: TallyStack, proxy: httpx.Client) -> str:
    """One chat call with the master key, once the ledger has written its spend log row."""
    response = proxy.post("/chat/completions", headers={"Authorization": f"Bearer {tally_stack.master_key}"},
                          json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "user": "label-check"})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-litellm-call-id"]

    def logged() -> bool:
        with psycopg.connect(tally_stack.common.database_url) as conn:
            return conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE request_id = %s', (request_id,)).fetchone()[0] == 1

    eventually(logged, 60, "the master-key call's spend log row")
    return request_id


def test_master_key_spend_log_row_carries_the_label(tally_stack: TallyStack, master_call: str) -> None:
    """The row's api_key is `litellm_proxy_master_key` and its user LiteLLM's admin id."""
    with psycopg.connect(tally_stack.common.database_url) as conn:
        row = conn.execute('SELECT api_key, "user", end_user FROM "LiteLLM_SpendLogs" WHERE request_id = %s', (master_call,)).fetchone()
    assert row == (MASTER_KEY_ALIAS, "default_user_id", "label-check")


def test_master_key_hash_is_in_no_table(tally_stack: TallyStack, master_call: str) -> None:
    """No row of any table in the database holds the master key's SHA-256."""
    secret = hash_key(tally_stack.master_key)
    with psycopg.connect(tally_stack.common.database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()]
        assert '"LiteLLM_SpendLogs"' in tables or "public.\"LiteLLM_SpendLogs\"" in tables
        holding = [t for t in tables if conn.execute(f"SELECT count(*) FROM {t} AS r WHERE r::text LIKE %s",
                                                     (f"%{secret}%",)).fetchone()[0]]
    assert holding == []


async def _records(common: CommonSettings, *names: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on `names` up to their current ends."""
    consumer = make_consumer(common, *names, group_id=None, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        partitions = [TopicPartition(common.topic(n), p) for n in names for p in consumer.partitions_for_topic(common.topic(n)) or ()]
        ends = await consumer.end_offsets(partitions)
        seen: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            assert time.monotonic() < deadline, "timed out reading the topics to their end"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend((r.key or b"", r.value or b"") for r in batch)
        return seen
    finally:
        await consumer.stop()


def test_master_key_hash_is_on_no_usage_or_priced_event(tally_stack: TallyStack, master_call: str) -> None:
    """The usage and priced topics key and carry the label; the hash is in no record."""
    secret = hash_key(tally_stack.master_key).encode()
    records = asyncio.run(_records(tally_stack.common, topics.USAGE, topics.PRICED))
    mine = [(key, value) for key, value in records if master_call.encode() in value]
    assert [key for key, _ in mine] == [MASTER_KEY_ALIAS.encode()] * 2
    assert [key for key, value in records if secret in key or secret in value] == []


def test_master_key_hash_is_in_no_spend_logs_answer(tally_stack: TallyStack, proxy: httpx.Client, master_call: str) -> None:
    """/spend/logs, raw or summarised, shows the label and never the hash."""
    secret = hash_key(tally_stack.master_key)
    headers = {"Authorization": f"Bearer {tally_stack.master_key}"}
    raw = proxy.get("/spend/logs", params={"summarize": "false"}, headers=headers)
    assert raw.status_code == 200
    assert [r["api_key"] for r in raw.json() if r["request_id"] == master_call] == [MASTER_KEY_ALIAS]
    by_label = proxy.get("/spend/logs", params={"api_key": MASTER_KEY_ALIAS, "summarize": "false"}, headers=headers)
    assert [r["request_id"] for r in by_label.json()] == [master_call]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    summary = proxy.get("/spend/logs", params={"start_date": "2000-01-01", "end_date": today}, headers=headers)
    assert summary.status_code == 200
    assert secret not in raw.text and secret not in summary.text and secret not in by_label.text
