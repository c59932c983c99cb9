"""Each budget lease holder's spend per entity and budget window (`tally_holder_spend`, migration
0012), counted in the batch's transaction from the spend logs it really inserted.

A usage event names the lease holder (proxy worker) whose budget lease admitted the call. When a
holder dies, the lease authority charges its lease what this table (or the holder's own last
report) says it spent, not its whole grant (services/proxy/budget/leases.py). Only rows inserted
count, so a redelivered or replayed event adds nothing twice; an entity's spend is counted in its
window as the running totals just decided it (`EntityState.window_start`), the same window the
proxy's leases name. Logs of a window that already ended when the batch counted them are left out:
that window's leases are over. Batches with no holder in them (calls no budget lease admitted) run
no statement here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from services.ledger.batch_sql import ENTITY_BRANCHES
from services.ledger.rollup import EntityState
from services.ledger.rows import SpendLogLine

# The window of a budget without a start, as tally_leases.budget_leases names it.
NO_WINDOW = datetime(1, 1, 1, tzinfo=timezone.utc)
# The entity types budgets are leased for (tags have no budget).
COUNTED_TYPES = frozenset({"key", "team", "user", "customer", "organization"})

_HELD_LOGS = sql.SQL(" UNION ALL ").join(
    sql.SQL("SELECT {t} AS entity_type, {e} AS entity_id, n.at, n.spend, n.lease_holder FROM {j} n"
            " WHERE n.lease_holder IS NOT NULL{w}").format(
        t=sql.Literal(t), e=sql.SQL(e), j=sql.Identifier(j), w=sql.SQL(w.replace("WHERE", " AND")))
    for t, e, j, w in ENTITY_BRANCHES if t in COUNTED_TYPES
)

# Rows written in key order: the entities' totals rows are already locked in that order by this
# transaction, so two ledgers never wait on each other here.
COUNT = sql.SQL(
    "INSERT INTO tally_holder_spend AS h (entity_type, entity_id, window_start, holder, spend, window_end)"
    " SELECT v.entity_type, v.entity_id, v.start, e.lease_holder, sum(e.spend), v.window_end"
    " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS v(entity_type, entity_id, start, window_end)"
    " JOIN ({}) e ON e.entity_type = v.entity_type AND e.entity_id = v.entity_id AND e.at >= v.start"
    " GROUP BY 1, 2, 3, 4, 6 ORDER BY 1, 2, 3, 4"
    " ON CONFLICT (entity_type, entity_id, window_start, holder) DO UPDATE SET spend = h.spend + EXCLUDED.spend"
).format(_HELD_LOGS)


def windows(states: Sequence[EntityState]) -> tuple[list[str], list[str], list[datetime], list[datetime | None]]:
    """The counted entities' current windows, as COUNT's arrays."""
    counted = [s for s in states if s.entity_type in COUNTED_TYPES]
    return ([s.entity_type for s in counted], [s.entity_id for s in counted],
            [s.window_start or NO_WINDOW for s in counted], [s.budget_reset_at for s in counted])


async def queue_count(conn: psycopg.AsyncConnection, inserted: Sequence[SpendLogLine],
                      states: Sequence[EntityState]) -> Any:
    """Add the inserted logs that name a holder to its spend (queued in the caller's pipeline)."""
    if not any(line.lease_holder for line in inserted):
        return None
    return await conn.execute(COUNT, windows(states))
