"""run_service's stop deadline: a SIGTERM whose clean stop hangs (a cleanup that ignores its
cancellation, as a Kafka client stop can on an unreachable coordinator) ends the process at the
deadline; a clean stop exits 0 well before it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from tests.fixtures.polling import eventually
from tests.fixtures.stack import free_port

SCRIPT = """
import asyncio, sys
from aiohttp import web
from shared.service import run_service

async def hanging(app):
    yield
    if sys.argv[2] == "hang":
        while True:
            try:
                await asyncio.sleep(3600)  # the hung stop under test: only the stop deadline ends it
            except asyncio.CancelledError:
                pass  # swallowed: the stop never ends by itself

app = web.Application()
app.router.add_get("/health", lambda request: web.Response(text="ok"))
app.cleanup_ctx.append(hanging)
run_service(app, "127.0.0.1", int(sys.argv[1]), stop_deadline_s=1.0)
"""


def _stopped(mode: str) -> tuple[int, float, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(port), mode], stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: _answers(port), 30, "the service answers")
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        return code, time.monotonic() - sent, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_hung_stop_ends_at_the_deadline():
    """A cleanup that never ends: the process exits 1 about 1 s after SIGTERM, saying why."""
    code, took, stderr = _stopped("hang")
    assert code == 1
    assert 1.0 <= took < 10.0, took
    assert '"event": "service_stop_deadline_passed", "deadline_s": 1.0' in stderr


def test_a_clean_stop_exits_zero_before_the_deadline():
    """A cleanup that ends: exit 0, and the deadline's timer does not hold the process."""
    code, took, stderr = _stopped("clean")
    assert code == 0
    assert took < 1.0, took
    assert "service_stop_deadline_passed" not in stderr
