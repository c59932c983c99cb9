"""The budget leases' arithmetic (leases.grant): slices, charges, returns, dead holders, the bound."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.proxy.budget.leases import SETTLED, LeaseAsk, LeaseGrant, LeaseRow, grant, slice_of

D = Decimal
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=10)


def ask(holder: str, keep: str = "0", used: str = "0", inflight: str = "0", want: str = "1", budget: str = "100",
        counted: str = "0") -> LeaseAsk:
    return LeaseAsk(holder, D(budget), D(counted), D(keep), D(used), D(inflight), D(want))


def test_a_grant_is_an_eighth_of_what_is_left_and_at_least_what_was_asked() -> None:
    """B=100, nothing leased: 12.5; with 96 leased elsewhere, 4 left: the ask (1), not an eighth of 4."""
    result, rows = grant([], ask("a"), LATER)
    assert result == LeaseGrant(D("12.5"), D("12.5"), False, D("12.5"))
    assert rows == [LeaseRow("a", D("12.5"))]
    result, _ = grant([LeaseRow("b", D(96), expires_at=LATER)], ask("a"), NOW)
    assert (result.granted, result.final) == (D(1), False)


def test_the_last_of_the_budget_is_granted_whole_and_final() -> None:
    """0.5 left, a call estimated at 1 asks: it gets the 0.5, the grant says nothing is left and that b holds 99.5 unused."""
    result, _ = grant([LeaseRow("b", D("99.5"), D(0), D(0), LATER)], ask("a"), NOW)
    assert result == LeaseGrant(D("0.5"), D("0.5"), True, D(100), D("99.5"))


def test_a_renewal_adds_to_what_the_holder_keeps() -> None:
    """Holder a keeps its 12.5 (used 11) and gets an eighth of the 87.5 left, on one row."""
    rows = [LeaseRow("a", D("12.5"), D(5), D(1), LATER)]
    result, after = grant(rows, ask("a", keep="12.5", used="11", inflight="1"), NOW)
    assert result.granted == D("12.5") + D("87.5") / 8
    assert after == [LeaseRow("a", result.granted, D(11), D(1))]


def test_a_row_is_charged_at_least_what_its_holder_reported() -> None:
    """After a last call past its grant (5), used 5.7: the row charges 5.7, so only 94.3 is free."""
    row = LeaseRow("b", D(5), D("5.7"), D(0), LATER)
    assert row.charge == D("5.7")
    result, _ = grant([row], ask("a", want="100"), NOW)
    assert result.granted == D("94.3")


def test_a_return_frees_what_the_holder_did_not_use() -> None:
    """b returns keeping its 3 used of 50: a then gets an eighth of 97, not of 50."""
    rows = [LeaseRow("b", D(50), D(3), D(0), LATER)]
    _, rows = grant(rows, ask("b", keep="3", used="3", want="0"), NOW)
    assert rows == [LeaseRow("b", D(3), D(3), D(0))]
    result, _ = grant([LeaseRow("b", D(3), D(3), D(0), LATER)], ask("a"), NOW)
    assert result.granted == D(97) / 8


def test_a_dead_holders_lease_is_folded_into_the_settled_row_at_its_full_charge() -> None:
    """b's lease (granted 40, used 10) expired: folded into ~settled as 40, which stays charged."""
    rows = [LeaseRow(SETTLED, D(7)), LeaseRow("b", D(40), D(10), D(0), NOW)]
    result, after = grant(rows, ask("a", want="100"), NOW)
    assert after == [LeaseRow(SETTLED, D(47)), LeaseRow("a", D(53))]
    assert result.known == D(100)


def test_the_ledgers_total_bounds_what_is_free_when_it_shows_more_than_the_leases() -> None:
    """Leases charge 10 but the ledger counted 60 in the window (spend before leases): 40 is free."""
    result, _ = grant([LeaseRow("b", D(10), expires_at=LATER)], ask("a", want="100", counted="60"), NOW)
    assert result.granted == D(40)


def test_nothing_is_granted_when_nothing_is_left() -> None:
    """Budget used up (b used 70 of its 100, 30 in flight): no headroom, final, nothing unused elsewhere."""
    result, _ = grant([LeaseRow("b", D(100), D(70), D(30), LATER)], ask("a", keep="0"), NOW)
    assert result == LeaseGrant(D(0), D(0), True, D(100), D(0))
    assert slice_of(D(-1), D(1)) == D(0)


def test_random_renewals_and_returns_never_charge_more_than_the_budget() -> None:
    """2,000 random asks by 4 holders (each never committing past its grant): the charges stay <= B."""
    rng = random.Random(7)
    budget = D(100)
    rows: list[LeaseRow] = []
    lease = {h: D(0) for h in "abcd"}
    used = {h: D(0) for h in "abcd"}
    for step in range(2000):
        holder = rng.choice("abcd")
        used[holder] = min(lease[holder], used[holder] + D(rng.randint(0, 300)) / 100)  # spends within its lease
        returning = rng.random() < 0.2
        keep = used[holder] if returning else lease[holder]
        now = NOW + timedelta(seconds=step)
        live = [LeaseRow(r.holder, r.granted, r.used, r.inflight, now + timedelta(seconds=5)) if r.holder != SETTLED else r
                for r in rows]
        result, rows = grant(live, LeaseAsk(holder, budget, D(0), keep, used[holder], D(0),
                                            D(0) if returning else D(rng.randint(1, 300)) / 100), now)
        lease[holder] = result.granted
        assert sum((r.charge for r in rows), D(0)) <= budget
        assert sum(used.values(), D(0)) <= budget
