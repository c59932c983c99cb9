"""TALLY_PROXY_WORKERS=2: two processes serve one port, connections handed to them in turn; a worker killed with SIGKILL is restarted
and its answered calls still reach the usage topic (its successor recovers its journal); a key
made through one worker works at once on the other."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from shared.events import decode
from shared.topics import USAGE
from tests.fixtures.polling import eventually
from tests.fixtures.stack import running_stack
from tests.fixtures.topics import read_topic
from tests.integration.test_proxy_sigkill import answered_call_ids

pytestmark = pytest.mark.integration
CALLS = 200


def workers_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def connections_of(pid: int, port: int) -> int:
    """How many established TCP connections on local `port` process `pid` holds (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


def events_sent_by_worker(url: str) -> dict[str, float]:
    """tally_proxy_usage_events_sent_total per worker label, from one scrape of /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^tally_proxy_usage_events_sent_total\{worker="(\d+)"\} (\S+)$', text, re.MULTILINE)
    return {worker: float(value) for worker, value in found}


def split_of_32_connections(url: str, workers: list[int]) -> list[int]:
    """Open 32 connections at once, as a client's pool does, and count each worker's."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    clients = [socket.create_connection((host, int(port))) for _ in range(32)]
    try:
        eventually(lambda: sum(connections_of(w, int(port)) for w in workers) == 32, 10, "every connection handed to a worker")
        return sorted(connections_of(w, int(port)) for w in workers)
    finally:
        for client in clients:
            client.close()


async def new_key_works_on_every_connection(url: str, master_key: str) -> list[int]:
    """A key made through one worker, used at once on 20 new connections (the kernel spreads them
    over both workers): the other worker reads the entities topic to its end before refusing it."""
    body = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
    statuses = []
    for _ in range(20):
        async with aiohttp.ClientSession() as admin:
            async with admin.post(url + "/key/generate", json={}, headers={"Authorization": f"Bearer {master_key}"}) as made:
                key = (await made.json())["key"]
        async with aiohttp.ClientSession() as caller:
            async with caller.post(url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as answer:
                statuses.append(answer.status)
    return statuses


def test_two_workers_share_the_port_and_a_killed_worker_loses_nothing(kafka_bootstrap, postgres_admin_url, tmp_path):
    """Two workers both serve one port, and calls answered by a worker killed mid-run all reach the topic."""
    plan = [("upstream", "stack.fake_upstream", {}), ("proxy", "services.proxy", {"TALLY_PROXY_WORKERS": "2"})]
    with running_stack(kafka_bootstrap, postgres_admin_url, tmp_path, plan) as stack:
        parent = stack.services["proxy"].process
        eventually(lambda: len(workers_of(parent.pid)) == 2, 30, "two workers")
        ids = asyncio.run(answered_call_ids(stack.url("proxy"), CALLS))
        first, second = workers_of(parent.pid)
        # Once both workers are ready (one may still be starting: it gets no connection until then),
        # connections are handed over in turn, not by the kernel's hash of the addresses (SO_REUSEPORT).
        eventually(lambda: stack.services["proxy"].log_path.read_text().count('"proxy_worker_ready"') >= 2, 60,
                 "both workers ready")
        assert split_of_32_connections(stack.url("proxy"), [first, second]) == [16, 16]
        # Whichever worker a scrape reaches, /metrics has both workers' series.
        eventually(lambda: sum(events_sent_by_worker(stack.url("proxy")).values()) == CALLS, 30, "both workers' event counts")
        assert all(set(events_sent_by_worker(stack.url("proxy"))) == {"0", "1"} for _ in range(4))
        os.kill(first, signal.SIGKILL)  # right after answering: its events may be only in memory and the journal
        eventually(lambda: len(workers_of(parent.pid)) == 2 and first not in workers_of(parent.pid), 30,
                 "the parent to restart the killed worker")
        assert second in workers_of(parent.pid)
        ids += asyncio.run(answered_call_ids(stack.url("proxy"), CALLS))

        def recorded() -> set[str]:
            return {decode(r.value).request_id for r in asyncio.run(read_topic(stack.common, USAGE))}

        eventually(lambda: set(ids) <= recorded(), 60, "every answered call's usage event on the topic")
        assert len(set(ids)) == 2 * CALLS
        assert asyncio.run(new_key_works_on_every_connection(stack.url("proxy"), stack.master_key)) == [200] * 20
        survivors = workers_of(parent.pid)
    assert parent.poll() is not None  # SIGTERM to the parent stopped it...
    assert not any(Path(f"/proc/{pid}").exists() for pid in survivors)  # ...and its workers
