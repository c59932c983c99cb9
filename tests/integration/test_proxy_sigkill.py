"""A proxy killed with SIGKILL right after answering loses no usage event: the journal holds
every answered call until Kafka has it, and the restarted proxy sends what was left."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from shared.events import decode
from shared.topics import USAGE
from tests.fixtures.polling import eventually
from tests.fixtures.stack import running_stack
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.integration
CALLS = 300


async def answered_call_ids(url: str, count: int) -> list[str]:
    body = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer sk-1234"}
    async with aiohttp.ClientSession() as session:
        async def one() -> str:
            async with session.post(url + "/chat/completions", json=body, headers=headers) as response:
                assert response.status == 200
                return response.headers["x-litellm-call-id"]

        ids: list[str] = []
        for start in range(0, count, 50):
            ids += await asyncio.gather(*(one() for _ in range(min(50, count - start))))
        return ids


def test_sigkill_after_answering_loses_no_usage_event(kafka_bootstrap, postgres_admin_url, tmp_path):
    """Every call answered before the kill has its usage event on the topic after a restart."""
    plan = [("upstream", "stack.fake_upstream", {}), ("proxy", "services.proxy", {})]
    with running_stack(kafka_bootstrap, postgres_admin_url, tmp_path, plan) as stack:
        ids = asyncio.run(answered_call_ids(stack.url("proxy"), CALLS))
        stack.kill("proxy", signal.SIGKILL)  # at once: the producer lingers, events are in memory
        stack.start("proxy")

        def recorded() -> set[str]:
            return {decode(r.value).request_id for r in asyncio.run(read_topic(stack.common, USAGE))}

        eventually(lambda: set(ids) <= recorded(), 30, "every answered call's usage event on the topic")
        assert len(ids) == len(set(ids)) == CALLS
