"""Query-parameter parsing for the spend routes: dates, limits, booleans, group_by, keys."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.reports import params
from shared.errors import BadRequest
from shared.keys import hash_key


def test_range_is_inclusive_utc_days():
    """2024-04-30..2024-05-02 covers three days, up to but excluding 05-03 00:00 UTC."""
    days = params.date_range({"start_date": "2024-04-30", "end_date": "2024-05-02"})
    assert days is not None
    assert (days.start_at, days.end_before, len(days.days())) == (
        datetime(2024, 4, 30, tzinfo=timezone.utc), datetime(2024, 5, 3, tzinfo=timezone.utc), 3)


def test_one_day_range_is_allowed():
    """start == end is one whole day."""
    days = params.date_range({"start_date": "2024-05-02", "end_date": "2024-05-02"})
    assert days is not None and days.days() == [date(2024, 5, 2)]


def test_end_before_start_names_both():
    """An end before the start is a 400 that says so."""
    with pytest.raises(BadRequest, match="end_date 2024-05-01 is before start_date 2024-05-02"):
        params.date_range({"start_date": "2024-05-02", "end_date": "2024-05-01"})


@pytest.mark.parametrize("raw", ["2024-5-1", "20240501", "2024-05-01T00:00", "yesterday", "2024-13-01", "2024-02-30", ""])
def test_bad_dates_are_refused(raw):
    """Anything but a real YYYY-MM-DD date is a 400."""
    with pytest.raises(BadRequest):
        params.date_range({"start_date": raw or " ", "end_date": "2024-05-01"})


def test_only_one_date_is_refused():
    """Giving one date without the other is a 400 naming the missing one."""
    with pytest.raises(BadRequest, match="end_date is missing"):
        params.date_range({"start_date": "2024-05-01"})


def test_optional_range_defaults_to_the_last_n_days():
    """No dates on an optional route: the last 30 days ending today."""
    days = params.date_range({}, required=False, default_days=30, today=date(2024, 5, 30))
    assert days == params.DateRange(date(2024, 5, 1), date(2024, 5, 30))


@pytest.mark.parametrize("raw,expected", [(None, 10), ("", 10), ("1", 1), (" 25 ", 25)])
def test_limits(raw, expected):
    """A missing limit takes the default; a whole number is taken as is."""
    assert params.parse_int("limit", raw, default=10) == expected


@pytest.mark.parametrize("raw", ["-1", "0", "1.5", "ten", "100001"])
def test_bad_limits(raw):
    """Negative, zero, fractional, non-numeric or absurd limits are 400s."""
    with pytest.raises(BadRequest):
        params.parse_int("limit", raw, default=10)


@pytest.mark.parametrize("raw,expected", [(None, True), ("false", False), ("False", False), ("0", False), ("true", True)])
def test_summarize_flag(raw, expected):
    """summarize defaults to true and reads the usual spellings."""
    assert params.parse_bool("summarize", raw, default=True) is expected


def test_bad_flag():
    """summarize=maybe is a 400."""
    with pytest.raises(BadRequest, match="summarize must be true or false"):
        params.parse_bool("summarize", "maybe", default=True)


def test_group_by():
    """group_by defaults to team and accepts only team, customer and api_key."""
    assert [params.parse_group_by(v) for v in (None, "team", "customer", "api_key")] == ["team", "team", "customer", "api_key"]
    with pytest.raises(BadRequest, match="group_by must be one of team, customer, api_key; got 'user'"):
        params.parse_group_by("user")


def test_raw_keys_are_hashed_and_hashes_kept():
    """api_key=sk-... is hashed; a hash passes through."""
    assert params.key_hash("sk-1234") == hash_key("sk-1234")
    assert params.key_hash(hash_key("sk-1234")) == hash_key("sk-1234")
    assert params.key_hash("") is None


def test_comma_list():
    """Comma-separated lists drop blanks and spaces."""
    assert params.comma_list(" a, b,,c ,") == ["a", "b", "c"]


@pytest.mark.parametrize("raw,expected", [("2024-05-01", date(2024, 5, 1)), ("2024-05-01T23:30:00-02:00", date(2024, 5, 2)),
                                          ("2024-05-01T10:00:00Z", date(2024, 5, 1)), (None, None)])
def test_body_times_become_utc_days(raw, expected):
    """startTime/endTime in POST bodies: dates or datetimes, taken as their UTC day."""
    assert params.parse_datetime_or_date("startTime", raw) == expected
