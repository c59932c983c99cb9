"""Budget windows: pure arithmetic on event times, so a replay decides every window the same way.

An entity with `budget_duration` d and anchor a (its created_at) has windows [a + k·d, a + (k+1)·d).
Its running `spend` covers the window that holds its latest event time, and for keys and teams only
what came after the latest global spend reset. With no duration the window is unbounded."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_DURATION = timedelta(days=36_500)  # 100 years


class BadDuration(ValueError):
    pass


def parse_duration(text: str | None) -> timedelta | None:
    """"30s", "30m", "30h", "30d" (LiteLLM's budget_duration) → timedelta; None/"" → None."""
    if text is None or str(text).strip() == "":
        return None
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise BadDuration(f"budget_duration {text!r} is not a positive number followed by s, m, h or d")
    try:
        duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError as exc:
        raise BadDuration(f"budget_duration {text!r} is longer than {MAX_DURATION.days} days") from exc
    if duration > MAX_DURATION:  # a window's end must stay a real date (datetime stops at year 9999)
        raise BadDuration(f"budget_duration {text!r} is longer than {MAX_DURATION.days} days")
    return duration


def window_start(anchor: datetime, duration: timedelta, at: datetime) -> datetime:
    """Start of the window of length `duration`, counted from `anchor`, that contains `at`."""
    periods = (at - anchor) // duration  # floor division: times before the anchor work too
    return anchor + periods * duration


def effective_start(
    anchor: datetime | None,
    duration: timedelta | None,
    as_of: datetime | None,
    last_reset: datetime | None,
) -> datetime | None:
    """Where the entity's running spend starts counting: the later of its budget window's start
    (the window holding `as_of`, its latest event time) and the last spend reset; None = forever."""
    start = None
    if duration is not None and anchor is not None and as_of is not None:
        start = window_start(anchor, duration, as_of)
    if last_reset is not None and (start is None or last_reset > start):
        start = last_reset
    return start


def next_reset(anchor: datetime | None, duration: timedelta | None, as_of: datetime | None) -> datetime | None:
    """budget_reset_at: the end of the window holding `as_of` (the anchor's first window if no
    event yet)."""
    if duration is None or anchor is None:
        return None
    return window_start(anchor, duration, as_of or anchor) + duration
