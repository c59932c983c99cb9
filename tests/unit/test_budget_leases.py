"""The budget leases' arithmetic (leases.grant): slices, charges, returns, dead holders, the bound."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.proxy.budget.leases import DEAD_KEPT, DRAIN_GRACE, SETTLED, LeaseAsk, LeaseGrant, LeaseRow, grant, slice_of

D = Decimal
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=10)
DRAINED = NOW - DRAIN_GRACE  # the expiry of a row dead long enough for its holder's events to be counted


def ask(holder: str, keep: str = "0", used: str = "0", inflight: str = "0", want: str = "1", budget: str = "100",
        counted: str = "0", ledger_counted: bool = False) -> LeaseAsk:
    return LeaseAsk(holder, D(budget), D(counted), D(keep), D(used), D(inflight), D(want), ledger_counted=ledger_counted)


def counted_ask(holder: str, **fields: object) -> LeaseAsk:
    """An ask for an entity whose holders' spend the ledger counts (a key, team, ...)."""
    return ask(holder, ledger_counted=True, **fields)  # type: ignore[arg-type]


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


def test_a_dead_holder_stays_charged_in_full_while_its_successor_may_still_send_its_events() -> None:
    """b (granted 40, used 10) expired just now: until DRAIN_GRACE has passed it is charged 40 and kept."""
    dead = LeaseRow("b", D(40), D(10), D(0), NOW)
    result, after = grant([dead], counted_ask("a", want="100"), NOW + DRAIN_GRACE / 2)
    assert after == [dead, LeaseRow("a", D(60))]
    assert result.others_unused == D(0)


def test_a_dead_holder_the_ledger_counts_is_charged_what_it_spent_and_its_unused_grant_is_free() -> None:
    """b (granted 40, reported used 10, ledger counted 12) dead past the grace: charged 12, its row kept; a gets the other 88."""
    dead = LeaseRow("b", D(40), D(10), D(3), DRAINED, counted=D(12))
    result, after = grant([dead], counted_ask("a", want="100"), NOW)
    assert after == [dead, LeaseRow("a", D(88))]
    assert (result.granted, result.known, result.final, result.others_unused) == (D(88), D(100), True, D(0))


def test_a_dead_holder_stays_charged_in_full_while_the_ledger_shows_less_than_it_reported() -> None:
    """b reported used 10; the ledger has counted 6 of it so far (it lags): b stays charged its grant of 40."""
    result, _ = grant([LeaseRow("b", D(40), D(10), D(0), DRAINED, counted=D(6))], counted_ask("a", want="100"), NOW)
    assert result.granted == D(60)


def test_late_ledger_counts_raise_a_dead_holders_charge_at_the_next_renewal() -> None:
    """The ledger counts 4 more of b's calls after its charge fell: the next renewal sees 14 charged and grants nothing more."""
    _, rows = grant([LeaseRow("b", D(40), D(10), D(0), DRAINED, counted=D(10))], counted_ask("a", want="100"), NOW)
    assert rows[1] == LeaseRow("a", D(90))
    later = [LeaseRow("b", D(40), D(10), D(0), DRAINED, counted=D(14)), LeaseRow("a", D(90), D(90), D(0), LATER)]
    result, _ = grant(later, counted_ask("a", keep="90", used="90"), NOW)
    assert (result.granted, result.headroom, result.known, result.final) == (D(90), D(0), D(104), True)


def test_a_dead_row_is_folded_into_the_settled_row_at_its_charge_after_it_was_kept_an_hour() -> None:
    """Once b has been dead for DEAD_KEPT its charge (12) moves into ~settled and its row goes."""
    rows = [LeaseRow(SETTLED, D(7)), LeaseRow("b", D(40), D(10), D(0), NOW, counted=D(12))]
    _, after = grant(rows, counted_ask("a", want="1"), NOW + DEAD_KEPT)
    assert [row.holder for row in after] == [SETTLED, "a"]
    assert after[0] == LeaseRow(SETTLED, D(19))


def test_a_holder_renewing_its_own_row_within_the_grace_keeps_its_lease() -> None:
    """b's row expired a moment ago (still charged in full): b keeps its 40, whatever it reported committed."""
    rows = [LeaseRow("b", D(40), D(8), D(0), NOW), LeaseRow("a", D(50), D(0), D(0), LATER)]
    result, after = grant(rows, counted_ask("b", keep="40", used="10", inflight="2", want="1"), NOW)
    assert (result.granted, after[-1]) == (D("41.25"), LeaseRow("b", D("41.25"), D(10), D(2)))  # 40 + an eighth of the 10 left


def test_a_holder_renewing_its_own_row_past_the_grace_keeps_only_what_it_committed() -> None:
    """b's row dead past the grace (its grant of 40 may be a's by now): b, reporting 10 used and 2 in flight, keeps 12 plus new headroom."""
    rows = [LeaseRow("b", D(40), D(8), D(0), DRAINED), LeaseRow("a", D(60), D(0), D(0), LATER)]
    result, after = grant(rows, counted_ask("b", keep="40", used="10", inflight="2", want="1"), NOW)
    assert after[-1] == LeaseRow("b", D(12) + D(28) / 8, D(10), D(2))
    assert result.granted == D(12) + D(28) / 8


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


def test_random_deaths_overshoot_only_by_calls_answered_after_the_last_report_and_not_yet_counted() -> None:
    """3,000 random steps by 6 holders that spend within their grants, die without a word, and whose
    events the ledger counts late: every grant keeps the charges <= B, and the spend passes B by no
    more than the dead holders' spend the ledger had not counted when their rows were last charged."""
    rng = random.Random(11)
    budget = D(100)
    rows: list[LeaseRow] = []
    lease: dict[str, D] = {}
    spent: dict[str, D] = {}  # what each holder really spent (its calls answered)
    reported: dict[str, D] = {}
    counted: dict[str, D] = {}  # what the ledger has counted of it so far
    dead: set[str] = set()
    for step in range(3000):
        now = NOW + timedelta(seconds=step)
        for h in spent:  # the ledger catches up a little with each holder's events
            counted[h] = min(spent[h], counted[h] + D(rng.randint(0, 200)) / 100)
        live = [h for h in spent if h not in dead]
        if not live or rng.random() < 0.05:
            holder = f"h{step}"
            lease[holder] = spent[holder] = reported[holder] = counted[holder] = D(0)
        else:
            holder = rng.choice(live)
        spent[holder] = min(lease[holder], spent[holder] + D(rng.randint(0, 300)) / 100)
        if rng.random() < 0.03:  # it dies: answers a last few calls it never reports, then stops
            spent[holder] = min(lease[holder], spent[holder] + D(rng.randint(0, 300)) / 100)
            dead.add(holder)
            continue
        reported[holder] = spent[holder]
        window = [replace(r, expires_at=now - DRAIN_GRACE if r.holder in dead else now + timedelta(seconds=5),
                          counted=counted[r.holder] if r.holder in dead else None)
                  if r.holder != SETTLED else r for r in rows]
        result, rows = grant(window, LeaseAsk(holder, budget, D(0), lease[holder], spent[holder], D(0),
                                              D(rng.randint(1, 300)) / 100, ledger_counted=True), now)
        lease[holder] = result.granted
        charged = {r.holder: r for r in window}
        assert sum((r.dead_charge(now) if r.holder in dead else r.charge for r in rows), D(0)) <= budget
        uncounted = sum((spent[h] - charged[h].counted for h in dead if h in charged and charged[h].counted >= reported[h]),
                        D(0))
        assert sum(spent.values(), D(0)) <= budget + uncounted
