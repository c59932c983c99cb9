"""`python -m services.ledger reconcile`: clean books pass, a mismatch fails."""

from __future__ import annotations

import psycopg

from services.ledger.reconcile import find_differences
from services.ledger.rows import SPEND_LOG_COLUMNS
from services.ledger.settings import LedgerSettings
from shared.dead_letters import dead_letter
from shared.events import DeadLetter, decode_as, encode
from shared.settings import CommonSettings
from shared.topics import PRICED_DLQ, USAGE, USAGE_DLQ
from tests.fixtures.topics import read_topic
from tests.fixtures.ledger_support import (InProcessLedger, poll, priced, produce, produce_raw,
                                                   wait_for_logs)


async def test_reconcile_passes_clean_books_and_names_every_gap(settings):
    """Balanced usage/priced/logs give no difference; an unpriced usage event and a wrong quote are each reported."""
    events = [priced(request_id=f"r{i}", cost="0.000051") for i in range(5)]
    await produce_raw(settings, USAGE, [encode(e.usage_event) for e in events])
    await produce(settings, events)
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 5)
    ledger_settings = LedgerSettings(**settings.model_dump())
    assert [str(d) for d in await find_differences(ledger_settings)] == []

    lost = priced(request_id="lost")
    misquoted = priced(request_id="misquoted", cost="0.2", quoted="0.1")
    await produce_raw(settings, USAGE, [encode(lost.usage_event), encode(misquoted.usage_event)])
    await produce(settings, [misquoted])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 6)
    assert [str(d) for d in await find_differences(ledger_settings)] == [
        "missing in priced lost: a usage event the pricer never priced",
        "quote mismatch misquoted: x-litellm-response-cost said 0.1, priced 0.2",
    ]


async def test_reconcile_names_each_kind_of_gap_once(settings):
    """Every kind of gap between the topics and the spend logs is reported once, in request-id order within its kind."""
    # Totals and rollups are left to their own tests.
    ok, extra, gone, changed = (priced(request_id=r) for r in ("ok", "extra", "gone", "changed"))
    nul = priced(request_id="nul", user="bad\x00user")
    dup_first, dup_second = priced(request_id="dup", cost="0.1"), priced(request_id="dup", cost="0.3")
    unpriced = priced(request_id="unpriced").usage_event
    await produce_raw(settings, USAGE, [encode(e.usage_event) for e in (ok, dup_first, nul, gone, changed)] + [encode(unpriced)])
    await produce_raw(settings, USAGE_DLQ, [encode(dead_letter(settings.topic(USAGE), 0, 5, "no price", encode(unpriced)))])
    await produce(settings, [ok, extra, dup_first, dup_second, nul, gone, changed])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 5)  # ok, extra, dup, gone, changed; nul is dead-lettered
        await poll(lambda: _dead_lettered(settings, "nul"), what="the ledger's dead letter")
    await execute(settings.database_url, """DELETE FROM "LiteLLM_SpendLogs" WHERE request_id = 'gone'""")
    await execute(settings.database_url, """UPDATE "LiteLLM_SpendLogs" SET spend = 0.9 WHERE request_id = 'changed'""")
    columns = ", ".join(f'"{c}"' for c in SPEND_LOG_COLUMNS[1:])
    await execute(settings.database_url, f"""INSERT INTO "LiteLLM_SpendLogs" (request_id, {columns})
                                           SELECT 'stray', {columns} FROM "LiteLLM_SpendLogs" WHERE request_id = 'ok'""")
    found = [str(d) for d in await find_differences(LedgerSettings(**settings.model_dump())) if d.what not in ("total", "rollup")]
    assert found == [
        "dead-lettered by pricer unpriced: answered but not priced",
        "extra in priced extra: priced without a usage event",
        "conflicting prices dup: dup: priced 0.1 and 0.3",
        'missing in spend logs gone: priced 0.000051, not in "LiteLLM_SpendLogs"',
        'dead-lettered by ledger nul: priced 0.000051, not in "LiteLLM_SpendLogs"',
        "extra in spend logs stray: spend 0.000051 with no priced event",
        "spend mismatch changed: logged 0.9, priced 0.000051",
    ]


async def _dead_lettered(settings: CommonSettings, request_id: str) -> bool:
    letters = await read_topic(settings, PRICED_DLQ, timeout=5)
    return any(decode_as(DeadLetter, r.value).request_id == request_id for r in letters)


async def execute(database_url: str, statement: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(statement)  # type: ignore[arg-type]
