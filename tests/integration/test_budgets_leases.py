"""Budget leases across two replicas of two workers each (real Kafka, Postgres, pricer and ledger):
one keep-alive client gets its whole budget (and its whole rpm_limit), 64 concurrent callers pass it
by at most one call per worker, max_parallel_requests holds across all four workers, a team's and a
customer's rpm_limit hold over their keys and both replicas, so do a key's per-model limits and a
member's max_budget_in_team, a SIGKILLed worker's lease expires and
is then charged what the ledger counted of its calls (its unused part granted to the others, late
events raising its charge), and its restarted successor holds only what it was granted itself.

Prices as in test_budgets_replicas.py: every call costs exactly 0.0000074."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest

from services.proxy.budget.leases import DRAIN_GRACE
from shared.keys import hash_key
from tests.fixtures.events import priced_event
from tests.fixtures.ledger_support import produce
from tests.fixtures.polling import eventually, eventually_async
from tests.fixtures.stack import TallyStack, running_stack
from tests.integration.test_budgets_replicas import CALL_COST, admin, assert_budget_refusals, chat, hammer, new_key
from tests.integration.test_proxy_workers import connections_of, workers_of

pytestmark = pytest.mark.integration

WORKERS = 2
PROCESSES = 2 * WORKERS  # lease holders: 2 replicas x 2 workers
TTL_S = 2.0
DRAIN_GRACE_S = DRAIN_GRACE.total_seconds()
LEASE_WAIT_S = 2.0  # TALLY_BUDGET_LEASE_WAIT_S's default: how long a call short of lease renews before it is refused


@pytest.fixture(scope="module")
def two_by_two(kafka_bootstrap: str, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyStack]:
    """Fake upstream + pricer + ledger + two proxy replicas of two workers each, with a 2 s lease TTL."""
    log_dir = tmp_path_factory.mktemp("leases")
    plan = [("upstream", "stack.fake_upstream", {}), ("pricer", "services.pricer", {}),
            ("ledger", "services.ledger", {"LEDGER_BATCH_MAX_MS": "20"})]
    plan += [(replica, "services.proxy", {"TALLY_PROXY_WORKERS": str(WORKERS), "TALLY_PROXY_REPLICAS": "2",
                                          "TALLY_BUDGET_LEASE_TTL_S": str(TTL_S),
                                          "TALLY_SPOOL_DIR": str(log_dir / f"spool-{replica}")})
             for replica in ("proxy-a", "proxy-b")]
    with running_stack(kafka_bootstrap, postgres_admin_url, log_dir, plan) as stack:
        for replica in ("proxy-a", "proxy-b"):
            log = stack.services[replica].log_path
            eventually(lambda log=log: log.read_text().count('"proxy_worker_ready"') >= WORKERS, 60, f"{replica}'s workers")
        yield stack


def lease_rows(stack: TallyStack, key: str) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """holder -> (granted, used, charge) of the key's leases."""
    with psycopg.connect(stack.common.database_url) as conn:
        rows = conn.execute("SELECT holder, granted, used, greatest(granted, used + inflight) FROM tally_leases.budget_leases"
                            " WHERE entity_type = 'key' AND entity_id = %s", (hash_key(key),)).fetchall()
    return {holder: (granted, used, charge) for holder, granted, used, charge in rows}


async def calls_until_refused(session: aiohttp.ClientSession, stack: TallyStack, replica: str, key: str) -> tuple[int, Decimal]:
    calls, spent = 0, Decimal(0)
    while True:
        status, data, cost = await chat(session, stack, replica, key)
        if status != 200:
            assert_budget_refusals([(status, data)])
            return calls, spent
        calls, spent = calls + 1, spent + cost


async def test_one_keep_alive_client_gets_its_whole_budget_from_one_of_two_workers(two_by_two: TallyStack) -> None:
    """A budget of 100 calls, one client on one keep-alive connection (so one worker of two): 100 calls, then 400."""
    budget = CALL_COST * 100
    async with aiohttp.ClientSession() as admin:
        key = await new_key(admin, two_by_two, max_budget=float(budget))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        calls, spent = await calls_until_refused(session, two_by_two, "proxy-a", key)
    assert (calls, spent) == (100, budget)


