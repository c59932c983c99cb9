"""The ledger writes each priced call once, with rollups and totals equal to the sums of its logs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from shared import kafka
from shared.events import DeadLetter, decode, encode
from shared.topics import PRICED, PRICED_DLQ
from tests.fixtures.ledger_support import (
    T0, InProcessLedger, key_changed, key_hash, poll, priced, produce, produce_raw, query, spend_reset, wait_for_logs,
)


async def test_duplicated_priced_events_make_one_row_counted_once(settings):
    """The same request id three times (in one batch and across batches) is one row, counted once."""
    event = priced(request_id="req-dup", cost="0.000051")
    other = priced(request_id="req-other", cost="0.25")
    await produce(settings, [event, event, other])
    async with InProcessLedger(settings) as ledger:
        await wait_for_logs(settings.database_url, 2)
        await produce(settings, [event])
        await wait_for_logs(settings.database_url, 2)

        async def offsets_caught_up() -> bool:
            rows = await query(settings.database_url, "SELECT sum(next_offset) FROM tally_consumer_offsets WHERE topic = %s",
                               (settings.topic(PRICED),))
            return rows[0][0] == 4

        await poll(offsets_caught_up, what="all four priced events consumed")
    rows = await query(settings.database_url, 'SELECT request_id, spend FROM "LiteLLM_SpendLogs" ORDER BY 1')
    assert rows == [("req-dup", Decimal("0.000051")), ("req-other", Decimal("0.25"))]
    assert (ledger.metrics.inserted.get(), ledger.metrics.duplicates.get()) == (2, 2)
    key = await query(settings.database_url, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', (key_hash("sk-a"),))
    assert key == [(Decimal("0.250051"),)]
    daily = await query(settings.database_url, 'SELECT spend, api_requests FROM "LiteLLM_DailyTeamSpend"')
    assert daily == [(Decimal("0.250051"), 2)]


async def _differences(database_url: str) -> list[str]:
    import psycopg

    from services.ledger.checks import check_schema

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return [str(d) for d in await check_schema(conn)]


async def test_rollups_and_totals_equal_the_sums_of_the_logs(settings):
    """Every daily row and every key/team/user/customer/tag total is the exact sum of its logs."""
    events = [
        priced(cost="0.000051", tags=("a", "b")),
        priced(cost="0.1234567890123", key="sk-b", team="team-b", user=None, end_user="cust-b", tags=("a",)),
        priced(cost="0", status="failure", tags=()),
        priced(cost="7", at=T0 + timedelta(days=1), end_user=None),
    ]
    await produce(settings, events)
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 4)
    assert await _differences(settings.database_url) == []
    totals = dict(await query(settings.database_url, 'SELECT tag_name, spend FROM "LiteLLM_TagTable"'))
    assert totals == {"a": Decimal("0.1235077890123"), "b": Decimal("0.000051"), "tag-a": Decimal("7")}
    team_a = await query(settings.database_url,
                         'SELECT date, spend, api_requests, successful_requests, failed_requests FROM "LiteLLM_DailyTeamSpend"'
                         " WHERE team_id = 'team-a' ORDER BY date")
    assert team_a == [("2026-03-01", Decimal("0.000051"), 2, 1, 1), ("2026-03-02", Decimal("7"), 1, 1, 0)]
    customers = dict(await query(settings.database_url, 'SELECT user_id, spend FROM "LiteLLM_EndUserTable"'))
    assert customers == {"cust-a": Decimal("0.000051"), "cust-b": Decimal("0.1234567890123")}


async def test_bodies_are_not_stored_unless_asked(settings):
    """messages/response stay out of the spend log by default and go in when store_bodies is on."""
    await produce(settings, [priced(request_id="r-body", messages=[{"role": "user", "content": "hi"}], response={"x": 1})])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 1)
    assert await query(settings.database_url, 'SELECT messages, response FROM "LiteLLM_SpendLogs"') == [(None, None)]


async def test_bodies_are_stored_when_the_setting_asks(settings):
    """With store_bodies on, the request's messages and the response are kept."""
    await produce(settings, [priced(request_id="r-body", messages=[{"role": "user", "content": "hi"}], response={"x": 1})])
    async with InProcessLedger(settings, store_bodies=True):
        await wait_for_logs(settings.database_url, 1)
    assert await query(settings.database_url, 'SELECT messages, response FROM "LiteLLM_SpendLogs"') == [
        ([{"role": "user", "content": "hi"}], {"x": 1})]


