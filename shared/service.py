"""Running a service: uvloop when present, aiohttp's run_app (SIGTERM finishes cleanly)."""

from __future__ import annotations

import asyncio

from aiohttp import web


def run_service(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> None:
    """`reuse_port`: several processes listen on the same port and the kernel spreads the
    connections between them (SO_REUSEPORT)."""
    try:
        import uvloop  # faster event loop; optional

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is installed on Linux
        loop_factory = asyncio.new_event_loop
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    web.run_app(app, host=host, port=port, reuse_port=reuse_port or None, print=None, access_log=None, loop=loop, shutdown_timeout=15)