async def test_64_callers_on_two_replicas_of_two_workers_pass_the_budget_by_at_most_one_call_per_worker(
        two_by_two: TallyStack) -> None:
    """64 callers over both replicas and all four workers: spend <= B + 4 calls and >= 99 % of B; refusals are the budget error."""
    budget = CALL_COST * 200
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_by_two, max_budget=float(budget))
        spent, refusals = await hammer(session, two_by_two, [key])
    assert_budget_refusals(refusals)
    assert budget * Decimal("0.99") <= spent <= budget + PROCESSES * CALL_COST, spent / CALL_COST


def holder_spend(stack: TallyStack, key: str, holder: str) -> Decimal:
    """What the ledger counted of `holder`'s calls with `key` (a budget without a window)."""
    with psycopg.connect(stack.common.database_url) as conn:
        row = conn.execute("SELECT spend FROM tally_holder_spend WHERE entity_type = 'key' AND entity_id = %s AND holder = %s",
                           (hash_key(key), holder)).fetchone()
    return row[0] if row else Decimal(0)


def lease_expired(stack: TallyStack, key: str, holder: str) -> bool:
    with psycopg.connect(stack.common.database_url) as conn:
        row = conn.execute("SELECT expires_at < now() FROM tally_leases.budget_leases"
                           " WHERE entity_type = 'key' AND entity_id = %s AND holder = %s", (hash_key(key), holder)).fetchone()
    return bool(row and row[0])


async def kill_the_worker_serving(stack: TallyStack, key: str, calls: int) -> str:
    """`calls` calls on one keep-alive connection to proxy-a, then SIGKILL the worker that served
    them (once both of proxy-a's workers run); returns its lease holder id."""
    proxy = stack.services["proxy-a"]
    eventually(lambda: len(workers_of(proxy.process.pid)) == WORKERS, 30, "both of proxy-a's workers running")
    eventually(lambda: proxy.log_path.read_text().count('"proxy_worker_ready"') >= len(_killed) + WORKERS, 60,
               "the restarted worker ready")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(calls):
            assert (await chat(session, stack, "proxy-a", key))[0] == 200
        serving = [pid for pid in workers_of(proxy.process.pid) if connections_of(pid, proxy.port)]
        assert len(serving) == 1
        (holder, _), = lease_rows(stack, key).items()
        os.kill(serving[0], signal.SIGKILL)
        _killed.append(serving[0])
    return holder


_killed: list[int] = []  # workers this module killed: each restart logs one more "proxy_worker_ready"


async def calls_as_budget_returns(stack: TallyStack, key: str, wanted: int, timeout: float) -> tuple[int, Decimal]:
    """Calls to proxy-b until refused, again and again (a dead worker's unused lease is free only
    after its expiry and DRAIN_GRACE), until `wanted` calls went through or `timeout`; then once more,
    which must be refused at once. Returns the calls and what they cost."""
    total = [0, Decimal(0)]

    async def served_all() -> bool:
        async with aiohttp.ClientSession() as session:
            calls, spent = await calls_until_refused(session, stack, "proxy-b", key)
        total[0], total[1] = total[0] + calls, total[1] + spent
        return total[0] >= wanted

    await eventually_async(served_all, timeout, f"{wanted} calls served on proxy-b", interval=0.3)
    async with aiohttp.ClientSession() as session:
        assert (await calls_until_refused(session, stack, "proxy-b", key))[0] == 0
    return total[0], total[1]  # type: ignore[return-value]


