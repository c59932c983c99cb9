"""The lease stores' contract, run against Postgres (migration 0007) and the in-memory twin alike:
renewals of one window take turns, so racing holders never lease past the budget, a lease not
renewed within its TTL is folded into the settled row by the store's own clock, and a dead holder of
an entity the ledger counts is charged what the ledger counted of it (tally_holder_spend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from services.proxy.budget.lease_store import MemoryLeaseStore, PostgresLeaseStore, WindowKey
from services.proxy.budget.leases import DRAIN_GRACE, LeaseAsk
from shared.db import pool as db_pool
from tests.fixtures.polling import eventually_async

pytestmark = pytest.mark.integration
D = Decimal
WINDOW = WindowKey("key", "k1", datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc))


class Stores:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def rows(self, store: object) -> list[tuple[str, Decimal]]:
        if isinstance(store, MemoryLeaseStore):
            return sorted((row.holder, row.charge) for row in store.windows.get(WINDOW, []))
        with psycopg.connect(self.database_url) as conn:
            return sorted(conn.execute("SELECT holder, greatest(granted, used + inflight) FROM tally_leases.budget_leases").fetchall())

    def count(self, store: object, holder: str, spend: Decimal) -> None:
        """What the ledger has counted of `holder`'s spend in WINDOW."""
        if isinstance(store, MemoryLeaseStore):
            store.holder_spend[(WINDOW, holder)] = spend
            return
        with psycopg.connect(self.database_url) as conn:
            conn.execute("INSERT INTO tally_holder_spend (entity_type, entity_id, window_start, holder, spend, window_end)"
                         " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (entity_type, entity_id, window_start, holder)"
                         " DO UPDATE SET spend = EXCLUDED.spend",
                         (WINDOW.entity_type, WINDOW.entity_id, WINDOW.start, holder, spend, WINDOW.end))

    def age(self, store: object, holder: str, past_expiry: timedelta) -> None:
        """Move the store's clock on until `holder`'s lease expired `past_expiry` ago."""
        if isinstance(store, MemoryLeaseStore):
            expires = next(row.expires_at for row in store.windows[WINDOW] if row.holder == holder)
            store.clock = lambda: expires + past_expiry  # type: ignore[operator]
            return
        with psycopg.connect(self.database_url) as conn:  # the authority's clock is Postgres's now()
            conn.execute("UPDATE tally_leases.budget_leases SET expires_at = now() - %s WHERE holder = %s", (past_expiry, holder))

    def expired(self, holder: str) -> bool:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT expires_at <= now() FROM tally_leases.budget_leases WHERE holder = %s", (holder,)).fetchone()
            return bool(row and row[0])


@pytest.fixture(params=["postgres", "memory"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[tuple[object, Stores]]:
    if request.param == "memory":
        yield MemoryLeaseStore(), Stores(database_url)
        return
    pool = db_pool(database_url, min_size=4, max_size=4)
    await pool.open()
    try:
        yield PostgresLeaseStore(pool), Stores(database_url)
    finally:
        await pool.close()


async def test_racing_holders_never_lease_past_the_budget(store: tuple[object, Stores]) -> None:
    """40 holders ask at once for 3 of a budget of 100: 33 get 3, one the last 1, six nothing; total exactly 100."""
    lease_store, stores = store
    asks = [LeaseAsk(f"h{i}", D(100), D(0), D(0), D(0), D(0), D(3)) for i in range(40)]
    grants = await asyncio.gather(*(lease_store.renew(WINDOW, ask, 30) for ask in asks))  # type: ignore[attr-defined]
    granted = sorted((g.granted for g in grants), reverse=True)
    assert sum(granted, D(0)) == D(100)
    assert granted[:2] == [D("12.5"), D("10.9375")]  # the first asks get an eighth of what is left
    assert granted[-1] == D(0) and grants[-1].final
    assert sum((charge for _, charge in stores.rows(lease_store)), D(0)) == D(100)


async def test_a_lease_not_renewed_within_its_ttl_is_folded_into_the_settled_row(store: tuple[object, Stores]) -> None:
    """Holder a (granted 12.5, used 2) stops renewing; after its 0.2 s TTL, b's renewal folds it into ~settled at 12.5."""
    lease_store, stores = store
    await lease_store.renew(WINDOW, LeaseAsk("a", D(100), D(0), D(0), D(0), D(0), D(1)), 0.2)  # type: ignore[attr-defined]
    await lease_store.renew(WINDOW, LeaseAsk("a", D(100), D(0), D("12.5"), D(2), D(0), D(0)), 0.2)  # type: ignore[attr-defined]
    if isinstance(lease_store, MemoryLeaseStore):
        lease_store.clock = lambda: datetime.now(timezone.utc) + timedelta(seconds=1)
    else:
        await eventually_async(lambda: stores.expired("a"), 5, "a's lease to pass its expiry by Postgres's clock")
    grant = await lease_store.renew(WINDOW, LeaseAsk("b", D(100), D(0), D(0), D(0), D(0), D(100)), 30)  # type: ignore[attr-defined]
    assert grant.granted == D("87.5")
    assert stores.rows(lease_store) == [("b", D("87.5")), ("~settled", D("12.5"))]


async def test_a_dead_holder_past_the_grace_is_charged_what_the_ledger_counted_of_it(store: tuple[object, Stores]) -> None:
    """a (granted 12.5, used 2) dead past DRAIN_GRACE, the ledger counted 3 of it: b gets 97; counted 5 later, b's next renewal knows 102."""
    lease_store, stores = store
    await lease_store.renew(WINDOW, LeaseAsk("a", D(100), D(0), D(0), D(0), D(0), D(1), ledger_counted=True), 30)  # type: ignore[attr-defined]
    await lease_store.renew(WINDOW, LeaseAsk("a", D(100), D(0), D("12.5"), D(2), D(0), D(0), ledger_counted=True), 30)  # type: ignore[attr-defined]
    stores.count(lease_store, "a", D(3))
    stores.age(lease_store, "a", DRAIN_GRACE + timedelta(seconds=1))
    ask = LeaseAsk("b", D(100), D(0), D(0), D(0), D(0), D(100), ledger_counted=True)
    assert (await lease_store.renew(WINDOW, ask, 30)).granted == D(97)  # type: ignore[attr-defined]
    assert stores.rows(lease_store) == [("a", D("12.5")), ("b", D(97))]  # a's row kept, its grant as it was
    stores.count(lease_store, "a", D(5))
    again = LeaseAsk("b", D(100), D(0), D(97), D(97), D(0), D(1), ledger_counted=True)
    grant = await lease_store.renew(WINDOW, again, 30)  # type: ignore[attr-defined]
    assert (grant.headroom, grant.known, grant.final) == (D(0), D(102), True)


async def test_the_first_renewal_creates_the_lease_table_on_a_database_the_ledger_has_not_migrated(
        fresh_database_url: str) -> None:
    """Two first renewals at once on an empty database: the table is made once, a gets 12.5 of 100, b 10.9375."""
    pool = db_pool(fresh_database_url, min_size=0, max_size=2)
    await pool.open()
    try:
        store = PostgresLeaseStore(pool)
        grants = await asyncio.gather(*(store.renew(WINDOW, LeaseAsk(h, D(100), D(0), D(0), D(0), D(0), D(1)), 30) for h in "ab"))
        assert sorted(g.granted for g in grants) == [D("10.9375"), D("12.5")]
    finally:
        await pool.close()
