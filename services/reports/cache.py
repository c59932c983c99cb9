"""Per-day results of the big reports, kept in memory with the signature of the day they were
computed from. A day's signature is (rollup rows, requests) of the api-key rollup: every new
spend log changes it, so a hit is always current; past days rarely change, so a 30-day report
recomputes only today. Pure: no I/O."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

MISSING = object()


class DayCache:
    def __init__(self, max_entries: int = 20_000) -> None:
        self._entries: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, signature: Hashable) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] != signature:
            self.misses += 1
            return MISSING
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, signature: Hashable, value: Any) -> None:
        self._entries[key] = (signature, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
