"""SIGTERM drains the proxy: a call shorter than TALLY_SHUTDOWN_DRAIN_S gets its whole answer and
its usage event; a call longer than it is cancelled and recorded once as a failure, before the
usage emitter flushes. With one process (aiohttp's run_app) and with two workers (the connection
handoff), against the fake upstream and real Kafka."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.errors import KafkaError

from shared.events import UsageEvent, decode
from shared.kafka import ensure_topics
from shared.topics import USAGE
from tests.fixtures.polling import eventually
from tests.fixtures.stack import running_stack
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.integration

DRAIN_S = 3.0
SHORT_MS = 1500  # answered inside the drain
LONG_MS = 60_000  # still waiting for the upstream when the drain ends


def in_flight(url: str) -> float:
    """tally_proxy_admissions_in_flight summed over the workers, from one scrape of /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(r"^tally_proxy_admissions_in_flight(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE))


def drained(log_path: Path) -> dict[str, int]:
    """The proxy_calls_drained log lines (one per worker), summed."""
    totals = {"in_flight": 0, "finished": 0, "cancelled": 0, "unsettled": 0}
    for line in log_path.read_text().splitlines():
        if '"proxy_calls_drained"' in line:
            entry = json.loads(line)
            for name in totals:
                totals[name] += entry[name]
    return totals


async def call(url: str, delay_ms: int) -> tuple[int, dict[str, Any] | None, str | None]:
    """(status, answer, call id), or (0, None, None) when the proxy closed the connection unanswered."""
    body = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "x_fake": {"delay_ms": delay_ms}}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/chat/completions", json=body, headers={"Authorization": "Bearer sk-1234"}) as response:
                return response.status, await response.json(), response.headers.get("x-litellm-call-id")
    except aiohttp.ClientError:
        return 0, None, None


async def sigterm_during(url: str, process: Any) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    calls = [asyncio.create_task(call(url, SHORT_MS)), asyncio.create_task(call(url, LONG_MS))]
    deadline = time.monotonic() + 20
    while await asyncio.to_thread(in_flight, url) < 2:  # both admitted and waiting for the upstream
        assert time.monotonic() < deadline, "the two calls were not admitted"
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline
    process.send_signal(signal.SIGTERM)
    return await asyncio.gather(*calls)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_answers_calls_within_the_drain_and_records_the_rest_as_failures(kafka_bootstrap, postgres_admin_url, tmp_path,
                                                                                 workers):
    """SIGTERM with a 1.5 s and a 60 s call in flight, drain 3 s: the first is answered and a success, the second one failure."""
    env = {"TALLY_SHUTDOWN_DRAIN_S": str(DRAIN_S), "TALLY_PROXY_WORKERS": workers}
    plan = [("upstream", "stack.fake_upstream", {}), ("proxy", "services.proxy", env)]
    with running_stack(kafka_bootstrap, postgres_admin_url, tmp_path, plan) as stack:
        proxy = stack.services["proxy"].process
        if workers == "2":  # a worker gets connections (and a SIGTERM is a clean stop for it) once it is ready
            eventually(lambda: stack.services["proxy"].log_path.read_text().count('"proxy_worker_ready"') == 2, 60,
                     "both workers ready")
        started = time.monotonic()
        (short_status, short_answer, short_id), (long_status, _, _) = asyncio.run(sigterm_during(stack.url("proxy"), proxy))
        proxy.wait(timeout=30)
        stopped_after = time.monotonic() - started
        assert proxy.returncode == 0
        assert (short_status, short_answer["usage"]["completion_tokens"]) == (200, 80)  # type: ignore[index]
        assert long_status == 0  # cut off unanswered at the end of the drain
        # The drain, not the 60 s call, bounds the shutdown (aiohttp's own wait and the emitter's
        # flush, up to 10 s, come after it).
        assert stopped_after < DRAIN_S + 15, stopped_after
        assert drained(stack.services["proxy"].log_path) == {"in_flight": 2, "finished": 1, "cancelled": 1, "unsettled": 0}
        # Restarted, the proxy sends whatever the flush at exit had to spool. The topics are made
        # again first: on a broker shared with other test sessions, one ending deletes the scratch
        # topics made while it ran, this test's among them.
        asyncio.run(ensure_topics(stack.common))
        stack.start("proxy")

        def events() -> list[UsageEvent]:
            try:
                return [decode(r.value) for r in asyncio.run(read_topic(stack.common, USAGE))]
            except (AssertionError, KafkaError, TimeoutError):  # the topic's metadata not there yet: read again
                return []

        recorded = eventually(lambda: (found := events()) and len(found) >= 2 and found, 30, "both calls' usage events")
        assert len(recorded) == 2
        by_status = {event.status: event for event in recorded}
        assert (by_status["success"].request_id, by_status["success"].quoted_cost is not None) == (short_id, True)
        failure = by_status["failure"]
        assert (failure.error_status, failure.error_message, failure.quoted_cost) == (503, "cancelled: the proxy shut down", None)
