"""At start-up the reports service makes the Usage page's first load itself, with the master key,
and /health fails ("caches") until that is done."""

from __future__ import annotations

import asyncio
import socket
from datetime import date

import pytest
from aiohttp import web

from services.reports.warmup import WarmUp, warm_requests

SPAN = "start_date=2026-10-30&end_date=2026-11-28"


def test_the_requests_are_the_usage_pages_and_the_three_reports():
    """The warm-up asks what the Usage page's first load asks, over the last 30 days, bodies included."""
    assert warm_requests(date(2026, 11, 28), 30) == [
        ("GET", f"/global/spend/report?{SPAN}&group_by=team", None),
        ("GET", f"/global/spend/report?{SPAN}&group_by=customer", None),
        ("GET", f"/global/spend/report?{SPAN}&group_by=api_key", None),
        ("GET", f"/global/spend/usage?{SPAN}&stack_by=model", None),
        ("GET", "/global/spend/budgets", None),
        ("GET", f"/spend/logs/ui?{SPAN}&page=1&page_size=25&sort_by=startTime&sort_order=desc", None),
    ]


async def test_it_waits_for_the_server_asks_everything_and_then_passes_the_health_check():
    """The health check fails until the warm-up has reached the server and made every request with the master key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: list[tuple[str, str, str | None, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, request.headers.get("Authorization"), await request.read()))
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    requests = warm_requests(date(2026, 11, 28), 30)
    warm = WarmUp(f"http://127.0.0.1:{port}", "sk-master", requests, timeout_s=30)
    task = asyncio.create_task(warm.run())
    await asyncio.sleep(0)  # it starts (and finds nothing listening yet)
    with pytest.raises(ConnectionError):  # not healthy before the warm-up
        await warm.check()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.wait_for(task, 30)
        await warm.check()  # healthy now
    finally:
        await runner.cleanup()
    assert sorted(seen) == sorted((m, p, "Bearer sk-master", b or b"") for m, p, b in requests)


async def test_a_warm_up_that_cannot_finish_gives_up_at_its_timeout():
    """A warm-up that cannot reach the server stops at its timeout, and the health check passes anyway."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing will listen here
    warm = WarmUp(f"http://127.0.0.1:{port}", "sk-master", warm_requests(date(2026, 11, 28), 30), timeout_s=0.3)
    await asyncio.wait_for(warm.run(), 10)
    await warm.check()  # healthy anyway: a slow warm-up must not keep the service out for good
