"""`python -m services.ledger reconcile`: clean books pass, a mismatch fails."""

from __future__ import annotations

from services.ledger.reconcile import find_differences
from services.ledger.settings import LedgerSettings
from shared.events import encode
from shared.topics import USAGE
from tests.integration.test_ledger_support import InProcessLedger, priced, produce, produce_raw, wait_for_logs


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
