"""The pricer sets aside what it cannot price or produce and goes on: a priced event too large for
the broker is dead-lettered, a refused dead letter is quarantined, and /health and lag stay true."""

from __future__ import annotations

import pytest

from services.pricer.app import build_app
from services.pricer.settings import PricerSettings
from shared.events import DeadLetter, decode, decode_as, encode
from shared.pricing import load_catalog
from shared.record_limits import MAX_RECORD_BYTES
from shared.topics import PRICED, USAGE, USAGE_DLQ
from tests.fixtures.ledger_support import poll, query
from tests.fixtures.stack import serving
from tests.fixtures.stages import dlq, health, limit_topic, metric, read_topic
from tests.integration.test_pricer_exactly_once import produce, usage

pytestmark = pytest.mark.integration


def pricer_settings(settings) -> PricerSettings:
    return PricerSettings(**settings.model_dump(), group_id=f"{settings.topic_prefix}tally-pricer",
                          transactional_id=f"{settings.topic_prefix}tally-pricer-0", batch_size=200,
                          stall_after_s=1.0, progress_interval_s=0.2)


def oversized_usage() -> bytes:
    """A usage event a few bytes under the record limit: its priced event, a few hundred bytes more, is over it."""
    base = usage(999999).model_copy(update={"metadata": {"p": ""}})
    filler = MAX_RECORD_BYTES - 64 - 100 - len(encode(base))  # 64: the key; 100 bytes to spare
    return encode(base.model_copy(update={"metadata": {"p": "x" * filler}}))


async def test_a_usage_event_whose_priced_event_would_not_fit_is_dead_lettered_and_pricing_goes_on(settings):
    """The oversized event is dead-lettered with its size and the limit; the 20 after it are priced exactly once."""
    big = oversized_usage()
    after = [usage(i) for i in range(20)]
    await produce(settings, [(b"k" * 64, big), *((b"k" * 64, encode(e)) for e in after)])
    async with serving(build_app(pricer_settings(settings), load_catalog())) as base:
        await poll(lambda: _priced(settings, 20), timeout=30, what="20 priced events")
        await poll(lambda: _lag_is(base, 0.0), what="the pricer's lag back to 0")
        assert (await health(base))[0] == 200
    (record,) = await read_topic(settings, USAGE_DLQ)
    letter = decode_as(DeadLetter, record.value)
    assert len(big) == MAX_RECORD_BYTES - 164 and len(record.value) < 6_000
    assert (letter.source_topic, letter.offset, letter.payload_bytes, letter.request_id) == (
        settings.topic(USAGE), 0, len(big), "req-999999")
    assert letter.reason.startswith("the priced event would be 10")
    assert letter.reason.endswith(f" bytes, over the record limit of {MAX_RECORD_BYTES} bytes")
    priced_ids = sorted(decode(r.value).request_id for r in await read_topic(settings, PRICED))
    assert priced_ids == [e.request_id for e in after]


async def test_a_refused_dead_letter_is_quarantined_and_the_batch_is_priced_without_it(settings):
    """With a dlq topic that takes only 300-byte records, the unreadable event is quarantined in Postgres and every
    other event of its batch is priced exactly once; `dlq list` shows it."""
    await limit_topic(settings, USAGE_DLQ, 300)
    after = [usage(i) for i in range(20)]
    await produce(settings, [(b"k", b"not json"), *((b"k", encode(e)) for e in after)])
    async with serving(build_app(pricer_settings(settings), load_catalog())) as base:
        await poll(lambda: _priced(settings, 20), timeout=30, what="20 priced events")
        assert await metric(base, "tally_pricer_events_quarantined_total") == 1.0
        await poll(lambda: _lag_is(base, 0.0), what="the pricer's lag back to 0")
        assert (await health(base))[0] == 200
    priced_ids = sorted(decode(r.value).request_id for r in await read_topic(settings, PRICED))
    assert priced_ids == [e.request_id for e in after]
    rows = await query(settings.database_url, "SELECT stage, source_topic, source_offset, payload_bytes, excerpt, reason,"
                                              " source_partition FROM tally_dlq.quarantine")
    assert [r[:5] for r in rows] == [("pricer", settings.topic(USAGE), 0, 8, "not json")]
    assert rows[0][5].startswith("unreadable usage event: ") and "the dead letter could not be sent: MessageSizeTooLargeError" in rows[0][5]
    assert await read_topic(settings, USAGE_DLQ) == []
    status, out, _ = await dlq(settings, "pricer", "list")
    assert status == 0 and f"{settings.topic(USAGE)}:{rows[0][6]}:0 " in out and "quarantined" in out
    assert out.splitlines()[-1] == "pricer: 1 record(s) set aside, 0 replayed"


async def _priced(settings, expected: int) -> bool:
    return len(await read_topic(settings, PRICED)) >= expected


async def _lag_is(base: str, expected: float) -> bool:
    return await metric(base, "tally_pricer_consumer_lag") == expected


async def test_a_priced_record_the_broker_refuses_is_found_alone_and_dead_lettered(settings):
    """With a priced topic that takes only 4,000-byte batches (below the record limit), the pricer sends records one by
    one to find the refused one, dead-letters it, and prices the other 10 exactly once."""
    await limit_topic(settings, PRICED, 4000)
    big = usage(100).model_copy(update={"metadata": {"p": "x" * 5000}})
    small = [usage(i) for i in range(10)]
    await produce(settings, [(b"k", encode(e)) for e in (*small[:5], big, *small[5:])])
    async with serving(build_app(pricer_settings(settings), load_catalog())) as base:
        await poll(lambda: _priced(settings, 10), timeout=30, what="10 priced events")
        await poll(lambda: _lag_is(base, 0.0), what="the pricer's lag back to 0")
        assert await metric(base, "tally_pricer_events_dead_lettered_total") == 1.0
    (record,) = await read_topic(settings, USAGE_DLQ)
    letter = decode_as(DeadLetter, record.value)
    assert (letter.offset, letter.request_id) == (5, "req-000100")
    assert letter.reason.startswith("the broker refused the priced event: MessageSizeTooLargeError")
    priced_ids = sorted(decode(r.value).request_id for r in await read_topic(settings, PRICED))
    assert priced_ids == [e.request_id for e in small]
