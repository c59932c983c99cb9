"""The Usage page's first load after a start, made by the service itself: the big reports are
built from cold Postgres buffers and empty caches on a first call (a 30-day team report over 10 M
logs in ~1 s, the page's data in ~1.2 s against ~0.6 s later). At start-up the service asks
itself, with the master key, for what the page and the usual reports ask for over the last
`days` days, and /health answers 503 ("caches") until that is done or `timeout_s` has passed:
a load balancer sends the first user to a warm service."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

import aiohttp
import structlog

log = structlog.get_logger(__name__)

Request = tuple[str, str, bytes | None]  # method, path with query, JSON body


def warm_requests(today: date, days: int) -> list[Request]:
    """What the Usage page asks for on its first load (usage.js `refresh`: the last `days` days
    ending today, UTC, no filters) and /global/spend/report's three views of the same range."""
    start, end = (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
    span = f"start_date={start}&end_date={end}"
    return [
        *(("GET", f"/global/spend/report?{span}&group_by={view}", None) for view in ("team", "customer", "api_key")),
        ("GET", f"/global/spend/usage?{span}&stack_by=model", None),
        ("GET", "/global/spend/budgets", None),
        ("GET", f"/spend/logs/ui?{span}&page=1&page_size=25&sort_by=startTime&sort_order=desc", None),
    ]


class WarmUp:
    def __init__(self, base_url: str, master_key: str, requests: list[Request], timeout_s: float) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {master_key}", "Content-Type": "application/json"}
        self.requests = requests
        self.timeout_s = timeout_s
        self.done = asyncio.Event()

    async def check(self) -> None:
        """A health check: failing while the warm-up runs."""
        if not self.done.is_set():
            raise ConnectionError("warming the report caches (the Usage page's first load)")

    async def run(self) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s), aiohttp.ClientSession(headers=self.headers) as session:
                statuses = await asyncio.gather(*(self._ask(session, *request) for request in self.requests))
            log.info("reports_caches_warmed", seconds=round(time.monotonic() - started, 3), statuses=statuses)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("reports_caches_not_warmed", error=f"{type(exc).__name__}: {exc}", seconds=round(time.monotonic() - started, 3))
        finally:
            self.done.set()

    async def _ask(self, session: aiohttp.ClientSession, method: str, path: str, body: bytes | None) -> int:
        while True:  # the server starts listening only after start-up: retry until it accepts
            try:
                async with session.request(method, self.base_url + path, data=body) as response:
                    await response.read()
                    return response.status
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)  # until the listening socket is up, bounded by run()'s timeout
