"""The pure core's response shapes and exact Decimal sums, and JSON that keeps every digit."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from services.reports import shaping
from services.reports.jsonout import dumps

D = Decimal


def test_spend_logs_by_day_sums_per_key_user_and_model():
    """One day's rows become one entry with spend per key (top level), per user and per model."""
    rows = [
        {"date": date(2024, 5, 1), "api_key": "k1", "user": "ann", "model": "gpt-4", "spend": D("0.1")},
        {"date": date(2024, 5, 1), "api_key": "k1", "user": "ann", "model": "gpt-4o", "spend": D("0.2")},
        {"date": date(2024, 5, 1), "api_key": "k2", "user": None, "model": "gpt-4", "spend": D("0.0000001")},
    ]
    assert shaping.spend_logs_by_day(rows, fill_until=None) == [{
        "startTime": "2024-05-01", "spend": D("0.3000001"), "k1": D("0.3"), "k2": D("0.0000001"),
        "users": {"ann": D("0.3"), "": D("0.0000001")}, "models": {"gpt-4": D("0.1000001"), "gpt-4o": D("0.2")},
    }]


def test_spend_logs_by_day_fills_gaps_and_the_tail():
    """Days without spend between the first day and fill_until appear with zero spend."""
    rows = [{"date": date(2024, 5, 1), "api_key": "k", "user": "u", "model": "m", "spend": D("1")},
            {"date": date(2024, 5, 3), "api_key": "k", "user": "u", "model": "m", "spend": D("2")}]
    out = shaping.spend_logs_by_day(rows, fill_until=date(2024, 5, 4))
    assert [(d["startTime"], d["spend"]) for d in out] == [
        ("2024-05-01", D("1")), ("2024-05-02", D("0")), ("2024-05-03", D("2")), ("2024-05-04", D("0"))]


def test_spend_logs_by_day_without_rows_is_empty():
    """No spend: an empty list, however long the range."""
    assert shaping.spend_logs_by_day([], fill_until=date(9999, 12, 31)) == []


def test_teams_daily_labels_teamless_spend_unassigned():
    """Spend without a team is "Unassigned"; totals rank teams by spend."""
    rows = [{"date": date(2024, 5, 1), "team_alias": "Prod", "spend": D("0.1")},
            {"date": date(2024, 5, 1), "team_alias": None, "spend": D("0.3")},
            {"date": date(2024, 5, 2), "team_alias": "Prod", "spend": D("0.25")}]
    assert shaping.teams_daily(rows) == {
        "daily_spend": [{"date": "2024-05-01", "Prod": D("0.1"), "Unassigned": D("0.3")}, {"date": "2024-05-02", "Prod": D("0.25")}],
        "teams": ["Prod", "Unassigned"],
        "total_spend_per_team": [{"team_id": "Prod", "total_spend": D("0.35")}, {"team_id": "Unassigned", "total_spend": D("0.3")}],
    }


def test_tag_spend_orders_by_spend():
    """Tags come highest spend first, with whole-number counts."""
    rows = [{"tag": "a", "spend": D("1"), "log_count": 3}, {"tag": "b", "spend": D("2"), "log_count": 1}]
    assert shaping.tag_spend(rows) == {"spend_per_tag": [{"name": "b", "spend": D("2"), "log_count": 1},
                                                          {"name": "a", "spend": D("1"), "log_count": 3}]}


def _activity_row(day: str, entity: str, key: str, model: str, spend: str, failed: int = 0) -> dict:
    return {"date": day, "entity": entity, "api_key": key, "model": model, "model_group": model, "custom_llm_provider": "openai",
            "endpoint": "", "prompt_tokens": 10, "completion_tokens": 5, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0,
            "spend": D(spend), "api_requests": 1 + failed, "successful_requests": 1, "failed_requests": failed}


def test_daily_activity_breaks_each_day_down():
    """Each day carries its metrics and breakdowns by model, provider, key and entity."""
    rows = [_activity_row("2024-05-01", "team-a", "k1", "gpt-4", "0.1"),
            _activity_row("2024-05-01", "team-b", "k2", "gpt-4", "0.2", failed=1)]
    totals = {"spend": D("0.3"), "prompt_tokens": 20, "completion_tokens": 10, "cache_read_input_tokens": 4,
              "cache_creation_input_tokens": 0, "api_requests": 3, "successful_requests": 2, "failed_requests": 1}
    out = shaping.daily_activity(rows, totals=totals, key_metadata={"k1": {"key_alias": "one", "team_id": "team-a"}},
                                 page=1, page_size=50, total_rows=2)
    day = out["results"][0]
    assert day["metrics"] == {"spend": D("0.3"), "prompt_tokens": 20, "completion_tokens": 10, "cache_read_input_tokens": 4,
                              "cache_creation_input_tokens": 0, "total_tokens": 30, "api_requests": 3, "successful_requests": 2,
                              "failed_requests": 1}
    assert day["breakdown"]["models"]["gpt-4"]["metrics"]["spend"] == D("0.3")
    assert day["breakdown"]["api_keys"]["k1"]["metadata"] == {"key_alias": "one", "team_id": "team-a"}
    assert day["breakdown"]["api_keys"]["k2"]["metadata"] == {"key_alias": None, "team_id": None}
    assert set(day["breakdown"]["entities"]) == {"team-a", "team-b"}
    assert (out["metadata"]["total_spend"], out["metadata"]["total_tokens"], out["metadata"]["has_more"]) == (D("0.3"), 30, False)


