"""The ledger writes each priced call once, with rollups and totals equal to the sums of its logs."""

from __future__ import annotations

from decimal import Decimal

from tests.integration.test_ledger_support import (
    T0, InProcessLedger, key_hash, priced, produce, query, wait_for_logs,
)


async def test_duplicated_priced_events_make_one_row_counted_once(settings):
    """The same request id three times (in one batch and across batches) is one row, counted once."""
    event = priced(request_id="req-dup", cost="0.000051")
    other = priced(request_id="req-other", cost="0.25")
    await produce(settings, [event, event, other])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 2)
        await produce(settings, [event])
        await wait_for_logs(settings.database_url, 2)
        async def offsets_caught_up() -> bool:
            rows = await query(settings.database_url, "SELECT sum(next_offset) FROM tally_consumer_offsets WHERE topic LIKE %s", (f"%priced.v1",))
            return rows[0][0] == 4
        from tests.integration.test_ledger_support import poll
        await poll(offsets_caught_up, what="all four priced events consumed")
    rows = await query(settings.database_url, 'SELECT request_id, spend FROM "LiteLLM_SpendLogs" ORDER BY 1')
    assert rows == [("req-dup", Decimal("0.000051")), ("req-other", Decimal("0.25"))]
    key = await query(settings.database_url, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', (key_hash("sk-a"),))
    assert key == [(Decimal("0.250051"),)]
    daily = await query(settings.database_url, 'SELECT spend, api_requests FROM "LiteLLM_DailyTeamSpend"')
    assert daily == [(Decimal("0.250051"), 2)]
