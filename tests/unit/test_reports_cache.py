"""The report caches: a hit only with the same signature, least recently used out first."""

from __future__ import annotations

from services.reports.cache import MISSING, AnswerCache, DayCache


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


def test_answer_hit_needs_the_same_signature():
    """A whole answer stored under one signature is a miss under another, and the new one replaces it."""
    cache = AnswerCache()
    cache.put("team", ((("2024-05-01", (10, 100)),),), b"[1]")
    assert cache.get("team", ((("2024-05-01", (10, 100)),),)) == b"[1]"
    assert cache.get("team", ((("2024-05-01", (10, 101)),),)) is None
    cache.put("team", ((("2024-05-01", (10, 101)),),), b"[2]")
    assert (cache.get("team", ((("2024-05-01", (10, 101)),),)), len(cache), cache.size) == (b"[2]", 1, 3)


def test_answers_past_the_byte_budget_leave_oldest_first():
    """Past max_bytes the least recently used answers are dropped until the rest fit."""
    cache = AnswerCache(max_bytes=40)
    cache.put("a", 1, b"x" * 10)
    cache.put("b", 1, b"y" * 10)
    cache.get("a", 1)
    cache.put("c", 1, b"z" * 10)
    cache.put("d", 1, b"w" * 10)
    cache.put("e", 1, b"v" * 10)
    assert ([k for k in "abcde" if cache.get(k, 1) is not None], cache.size) == (["a", "c", "d", "e"], 40)


def test_an_answer_larger_than_a_quarter_of_the_budget_is_not_kept():
    """One huge answer would push out every other: it is computed but not stored."""
    cache = AnswerCache(max_bytes=40)
    cache.put("big", 1, b"x" * 11)
    assert (cache.get("big", 1), len(cache), cache.size) == (None, 0, 0)
