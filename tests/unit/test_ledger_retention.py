"""TALLY_SPEND_LOG_RETENTION_DAYS: off by default, a whole number of days ≥ 1, and the cut-off it gives."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.ledger.retention import cutoff_for
from services.ledger.settings import ledger_settings


def test_retention_is_off_unless_set():
    """No variable (or an empty one) keeps every spend log."""
    assert ledger_settings({}).spend_log_retention_days is None
    assert ledger_settings({"TALLY_SPEND_LOG_RETENTION_DAYS": ""}).spend_log_retention_days is None


def test_retention_days_are_read_and_bounded():
    """30 is 30 days; 0, a negative number or a word is refused with the variable's name."""
    assert ledger_settings({"TALLY_SPEND_LOG_RETENTION_DAYS": "30"}).spend_log_retention_days == 30
    for bad in ("0", "-1", "thirty"):
        with pytest.raises(ValueError, match="TALLY_SPEND_LOG_RETENTION_DAYS"):
            ledger_settings({"TALLY_SPEND_LOG_RETENTION_DAYS": bad})


def test_the_cutoff_keeps_today_and_the_days_before_it():
    """With 30 days, the first day kept is 30 days before today in UTC, whatever the caller's zone."""
    assert cutoff_for(datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc), 30) == date(2025, 3, 1)
    assert cutoff_for(datetime(2025, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))), 30) == date(2025, 3, 1)
