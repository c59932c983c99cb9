"""The pure budget arithmetic of one worker: its lease, the ledger total, windows, the last call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from services.proxy.budget.core import Account, BudgetSpec, LedgerTotal, counted_spend, judge, window_of
from services.proxy.budget.estimate import Rates, completion_tokens_bound, estimate, prompt_tokens_bound
from shared.pricing import Catalog

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
D = Decimal


def leased(lease: str, own: str = "0", final: bool = False) -> Account:
    account = Account()
    account.roll(None, None)
    account.lease, account.own, account.final = D(lease), D(own), final
    return account


def test_a_call_is_admitted_while_it_fits_the_lease() -> None:
    """Lease 5, own 4: a call estimated at 1 fits; one at 2 is short (it waits for a renewal), not refused."""
    account = leased("5", own="4")
    assert judge(account, D(0), None, D(1)) == (True, D(0), False, False)
    assert judge(account, D(0), None, D(2)) == (False, D(0), False, True)


def test_a_call_that_still_does_not_fit_after_a_renewal_is_refused() -> None:
    """Short once; judged again after the renewal (waited), it is refused with the believed spend."""
    account = leased("5", own="4")
    account.reserve(D("0.5"))
    assert judge(account, D(3), None, D(2), waited=True) == (False, D("3.5"), False, False)


def test_ledger_total_and_uncounted_costs_make_the_believed_spend() -> None:
    """Ledger 8 + own uncounted 1 (settled after as_of) + reserved 0.5: the believed spend is 9.5."""
    account = leased("20")
    account.settle(account.reserve(D(0)), D(1), T0 + timedelta(seconds=5))
    account.reserve(D("0.5"))
    assert judge(account, D(8), T0, D(1)).believed_spend == D("9.5")


def test_costs_the_ledger_has_counted_are_not_counted_twice() -> None:
    """An own cost at t is dropped from the uncounted sum once the ledger's as_of reaches t."""
    account = Account()
    account.roll(None, None)
    reservation = account.reserve(D("0.5"))
    account.settle(reservation, D("0.25"), T0)
    assert account.uncounted(T0 - timedelta(seconds=1)) == D("0.25")
    assert account.uncounted(T0) == D(0)


def test_uncounted_costs_take_one_entry_per_50_ms_whatever_the_rate() -> None:
    """1,000 calls settled within 10 ms keep one entry, their exact sum, uncounted until as_of passes the latest."""
    # As when the ledger is down and calls settle faster than it counts them.
    account = Account()
    account.roll(None, None)
    for i in range(1000):
        account.settle(account.reserve(D(0)), D("0.000123"), T0 + timedelta(microseconds=10 * i))
    account.settle(account.reserve(D(0)), D("0.5"), T0 + timedelta(seconds=1))
    assert len(account.pending) == 2
    assert account.uncounted(T0 + timedelta(microseconds=9980)) == D("0.623")  # not all of the first 1,000 counted yet
    assert account.uncounted(T0 + timedelta(microseconds=9990)) == D("0.5")
    assert account.uncounted(T0 + timedelta(seconds=1)) == D(0)


def test_last_call_is_admitted_only_with_nothing_in_flight_and_a_final_lease() -> None:
    """Final lease 5, own 4.9: one more call passes alone (the one-call overshoot), not beside another."""
    account = leased("5", own="4.9", final=True)
    assert judge(account, D(0), None, D(1)) == (True, D(0), True, False)
    account.reserve(D(1))
    assert judge(account, D(0), None, D(1)) == (False, D(1), False, False)


def test_no_last_call_when_the_authority_may_grant_more_or_the_lease_is_used_up() -> None:
    """Not final: short (ask first). Final but own = lease: refused."""
    assert judge(leased("5", own="4.9"), D(0), None, D(1)).short
    assert judge(leased("5", own="5", final=True), D(0), None, D(1)) == (False, D(0), False, False)


def test_a_settled_call_of_an_older_window_does_not_count_in_the_new_one() -> None:
    """A call reserved before the window rolled releases nothing and adds nothing afterwards."""
    account = Account()
    account.roll(T0, T0 + timedelta(seconds=2))
    account.lease = D(5)
    reservation = account.reserve(D(3))
    account.roll(T0 + timedelta(seconds=2), T0 + timedelta(seconds=4))
    account.settle(reservation, D(2), T0 + timedelta(seconds=1))
    assert (account.own, account.reserved, account.inflight, account.lease) == (D(0), D(0), 0, D(0))


def test_windows_follow_the_ledgers_rule_from_created_at() -> None:
    """A 30s window anchored at created_at: 75 s later it is [60 s, 90 s); a later reset moves the start."""
    spec = BudgetSpec("key", "k", D(1), anchor=T0, duration=timedelta(seconds=30))
    assert window_of(spec, T0 + timedelta(seconds=75), None) == (T0 + timedelta(seconds=60), T0 + timedelta(seconds=90))
    reset = T0 + timedelta(seconds=70)
    assert window_of(spec, T0 + timedelta(seconds=75), reset)[0] == reset
    customer = BudgetSpec("customer", "c", D(1))
    assert window_of(customer, T0, reset) == (None, None)  # resets are for keys and teams


def test_a_ledger_total_from_an_older_window_counts_nothing() -> None:
    """The total counted up to 59 s belongs to the old window: 0 in the window starting at 60 s."""
    total = LedgerTotal(D("0.7"), T0 + timedelta(seconds=59), T0 + timedelta(seconds=30))
    assert counted_spend(total, T0 + timedelta(seconds=60)) == D(0)
    assert counted_spend(total, T0 + timedelta(seconds=30)) == D("0.7")
    assert counted_spend(total, None) == D("0.7")


def test_estimate_bounds_prompt_and_completion() -> None:
    """40 ASCII chars in one message = 47 tokens; max_tokens 80; at 5e-08/8e-08 = 0.00000875."""
    body = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 80}
    rates = Rates(D("5E-8"), D("8E-8"), 8192)
    assert prompt_tokens_bound("acompletion", body) == 47
    assert estimate(Catalog.from_entries({}), rates, "acompletion", body) == D("0.00000875")


def test_estimate_without_max_tokens_uses_the_models_output_cap_times_n() -> None:
    """No max_tokens, n=2: 2 x the model's max_output_tokens."""
    assert completion_tokens_bound({"n": 2}, Rates(D(0), D(0), 8192)) == 16384
