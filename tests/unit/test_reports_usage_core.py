"""The Usage page's pure core: which table answers a question, the unnamed remainder, every day of
the range, stacked series with an (other) series, top rows, budgets closest first, and
/spend/logs/ui's dates."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.reports import usage
from services.reports.budgets import BudgetFilters, budget_rows
from services.reports.params import DateRange, parse_moment_range
from shared.errors import BadRequest

JUNE_1_TO_3 = DateRange(date(2024, 6, 1), date(2024, 6, 3))


def row(**values: object) -> dict:
    return {**{m: 0 for m in usage.MEASURES}, "spend": Decimal(0), **values}


@pytest.mark.parametrize("filters, group, source", [
    (usage.Filters(), ("date",), usage.Source("rollup", None)),
    (usage.Filters(model="gpt-4", keys=("k",)), ("key",), usage.Source("rollup", None)),
    (usage.Filters(team="a"), ("date", "model"), usage.Source("rollup", "team")),
    (usage.Filters(), ("customer",), usage.Source("rollup", "customer")),
    (usage.Filters(tag="x"), ("tag",), usage.Source("rollup", "tag")),
    (usage.Filters(team="a"), ("customer",), usage.Source("logs")),
    (usage.Filters(team="a", customer="c"), ("date",), usage.Source("logs")),
])
def test_the_source_is_one_rollup_unless_two_entities_meet(filters, group, source):
    """No entity: the api-key rollup; one: its rollup; two or more: the spend logs."""
    assert usage.source_for(filters, group) == source


def test_a_remainder_only_when_grouping_by_an_unfiltered_team_or_customer():
    """Teams and customers grouped without their own filter need the unnamed remainder; tags never do."""
    assert usage.needs_remainder(usage.Filters(), ("team",)) == "team"
    assert usage.needs_remainder(usage.Filters(model="m"), ("date", "customer")) == "customer"
    assert usage.needs_remainder(usage.Filters(team="a"), ("team",)) is None
    assert usage.needs_remainder(usage.Filters(), ("tag",)) is None
    assert usage.needs_remainder(usage.Filters(tag="x"), ("team",)) is None  # from the logs: '' is already there


def test_add_remainder_is_exact_per_day():
    """The api-key total minus the named teams, per day, as team ''; a day with nothing unnamed adds no row."""
    named = [row(date="d1", team="a", spend=Decimal("0.1"), api_requests=1),
             row(date="d2", team="a", spend=Decimal("0.3333333333333333333"), api_requests=2)]
    every_key = [row(date="d1", spend=Decimal("0.1000000000000000001"), api_requests=2),
                 row(date="d2", spend=Decimal("0.3333333333333333333"), api_requests=2)]
    out = usage.add_remainder(named, every_key, "team", ("date",))
    assert [(r["date"], r["team"], r["spend"], r["api_requests"]) for r in out] == [
        ("d1", "a", Decimal("0.1"), 1), ("d2", "a", Decimal("0.3333333333333333333"), 2),
        ("d1", "", Decimal("1E-19"), 1)]


def test_daily_fills_every_day_of_the_range():
    """Days without rows are zeros, in order; rows outside the range are ignored."""
    days = usage.daily(JUNE_1_TO_3, [row(date="2024-06-02", spend=Decimal("1.5"), api_requests=3),
                                     row(date="2024-06-09", spend=Decimal("9"), api_requests=1)])
    assert [(d["date"], d["spend"], d["api_requests"]) for d in days] == [
        ("2024-06-01", 0, 0), ("2024-06-02", Decimal("1.5"), 3), ("2024-06-03", 0, 0)]


def test_stacks_keep_the_biggest_and_merge_the_rest():
    """The STACKS biggest series by spend stay; the rest is one (other) series, exact per day."""
    rows = [row(date="2024-06-01", model=f"m{i}", spend=Decimal(i) / 1000) for i in range(1, usage.STACKS + 3)]
    rows.append(row(date="2024-06-03", model="m1", spend=Decimal("0.0000001")))
    series = usage.stacks(JUNE_1_TO_3, rows, "model")
    assert [s["name"] for s in series] == ["m9", "m8", "m7", "m6", "m5", "m4", "m3", usage.OTHER]
    assert series[-1]["daily"] == [Decimal("0.003"), 0, Decimal("0.0000001")]
    assert series[-1]["spend"] == Decimal("0.0030001")


def test_top_orders_by_spend_then_name_and_labels():
    """Highest spend first, ties by name, each with its label (or its name)."""
    rows = [row(key="b", spend=Decimal(1)), row(key="a", spend=Decimal(1)), row(key="c", spend=Decimal(2))]
    assert [(r["name"], r["label"]) for r in usage.top(rows, "key", {"a": "alias-a"})] == [("c", "c"), ("a", "alias-a"), ("b", "b")]


def budget(kind: str, id_: str, spend: str, max_budget: str, soft: str | None = None, team: str | None = None) -> dict:
    return {"kind": kind, "id": id_, "name": None, "team_id": team, "spend": Decimal(spend), "max_budget": Decimal(max_budget),
            "soft_budget": Decimal(soft) if soft else None, "budget_duration": None, "budget_reset_at": None}


def test_budgets_closest_first_with_soft_crossings():
    """Sorted by the exact share used (a zero budget first); the soft budget is crossed at spend >= soft."""
    rows = budget_rows([budget("key", "k", "0.5", "1", soft="0.5"), budget("team", "t", "0.9", "1"),
                        budget("user", "u", "0", "0"), budget("customer", "c", "0.49999", "1", soft="0.5")])
    assert [(r["kind"], r["used"], r["soft_budget_crossed"], r["remaining"]) for r in rows] == [
        ("user", None, False, 0), ("team", Decimal("0.9000"), False, Decimal("0.1")),
        ("key", Decimal("0.5000"), True, Decimal("0.5")), ("customer", Decimal("0.5000"), False, Decimal("0.50001"))]


def test_budget_filters():
    """A team filter keeps the team's rows; a key filter keeps those keys; a customer filter that customer."""
    rows = [budget("key", "k1", "0", "1", team="a"), budget("team", "a", "0", "1", team="a"), budget("customer", "c", "0", "1")]
    assert [r["id"] for r in budget_rows(rows, BudgetFilters(team="a"))] == ["k1", "a"]
    assert [r["id"] for r in budget_rows(rows, BudgetFilters(keys=("k1",)))] == ["k1"]
    assert [r["id"] for r in budget_rows(rows, BudgetFilters(customer="c"))] == ["c"]


def test_logs_ui_dates_litellm_and_whole_days():
    """"YYYY-MM-DD HH:MM:SS" includes the end second; a plain date includes the whole day."""
    utc = timezone.utc
    assert parse_moment_range({"start_date": "2024-06-01 00:00:00", "end_date": "2024-06-02 23:59:59"}) == \
        (datetime(2024, 6, 1, tzinfo=utc), datetime(2024, 6, 2, 23, 59, 59, 1, tzinfo=utc))
    assert parse_moment_range({"start_date": "2024-06-01", "end_date": "2024-06-02"}) == \
        (datetime(2024, 6, 1, tzinfo=utc), datetime(2024, 6, 3, tzinfo=utc))
    for bad in ({"start_date": "2024-06-01"}, {"start_date": "2024-06-02", "end_date": "2024-06-01"},
                {"start_date": "2024-06-01", "end_date": "9999-12-31"}, {"start_date": "x", "end_date": "2024-06-01"}):
        with pytest.raises(BadRequest):
            parse_moment_range(bad)
