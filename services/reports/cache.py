"""Report results kept in memory with the signature of the data they were computed from. Pure: no
I/O.

A day's signature is (rollup rows, requests) of the api-key rollup: every new spend log changes it,
so a hit is always current. `DayCache` keeps per-day parts (a 30-day report under live traffic
recomputes only today); `AnswerCache` keeps whole serialised answers under the tuple of their
days' signatures (a repeat call is one signature query and the stored bytes)."""

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


class AnswerCache:
    """Whole response bodies per (route, parameters), one signature each (a new signature replaces
    the old answer), least recently used out first once `max_bytes` is exceeded. A body larger
    than a quarter of the budget is not kept."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, signature: Hashable) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != signature:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, signature: Hashable, body: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old[1])
        if len(body) > self._max_bytes // 4:
            return
        self._entries[key] = (signature, body)
        self.size += len(body)
        while self.size > self._max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
