"""Capped exponential backoff: the one place that says how long to wait before the next try."""

from __future__ import annotations

import asyncio


class Backoff:
    """Delays of `first`, then twice the last, never above `cap`; `reset()` starts again.

    For retries of transient failures (a broker or database that is down): the wait is what the
    caller means, not a wait for a condition. A `first` of 0 never waits (tests retry at once)."""

    __slots__ = ("first", "cap", "factor", "_next")

    def __init__(self, first: float, cap: float, factor: float = 2.0) -> None:
        if first < 0 or cap < first or factor < 1:
            raise ValueError(f"a backoff needs 0 < first <= cap (or first 0: no wait) and factor >= 1, not {first}, {cap}, {factor}")
        self.first, self.cap, self.factor = first, cap, factor
        self._next = first

    @property
    def delay(self) -> float:
        """The delay the next `take()` or `sleep()` will use."""
        return self._next

    def take(self) -> float:
        """The delay to wait now; the following one grows."""
        delay = self._next
        self._next = min(delay * self.factor, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first

    async def sleep(self) -> None:
        await asyncio.sleep(self.take())