async def _dead_letters(settings, expected: int) -> list[DeadLetter]:
    consumer = kafka.consumer(settings, PRICED_DLQ, group_id=None)
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            found.extend(decode(m.value) for ms in batch.values() for m in ms)
            return len(found) >= expected
        await poll(enough, what=f"{expected} dead letters")
    finally:
        await consumer.stop()
    return found


async def test_schema_violations_go_to_the_dead_letter_topic_and_the_ledger_moves_on(settings):
    """Garbage, a wrong event type and a NUL character are dead-lettered with a reason; good events around them land."""
    good = [priced(request_id=f"good-{i}") for i in range(3)]
    await produce(settings, [good[0]])
    await produce_raw(settings, PRICED, [b"not json", encode(spend_reset(T0))])
    await produce(settings, [good[1], priced(request_id="bad\x00id"), good[2]])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 3)
        letters = await _dead_letters(settings, 3)
    assert sorted(r for (r,) in await query(settings.database_url, 'SELECT request_id FROM "LiteLLM_SpendLogs"')) == [
        "good-0", "good-1", "good-2"]
    reasons = sorted(d.reason.split(":")[0] for d in letters)
    assert reasons == ["a spend_reset event does not belong on " + settings.topic(PRICED), "not a valid event",
                       "request_id contains a NUL character, which Postgres text and JSON refuse"]


async def test_a_database_constraint_violation_dead_letters_only_the_offender(settings):
    """Two keys with one alias: the second admin event is refused by the unique index and dead-lettered; the rest of its batch commits."""
    events = [
        key_changed("sk-1", at=T0, key_alias="shared-alias"),
        priced(request_id="p1", key="sk-1"),
        key_changed("sk-2", at=T0, key_alias="shared-alias"),
        priced(request_id="p2", key="sk-2"),
        key_changed("sk-3", at=T0, key_alias="other"),
    ]
    await produce(settings, events)
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 2)
        letters = await _dead_letters(settings, 1)
        async def keys_done() -> bool:
            return len(await query(settings.database_url, 'SELECT 1 FROM "LiteLLM_VerificationToken" WHERE key_alias IS NOT NULL')) == 2
        await poll(keys_done, what="two aliased keys")
    assert "UniqueViolation" in letters[0].reason
    aliases = await query(settings.database_url, 'SELECT token, key_alias, spend FROM "LiteLLM_VerificationToken" ORDER BY key_alias NULLS LAST')
    assert aliases == [(key_hash("sk-3"), "other", Decimal(0)), (key_hash("sk-1"), "shared-alias", Decimal("0.000051")),
                       (key_hash("sk-2"), None, Decimal("0.000051"))]


async def test_rollups_count_a_repeated_tag_once_and_keep_the_first_model_group(settings):
    """A tag repeated in one call counts once; an empty team rolls nowhere; a rollup row keeps the model_group of the first log read."""
    first = priced(request_id="r-first", cost="0.5", tags=("x", "x", "y"), team="")
    second = priced(request_id="r-second", cost="0.25", tags=("x",), team="")
    second = second.model_copy(update={"usage_event": second.usage_event.model_copy(update={"model_group": "other-group"})})
    await produce(settings, [first, second])
    async with InProcessLedger(settings):
        await wait_for_logs(settings.database_url, 2)
    tags = await query(settings.database_url, 'SELECT tag, spend, api_requests, model_group FROM "LiteLLM_DailyTagSpend" ORDER BY tag')
    assert tags == [("x", Decimal("0.75"), 2, "gpt-4o-mini"), ("y", Decimal("0.5"), 1, "gpt-4o-mini")]
    totals = await query(settings.database_url, 'SELECT tag_name, spend FROM "LiteLLM_TagTable" ORDER BY tag_name')
    assert totals == [("x", Decimal("0.75")), ("y", Decimal("0.5"))]
    assert await query(settings.database_url, 'SELECT count(*) FROM "LiteLLM_DailyTeamSpend"') == [(0,)]
    assert await query(settings.database_url, 'SELECT count(*) FROM "LiteLLM_TeamTable"') == [(0,)]
