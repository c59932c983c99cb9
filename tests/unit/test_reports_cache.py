"""The per-day report cache: a hit only with the same signature, least recently used out first."""

from __future__ import annotations

from services.reports.cache import MISSING, DayCache


def test_hit_needs_the_same_signature():
    """A day recorded under one signature is a miss under another."""
    cache = DayCache()
    cache.put(("team", "2024-05-01"), (10, 100), "body")
    assert cache.get(("team", "2024-05-01"), (10, 100)) == "body"
    assert cache.get(("team", "2024-05-01"), (10, 101)) is MISSING


def test_oldest_entries_leave_first():
    """Past max_entries the least recently used day is dropped."""
    cache = DayCache(max_entries=2)
    cache.put("a", 1, "A")
    cache.put("b", 1, "B")
    cache.get("a", 1)
    cache.put("c", 1, "C")
    assert (cache.get("a", 1), cache.get("b", 1), cache.get("c", 1)) == ("A", MISSING, "C")
