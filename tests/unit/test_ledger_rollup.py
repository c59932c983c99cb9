"""Running totals in budget windows, log by log and from per-entity sums."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.ledger.rollup import EntityState, NewLogs, advance, advanced, counts_all, next_window

T = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_advance_adds_within_the_window():
    """New logs in the current window add to the running spend."""
    state = EntityState("key", "k1", anchor=T, duration=timedelta(days=1), spend=Decimal("1.5"), window_start=T, as_of=T)
    after = advance(state, [(T + timedelta(hours=1), Decimal("0.25"))], None)
    assert (after.spend, after.window_start, after.as_of, after.budget_reset_at) == (
        Decimal("1.75"), T, T + timedelta(hours=1), T + timedelta(days=1))


def test_advance_starts_a_new_window_from_zero():
    """A log in the next window starts spend afresh; a late log from the old window is not counted."""
    state = EntityState("key", "k1", anchor=T, duration=timedelta(days=1), spend=Decimal("9"), window_start=T, as_of=T)
    after = advance(state, [(T + timedelta(days=1, hours=2), Decimal("2")), (T + timedelta(hours=3), Decimal("5"))], None)
    assert (after.spend, after.window_start) == (Decimal("2"), T + timedelta(days=1))


def test_advance_ignores_logs_before_a_spend_reset_for_keys_and_teams_only():
    """A reset at R: a key counts only logs at or after R; a user is not reset."""
    reset = T + timedelta(minutes=10)
    logs = [(T, Decimal("1")), (T + timedelta(minutes=20), Decimal("2"))]
    key = advance(EntityState("key", "k1"), logs, reset)
    user = advance(EntityState("user", "u1"), logs, reset)
    assert (key.spend, key.window_start) == (Decimal("2"), reset)
    assert (user.spend, user.window_start) == (Decimal("3"), None)


def test_advance_is_order_independent():
    """Feeding the same logs in any split and order gives the same final state (replay = live)."""
    state = EntityState("team", "t1", anchor=T, duration=timedelta(hours=1))
    logs = [(T + timedelta(minutes=m), Decimal(m) / 100) for m in (5, 70, 65, 130, 10, 125)]
    all_at_once = advance(state, logs, None)
    one_by_one = state
    for item in reversed(logs):
        one_by_one = advance(one_by_one, [item], None)
    assert all_at_once == one_by_one
    assert all_at_once.spend == Decimal("2.55") and all_at_once.window_start == T + timedelta(hours=2)


def from_sums(state: EntityState, logs: list[tuple[datetime, Decimal]], reset: datetime | None) -> EntityState:
    """What the adapter does: Postgres' per-entity sums, and the partial sum only when needed."""
    new = NewLogs(min(t for t, _ in logs), max(t for t, _ in logs), sum((s for _, s in logs), Decimal(0)))
    as_of, start = next_window(state, new.last, reset)
    counted = new.spend if counts_all(new, start) else sum((s for t, s in logs if t >= start), Decimal(0))
    return advanced(state, as_of, start, counted)


def test_per_entity_sums_give_the_log_by_log_state():
    """In one window, across a window change, and after a reset, the summed path equals advance()."""
    windowed = EntityState("key", "k1", anchor=T, duration=timedelta(days=1), spend=Decimal("9"), window_start=T, as_of=T)
    cases = [
        (windowed, [(T + timedelta(hours=1), Decimal("0.25")), (T + timedelta(hours=2), Decimal("0.5"))], None),
        (windowed, [(T + timedelta(days=1, hours=2), Decimal("2")), (T + timedelta(hours=3), Decimal("5"))], None),
        (EntityState("team", "t1"), [(T, Decimal("1")), (T + timedelta(minutes=20), Decimal("2"))], T + timedelta(minutes=10)),
    ]
    for state, logs, reset in cases:
        assert from_sums(state, logs, reset) == advance(state, logs, reset)
    assert [from_sums(s, logs, r).spend for s, logs, r in cases] == [Decimal("9.75"), Decimal("2"), Decimal("2")]