@pytest.mark.parametrize("total_rows,page,pages,more", [(0, 1, 1, False), (10, 1, 1, False), (11, 1, 2, True), (11, 2, 2, False)])
def test_daily_activity_paging(total_rows, page, pages, more):
    """total_pages and has_more follow the row count and page size."""
    totals = {"spend": D(0), **{f: 0 for f in shaping.METRIC_FIELDS}}
    meta = shaping.daily_activity([], totals=totals, key_metadata={}, page=page, page_size=10, total_rows=total_rows)["metadata"]
    assert (meta["total_pages"], meta["has_more"]) == (pages, more)


@pytest.mark.parametrize("amount", ["0.3333333333333333333333", "0.000000000001", "123456789012345678901234.5", "1E-7", "0"])
def test_json_money_keeps_every_digit(amount):
    """A Decimal leaves as a JSON number with exactly its own digits."""
    text = dumps({"spend": D(amount)})
    assert text == b'{"spend":' + str(D(amount)).encode() + b"}"
    assert json.loads(text, parse_float=Decimal, parse_int=Decimal)["spend"] == D(amount)


def test_json_refuses_nan():
    """NUMERIC NaN is not money: serialising it fails loudly."""
    with pytest.raises(TypeError):
        dumps({"spend": D("NaN")})


def test_float_sum_would_be_wrong():
    """Why: 0.1 + 0.2 in floats is not 0.3, the Decimal sum is."""
    assert dumps(D("0.1") + D("0.2")) == b"0.3"


def test_key_report_sums_rows_per_key_and_model():
    """(key, model) rows sum to one entry per key with model_details, highest cost first, ties by key then model."""
    rows = [{"api_key": "k1", "model": "a", "total_cost": D("0.1"), "total_input_tokens": 1, "total_output_tokens": 2},
            {"api_key": "k1", "model": "a", "total_cost": D("0.2"), "total_input_tokens": 3, "total_output_tokens": 4},
            {"api_key": "k1", "model": "b", "total_cost": D("0.00001"), "total_input_tokens": 5, "total_output_tokens": 0},
            {"api_key": "k0", "model": "b", "total_cost": D("0"), "total_input_tokens": 0, "total_output_tokens": 0},
            {"api_key": "k0", "model": "a", "total_cost": D("0"), "total_input_tokens": 0, "total_output_tokens": 0},
            {"api_key": "k2", "model": "a", "total_cost": D("1"), "total_input_tokens": 0, "total_output_tokens": 0}]
    assert shaping.key_report(shaping.add_key_model_rows({}, rows)) == [
        {"api_key": "k2", "total_cost": D("1"), "total_input_tokens": 0, "total_output_tokens": 0,
         "model_details": [{"model": "a", "total_cost": D("1"), "total_input_tokens": 0, "total_output_tokens": 0}]},
        {"api_key": "k1", "total_cost": D("0.30001"), "total_input_tokens": 9, "total_output_tokens": 6,
         "model_details": [{"model": "a", "total_cost": D("0.3"), "total_input_tokens": 4, "total_output_tokens": 6},
                           {"model": "b", "total_cost": D("0.00001"), "total_input_tokens": 5, "total_output_tokens": 0}]},
        {"api_key": "k0", "total_cost": D("0"), "total_input_tokens": 0, "total_output_tokens": 0,
         "model_details": [{"model": "a", "total_cost": D("0"), "total_input_tokens": 0, "total_output_tokens": 0},
                           {"model": "b", "total_cost": D("0"), "total_input_tokens": 0, "total_output_tokens": 0}]},
    ]


def test_key_model_sums_keep_more_than_28_digits():
    """Adding to a base is exact past the default 28-digit Decimal context, and leaves the base as it was."""
    base = shaping.add_key_model_rows({}, [{"api_key": "k", "model": "m", "total_cost": D("123456789012.3333333333333333333"),
                                            "total_input_tokens": 1, "total_output_tokens": 1}])
    summed = shaping.add_key_model_rows(base, [{"api_key": "k", "model": "m", "total_cost": D("0.0000000000000000001"),
                                                "total_input_tokens": 2, "total_output_tokens": 3}])
    assert (summed[("k", "m")], base[("k", "m")]) == ([D("123456789012.3333333333333333334"), 3, 4],
                                                      [D("123456789012.3333333333333333333"), 1, 1])


def test_join_days_makes_one_list():
    """Per-day JSON objects join into one JSON list, [] when there are none."""
    assert (shaping.join_days([]), shaping.join_days(['{"a": 1}', '{"b": 2}'])) == (b"[]", b'[{"a": 1},{"b": 2}]')


def test_integers_beyond_64_bits_in_metadata_are_written_exactly():
    """A caller's metadata may hold any JSON integer; it leaves as the same number, not a 500."""
    from services.reports.jsonout import dumps

    assert dumps({"metadata": {"n": 2**70 + 1, "small": 1}}) == b'{"metadata":{"n":1180591620717411303425,"small":1}}'