async def test_a_sigkilled_workers_unused_lease_comes_back_at_expiry(two_by_two: TallyStack) -> None:
    """A worker killed 10 calls into a budget of 100: within TTL + DRAIN_GRACE (+ slack) of its last renewal
    it is charged the 10 calls the ledger counted (its successor sent what its journal kept), its row kept,
    and the other replica delivers exactly the other 90."""
    budget = CALL_COST * 100
    async with aiohttp.ClientSession() as admin:
        key = await new_key(admin, two_by_two, max_budget=float(budget))
    dead_holder = await kill_the_worker_serving(two_by_two, key, 10)
    killed_at = time.monotonic()
    calls, spent = await calls_as_budget_returns(two_by_two, key, 90, TTL_S + DRAIN_GRACE_S + 10)
    took = time.monotonic() - killed_at
    assert (calls, spent) == (90, 90 * CALL_COST)
    assert took < TTL_S + DRAIN_GRACE_S + LEASE_WAIT_S + 3, took  # not the window's end: the expiry and the grace
    assert holder_spend(two_by_two, key, dead_holder) == 10 * CALL_COST
    granted, used, _ = lease_rows(two_by_two, key)[dead_holder]  # kept, marked dead by its expiry
    assert lease_expired(two_by_two, key, dead_holder) and granted > 10 * CALL_COST


async def test_a_dead_holders_late_events_raise_its_charge(two_by_two: TallyStack) -> None:
    """After a killed worker's 10 calls were counted, the ledger counts 2 more of its calls (answered after
    its last report, sent late; its lease was at least 12.5 calls): the authority charges it 12 calls, so the
    other replica gets exactly 88 of 100."""
    budget = CALL_COST * 100
    async with aiohttp.ClientSession() as admin:
        key = await new_key(admin, two_by_two, max_budget=float(budget))
    dead_holder = await kill_the_worker_serving(two_by_two, key, 10)
    eventually(lambda: holder_spend(two_by_two, key, dead_holder) == 10 * CALL_COST, 30, "its 10 calls counted")
    now = datetime.now(timezone.utc)
    late = priced_event(cost=2 * CALL_COST, request_id=f"late-{uuid.uuid4()}", api_key_hash=hash_key(key),
                        start_time=now, end_time=now, lease_holder=dead_holder)
    await produce(two_by_two.common, [late])
    eventually(lambda: holder_spend(two_by_two, key, dead_holder) == 12 * CALL_COST, 10, "the late event counted")
    assert lease_rows(two_by_two, key)[dead_holder][0] >= 12 * CALL_COST  # what it was granted covers them
    calls, spent = await calls_as_budget_returns(two_by_two, key, 88, TTL_S + DRAIN_GRACE_S + 10)
    assert (calls, spent) == (88, 88 * CALL_COST)
    assert dead_holder in lease_rows(two_by_two, key)  # kept: a later count would raise its charge again


async def test_a_restarted_worker_holds_only_what_it_was_granted_itself(two_by_two: TallyStack) -> None:
    """After a worker's SIGKILL and restart, a new key's leases on proxy-a are held under new holder ids,
    and the used they report add up exactly to the costs the clients saw."""
    proxy = two_by_two.services["proxy-a"]
    victim = sorted(workers_of(proxy.process.pid))[0]
    ready = proxy.log_path.read_text().count('"proxy_worker_ready"')
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: len(workers_of(proxy.process.pid)) == WORKERS and victim not in workers_of(proxy.process.pid),
               30, "the parent to restart the killed worker")
    eventually(lambda: proxy.log_path.read_text().count('"proxy_worker_ready"') > ready, 60, "the restarted worker ready")
    async with aiohttp.ClientSession() as admin:
        key = await new_key(admin, two_by_two, max_budget=float(CALL_COST * 100))
    port = f":{proxy.port}/"
    spent: list[Decimal] = []

    def workers_holding(rows: dict[str, tuple[Decimal, Decimal, Decimal]]) -> list[str]:
        return sorted(holder.split(port)[1].split("/")[0] for holder in rows)

    async def both_workers_served() -> bool:
        async with aiohttp.ClientSession() as session:  # a new connection each: handed to the workers in turn
            status, _, cost = await chat(session, two_by_two, "proxy-a", key)
        assert status == 200
        spent.append(cost)
        return workers_holding(lease_rows(two_by_two, key)) == ["0", "1"]

    await eventually_async(both_workers_served, 20, "a call served by each worker, the restarted one included")

    def returned() -> dict[str, tuple[Decimal, Decimal, Decimal]] | None:
        rows = lease_rows(two_by_two, key)  # idle leases are returned within about a second
        return rows if all(granted == used for granted, used, _ in rows.values()) else None

    rows = eventually(returned, 10, "both idle leases returned")
    assert workers_holding(rows) == ["0", "1"]  # each worker its own row, under its own holder id
    assert sum((used for _, used, _ in rows.values()), Decimal(0)) == sum(spent, Decimal(0))  # exactly what they served


