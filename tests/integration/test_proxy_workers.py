"""TALLY_PROXY_WORKERS=2: two processes serve one port; a worker killed with SIGKILL is restarted
and its answered calls still reach the usage topic (its successor recovers its journal)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from shared.events import decode
from shared.topics import USAGE
from tests.fixtures.stack import running_stack, wait_for
from tests.fixtures.topics import read_topic
from tests.integration.test_proxy_sigkill import answered_call_ids

pytestmark = pytest.mark.integration
CALLS = 200


def workers_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_two_workers_share_the_port_and_a_killed_worker_loses_nothing(kafka_bootstrap, postgres_admin_url, tmp_path):
    plan = [("upstream", "stack.fake_upstream", {}), ("proxy", "services.proxy", {"TALLY_PROXY_WORKERS": "2"})]
    with running_stack(kafka_bootstrap, postgres_admin_url, tmp_path, plan) as stack:
        parent = stack.services["proxy"].process
        wait_for(lambda: len(workers_of(parent.pid)) == 2, 30, "two workers")
        ids = asyncio.run(answered_call_ids(stack.url("proxy"), CALLS))
        first, second = workers_of(parent.pid)
        os.kill(first, signal.SIGKILL)  # right after answering: its events may be only in memory and the journal
        wait_for(lambda: len(workers_of(parent.pid)) == 2 and first not in workers_of(parent.pid), 30,
                 "the parent to restart the killed worker")
        assert second in workers_of(parent.pid)
        ids += asyncio.run(answered_call_ids(stack.url("proxy"), CALLS))

        def recorded() -> set[str]:
            return {decode(r.value).request_id for r in asyncio.run(read_topic(stack.common, USAGE))}

        wait_for(lambda: set(ids) <= recorded(), 60, "every answered call's usage event on the topic")
        assert len(set(ids)) == 2 * CALLS
        survivors = workers_of(parent.pid)
    assert parent.poll() is not None  # SIGTERM to the parent stopped it...
    assert not any(Path(f"/proc/{pid}").exists() for pid in survivors)  # ...and its workers
