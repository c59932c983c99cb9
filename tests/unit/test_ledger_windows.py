"""Budget windows are decided by event times alone."""

from datetime import datetime, timedelta, timezone

import pytest

from shared.budget_windows import BadDuration, effective_start, next_reset, parse_duration, window_start

A = datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)), ("30m", timedelta(minutes=30)), ("30h", timedelta(hours=30)),
    ("30d", timedelta(days=30)), ("1d", timedelta(days=1)), (None, None), ("", None),
])
def test_parse_duration_reads_litellm_budget_durations(text, expected):
    """LiteLLM's "30s" / "30m" / "30h" / "30d" become exact timedeltas; unset is no window."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "30x", "0d", "-1d", "1.5d", "mo"])
def test_parse_duration_refuses_anything_else(text):
    """A duration we cannot read is refused, not guessed."""
    with pytest.raises(BadDuration):
        parse_duration(text)


def test_window_start_counts_whole_periods_from_the_anchor():
    """The window holding an event starts a whole number of durations after the anchor."""
    d = timedelta(hours=30)
    assert window_start(A, d, A) == A
    assert window_start(A, d, A + timedelta(hours=29, minutes=59, seconds=59)) == A
    assert window_start(A, d, A + timedelta(hours=30)) == A + d
    assert window_start(A, d, A + timedelta(hours=61)) == A + 2 * d


def test_window_start_before_the_anchor_floors_downwards():
    """An event before the anchor (clock skew) lands in the window before it, not after."""
    assert window_start(A, timedelta(days=1), A - timedelta(seconds=1)) == A - timedelta(days=1)


def test_effective_start_is_the_later_of_window_and_reset():
    """Spend counts from the window's start or the last reset, whichever is later."""
    d = timedelta(days=30)
    at = A + timedelta(days=40)
    assert effective_start(A, d, at, None) == A + d
    assert effective_start(A, d, at, A + timedelta(days=35)) == A + timedelta(days=35)
    assert effective_start(A, d, at, A + timedelta(days=5)) == A + d
    assert effective_start(A, None, at, None) is None
    assert effective_start(None, None, at, A) == A


def test_next_reset_is_the_end_of_the_current_window():
    """budget_reset_at is the end of the window holding the latest event (the first one if none)."""
    d = timedelta(minutes=30)
    assert next_reset(A, d, A + timedelta(minutes=45)) == A + timedelta(minutes=60)
    assert next_reset(A, d, None) == A + d
    assert next_reset(A, None, A) is None


@pytest.mark.parametrize("text", ["214702440d", "36501d", "99999999999999999999d", "9999999999999999h"])
def test_parse_duration_refuses_durations_whose_window_end_is_no_date(text):
    """A duration over 100 years is refused (its window end would overflow datetime: a 500 on /team/new)."""
    with pytest.raises(BadDuration):
        parse_duration(text)