async def test_one_keep_alive_client_gets_the_whole_rpm_limit_from_one_of_four_workers(two_by_two: TallyStack) -> None:
    """rpm_limit 30 on a 2 x 2 deployment, one keep-alive client: 30 calls in the minute, then 429 (not 30/4)."""
    eventually(lambda: datetime.now(timezone.utc).second < 45, 20, "a minute with 15 s left to run the calls in")
    async with aiohttp.ClientSession() as admin:
        key = await new_key(admin, two_by_two, rpm_limit=30)
    statuses = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        while not statuses or statuses[-1][0] == 200:
            status, data, _ = await chat(session, two_by_two, "proxy-a", key)
            statuses.append((status, data))
    assert len(statuses) == 31
    status, data = statuses[-1]
    assert (status, data["error"]["type"]) == (429, "rate_limit_error"), data
    assert data["error"]["message"].startswith(f"Rate limit exceeded for api_key: {hash_key(key)}. Limit type: requests. Current limit: 30, ")


async def test_max_parallel_requests_is_shared_by_all_workers_of_both_replicas(two_by_two: TallyStack) -> None:
    """max_parallel_requests 6, 12 calls of 3 s at once over both replicas: exactly 6 answered, 6 refused with 429."""
    async with aiohttp.ClientSession() as admin:
        key = await new_key(admin, two_by_two, max_parallel_requests=6)
    body = orjson.dumps({"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                         "x_fake": {"delay_ms": 3000}})

    async def one(i: int) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:  # a connection each: spread over the workers
            async with session.post(two_by_two.url(("proxy-a", "proxy-b")[i % 2]) + "/chat/completions", data=body,
                                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
                data = orjson.loads(await r.read())
                return r.status, "" if r.status == 200 else data["error"]["message"]

    answers = await asyncio.gather(*(one(i) for i in range(12)))
    assert sorted(status for status, _ in answers) == [200] * 6 + [429] * 6
    assert all(message.startswith(f"Rate limit exceeded for api_key: {hash_key(key)}. Limit type: max_parallel_requests. Current limit: 6, ")
               for status, message in answers if status == 429)


async def entity_with_keys(session: aiohttp.ClientSession, stack: TallyStack, path: str, body: dict[str, Any],
                           **key_fields: Any) -> list[str]:
    """Creates a team, customer, ... with the admin route `path`, then two keys with `key_fields`."""
    status, answer = await admin(session, stack, "proxy-a", path, body)
    assert status == 200, answer
    return [await new_key(session, stack, **key_fields) for _ in range(2)]


async def alternating_calls(session: aiohttp.ClientSession, stack: TallyStack, keys: list[str], calls: int,
                            user: str | None = None) -> list[tuple[int, Any, Decimal]]:
    """`calls` chat calls one after another, alternating replicas and keys."""
    return [await chat(session, stack, ("proxy-a", "proxy-b")[i % 2], keys[i % len(keys)], user=user) for i in range(calls)]


async def test_a_teams_rpm_limit_holds_over_its_keys_on_both_replicas(two_by_two: TallyStack) -> None:
    """Team rpm_limit 5, two keys of the team alternating replicas: 5 calls in the minute, the 6th LiteLLM's 429 naming the team."""
    eventually(lambda: datetime.now(timezone.utc).second < 45, 20, "a minute with 15 s left to run the calls in")
    team_id = f"team-rpm-{os.getpid()}"
    async with aiohttp.ClientSession() as session:
        keys = await entity_with_keys(session, two_by_two, "/team/new", {"team_id": team_id, "rpm_limit": 5}, team_id=team_id)
        answers = await alternating_calls(session, two_by_two, keys, 6)
    assert [status for status, _, _ in answers] == [200] * 5 + [429]
    error = answers[-1][1]["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "429")
    assert error["message"].startswith(f"Rate limit exceeded for team: {team_id}. Limit type: requests. Current limit: 5, Remaining: 0. ")


async def test_a_customers_rpm_limit_holds_over_every_key_and_replica(two_by_two: TallyStack) -> None:
    """Customer rpm_limit 3, sent as `user` through two keys on both replicas: 3 calls, then LiteLLM's 429 naming the end user."""
    eventually(lambda: datetime.now(timezone.utc).second < 45, 20, "a minute with 15 s left to run the calls in")
    customer = f"cust-rpm-{os.getpid()}"
    async with aiohttp.ClientSession() as session:
        keys = await entity_with_keys(session, two_by_two, "/customer/new", {"user_id": customer, "rpm_limit": 3})
        answers = await alternating_calls(session, two_by_two, keys, 4, user=customer)
        other, _, _ = await chat(session, two_by_two, "proxy-a", keys[0], user=f"{customer}-other")
    assert [status for status, _, _ in answers] == [200] * 3 + [429]
    assert answers[-1][1]["error"]["message"].startswith(
        f"Rate limit exceeded for end_user: {customer}. Limit type: requests. Current limit: 3, Remaining: 0. ")
    assert other == 200  # another customer of the same key is not held back


async def test_a_keys_model_rpm_limit_holds_that_model_on_both_replicas(two_by_two: TallyStack) -> None:
    """model_rpm_limit {"llama3": 3} alternating replicas: 3 calls, the 4th LiteLLM's 429 naming model_per_key."""
    eventually(lambda: datetime.now(timezone.utc).second < 45, 20, "a minute with 15 s left to run the calls in")
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_by_two, model_rpm_limit={"llama3": 3})
        answers = await alternating_calls(session, two_by_two, [key], 4)
    assert [status for status, _, _ in answers] == [200] * 3 + [429]
    assert answers[-1][1]["error"]["message"].startswith(
        f"Rate limit exceeded for model_per_key: {hash_key(key)}:llama3. Limit type: requests. Current limit: 3, Remaining: 0. ")


async def test_a_keys_model_max_budget_refuses_the_call_past_it(two_by_two: TallyStack) -> None:
    """model_max_budget of 3 calls for llama3, one keep-alive client: 3 calls, the 4th LiteLLM's 400 budget_exceeded for llama3."""
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_by_two, key_alias=f"mmb-{os.getpid()}",
                            model_max_budget={"llama3": {"budget_limit": str(CALL_COST * 3), "time_period": "1d"}})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        answers = [await chat(session, two_by_two, "proxy-a", key) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200] * 3 + [400]
    assert answers[-1][1]["error"] == {
        "message": f"LiteLLM Virtual Key: {hash_key(key)}, key_alias: mmb-{os.getpid()}, exceeded budget for model=llama3",
        "type": "budget_exceeded", "param": None, "code": "400"}


async def test_a_members_max_budget_in_team_refuses_the_call_past_it(two_by_two: TallyStack) -> None:
    """max_budget_in_team of 3 calls for u in t, one keep-alive client: 3 calls, the 4th LiteLLM's 400 naming member and team."""
    team_id, user_id = f"team-mb-{os.getpid()}", f"user-mb-{os.getpid()}"
    async with aiohttp.ClientSession() as session:
        for path, body in (("/team/new", {"team_id": team_id}), ("/user/new", {"user_id": user_id}),
                           ("/team/member_add", {"team_id": team_id, "member": {"user_id": user_id, "role": "user"},
                                                 "max_budget_in_team": float(CALL_COST * 3)})):
            status, answer = await admin(session, two_by_two, "proxy-a", path, body)
            assert status == 200, answer
        key = await new_key(session, two_by_two, team_id=team_id, user_id=user_id)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        answers = [await chat(session, two_by_two, "proxy-a", key) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200] * 3 + [400]
    error = answers[-1][1]["error"]
    assert (error["type"], error["code"]) == ("budget_exceeded", "400")
    assert error["message"].startswith(f"Budget has been exceeded! User={user_id} in Team={team_id} Current cost: ")
    assert error["message"].endswith(f", Max budget: {CALL_COST * 3}")
