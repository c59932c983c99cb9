"""Budgets: the cost of auth + budget check per request; on two replicas of two workers each, the
overshoot past max_budget under 64-way concurrency and the share of a budget delivered to one
keep-alive client, to a client spread over every worker, and around a worker SIGKILLed mid-window
(at its first refusal, and once the dead lease's expiry and drain grace are past);
and the time from /key/generate on one replica to the key working on the other.

    .venv/bin/python bench/bench_budget.py [--iterations 200000] [--no-stack] [--rounds 3]

The first figure is measured in process (Authenticator.authenticate + BudgetGuard.admit + settle
for a key with a budget, in a team with a budget, for a customer with a budget, each holding a
lease). The others start a fake upstream, pricer, ledger and two proxy replicas
(TALLY_PROXY_WORKERS=2) as processes against the local Kafka and Postgres
(KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, else the ones `make up` runs).
Prints the figures and writes bench/results/budget.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.proxy.auth.keys import Authenticator, KeyTable  # noqa: E402
from services.proxy.budget.admission import AwaitRenewal, BudgetRequest  # noqa: E402
from services.proxy.budget.entities import EntityDirectory  # noqa: E402
from services.proxy.budget.estimate import group_rates  # noqa: E402
from services.proxy.budget.guard import BudgetGuard  # noqa: E402
from services.proxy.budget.leases import DRAIN_GRACE  # noqa: E402
from services.proxy.budget.totals import TotalsView  # noqa: E402
from services.proxy.routing.router import Router  # noqa: E402
from shared.config import load_config  # noqa: E402
from shared.events import EntityChanged, TokenUsage, UsageEvent  # noqa: E402
from shared.keys import hash_key  # noqa: E402
from shared.pricing import load_catalog  # noqa: E402
from stack.prune import delete_prefixed  # noqa: E402

TARGET_US = 50.0
CALL_COST = Decimal("0.0000074")
WORKERS = 2
HOLDERS = 2 * WORKERS  # lease holders: the overshoot bound is one call per holder
LEASE_TTL_S = 2


def check_cost(iterations: int) -> dict[str, float]:
    catalog = load_catalog()
    config = load_config(ROOT / "config" / "config.yaml", {"TALLY_DEMO_UPSTREAM": "http://127.0.0.1:4010/v1", "LITELLM_MASTER_KEY": "sk-bench-master-key-0123"})
    router = Router.from_deployments(config.model_list, {})
    keys, directory, totals = KeyTable(), EntityDirectory(), TotalsView()
    guard = BudgetGuard(directory, totals, catalog, group_rates(catalog, router.all_targets()))
    now = datetime.now(timezone.utc).isoformat()
    raw = "sk-bench-key"
    changes = [
        EntityChanged(entity_type="team", entity_id="t1", state={"team_id": "t1", "max_budget": "1000", "budget_duration": "30d", "created_at": now}),
        EntityChanged(entity_type="customer", entity_id="c1", state={"user_id": "c1", "max_budget": "1000", "created_at": now}),
        EntityChanged(entity_type="key", entity_id=hash_key(raw), state={
            "token": hash_key(raw), "team_id": "t1", "max_budget": "1000", "soft_budget": "900", "budget_duration": "1d",
            "rpm_limit": 10_000_000, "created_at": now}),
    ]
    for change in changes:
        keys.apply(change)
        directory.apply(change)
    auth = Authenticator("sk-bench-master-key-0123", keys)
    headers = {"Authorization": f"Bearer {raw}"}
    body = {"model": "llama3", "messages": [{"role": "user", "content": "x" * 200}], "max_tokens": 80}
    start = datetime.now(timezone.utc)
    event = UsageEvent.model_construct(start_time=start, quoted_cost=CALL_COST, usage=TokenUsage(prompt_tokens=20, completion_tokens=80))
    async def renewed_leases() -> None:
        """The first call of each entity waits for its lease; before every round each lease is renewed,
        as the lease keeper's heartbeats do in a worker, so the timed loop never waits on one."""
        request = BudgetRequest("r", auth.authenticate(headers), "llama3", "c1", (), "acompletion", body)
        try:
            admission = guard.admit(request)
        except AwaitRenewal as short:
            admission = await short.admit_after_renewal()
        guard.settle(admission, event)
        for accounts in guard._accounts.values():
            for account in accounts.values():
                await guard.keeper.renew(account, Decimal(0))

    samples = []
    for _ in range(5):
        asyncio.run(renewed_leases())
        t0 = time.perf_counter()
        for _ in range(iterations // 5):
            caller = auth.authenticate(headers)
            admission = guard.admit(BudgetRequest("r", caller, "llama3", "c1", (), "acompletion", body))
            guard.settle(admission, event)
        samples.append((time.perf_counter() - t0) / (iterations // 5) * 1e6)
    return {"auth_and_budget_us_per_request_median": round(sorted(samples)[2], 2),
            "auth_and_budget_us_per_request_best": round(min(samples), 2)}


def stack_figures(rounds: int) -> dict[str, float]:
    import aiohttp
    import orjson
    import psycopg

    from shared.kafka import ensure_topics
    from shared.keys import hash_key
    from shared.migrations import migrate
    from shared.settings import CommonSettings
    from tests.fixtures.polling import eventually
    from tests.fixtures.stack import ServiceProcess, TallyStack, _create_database, free_port

    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not kafka:
        from stack.kafka import ensure_kafka
        kafka = ensure_kafka()
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        from stack.postgres import ensure_postgres
        admin_url = ensure_postgres()
    name, database_url = _create_database(admin_url)
    common = CommonSettings(kafka_bootstrap_servers=kafka, database_url=database_url, topic_prefix=f"bb{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(common))
    asyncio.run(migrate(database_url))
    log_dir = Path(f"/tmp/tally-bench-budget-{uuid.uuid4().hex[:6]}")
    log_dir.mkdir()
    stack = TallyStack(common=common, config_path=ROOT / "config" / "config.yaml", log_dir=log_dir)
    proxy_env = {"TALLY_PROXY_REPLICAS": "2", "TALLY_PROXY_WORKERS": str(WORKERS), "TALLY_BUDGET_LEASE_TTL_S": str(LEASE_TTL_S)}
    for service, module, env in [("upstream", "stack.fake_upstream", {}), ("pricer", "services.pricer", {}),
                                 ("ledger", "services.ledger", {"LEDGER_BATCH_MAX_MS": "20"}),
                                 ("proxy-a", "services.proxy", {**proxy_env, "TALLY_SPOOL_DIR": str(log_dir / "a")}),
                                 ("proxy-b", "services.proxy", {**proxy_env, "TALLY_SPOOL_DIR": str(log_dir / "b")})]:
        port = free_port()
        stack.services[service] = ServiceProcess(service, module, port, log_dir / f"{service}.log",
                                                 ["--port", str(port)] if service == "upstream" else [], env)
    master = {"Authorization": f"Bearer {stack.master_key}", "Content-Type": "application/json"}
    body = orjson.dumps({"model": "llama3", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 80})

    def workers_of(pid: int) -> list[int]:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def worker_pid(parent: int, worker: int) -> int:
        """The pid of worker `worker` (its TALLY_PROXY_WORKER), whatever order the parent started them in."""
        for pid in workers_of(parent):
            if f"TALLY_PROXY_WORKER={worker}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return pid
        raise RuntimeError(f"no worker {worker} under {parent}")

    def lease_holders(key: str) -> list[str]:
        with psycopg.connect(database_url) as conn:
            return [row[0] for row in conn.execute("SELECT holder FROM tally_leases.budget_leases WHERE entity_id = %s AND holder <> '~settled'",
                                                   (hash_key(key),))]

    async def run() -> dict[str, float]:
        async with aiohttp.ClientSession() as session:
            async def generate(**fields: object) -> str:
                async with session.post(stack.url("proxy-a") + "/key/generate", data=orjson.dumps(fields), headers=master) as r:
                    return (await r.json())["key"]

            async def chat(replica: str, key: str, client: aiohttp.ClientSession = session) -> tuple[int, Decimal]:
                async with client.post(stack.url(replica) + "/chat/completions", data=body,
                                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
                    await r.read()
                    return r.status, Decimal(r.headers.get("x-litellm-response-cost", "0"))

            async def until_refused(replica: str, key: str, client: aiohttp.ClientSession) -> Decimal:
                spent = Decimal(0)
                while True:
                    status, cost = await chat(replica, key, client)
                    if status != 200:
                        return spent
                    spent += cost

            delays = []
            for _ in range(50):
                t0 = time.perf_counter()
                key = await generate()
                deadline = t0 + 5
                while (await chat("proxy-b", key))[0] != 200:
                    if time.perf_counter() > deadline:
                        raise RuntimeError("a new key did not work on the other replica within 5 s")
                    await asyncio.sleep(0.002)  # poll interval, bounded by the deadline
                delays.append(time.perf_counter() - t0)
            delays.sort()
            budget = CALL_COST * 100
            overshoots, keep_alive, spread, killed = [], [], [], []
            for _ in range(rounds):
                key = await generate(max_budget=float(budget * 2))
                spent: list[Decimal] = []

                async def caller(i: int) -> None:
                    while True:
                        status, cost = await chat(("proxy-a", "proxy-b")[i % 2], key)
                        if status != 200:
                            return
                        spent.append(cost)

                await asyncio.gather(*(caller(i) for i in range(64)))
                overshoots.append((sum(spent, Decimal(0)) - budget * 2) / CALL_COST)
                key = await generate(max_budget=float(budget))
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one:
                    keep_alive.append(await until_refused("proxy-a", key, one) / budget)
                key = await generate(max_budget=float(budget))
                total = Decimal(0)
                for i in range(200):  # a new connection per call, alternating replicas: every worker serves it
                    async with aiohttp.ClientSession() as fresh:
                        status, cost = await chat(("proxy-a", "proxy-b")[i % 2], key, fresh)
                    if status != 200:
                        break
                    total += cost
                spread.append(total / budget)
            # A worker SIGKILLed mid-window, holding a lease: what the others deliver of the rest.
            key = await generate(max_budget=float(budget))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one:
                before = sum([(await chat("proxy-a", key, one))[1] for _ in range(10)], Decimal(0))
                holder, = lease_holders(key)
                worker = int(holder.rsplit("/", 2)[1])
                parent = stack.services["proxy-a"].process.pid
                victim = worker_pid(parent, worker)
                os.kill(victim, signal.SIGKILL)
            killed_at = time.perf_counter()
            # The client goes on on the other replica; refused, it tries again every 0.5 s until the dead
            # lease's expiry and DRAIN_GRACE are past (then what it did not use is granted again).
            after, refused_first, last_call_s = Decimal(0), None, 0.0
            while True:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one:
                    more = await until_refused("proxy-b", key, one)
                if more:
                    last_call_s = time.perf_counter() - killed_at
                after += more
                refused_first = after if refused_first is None else refused_first
                if time.perf_counter() - killed_at > LEASE_TTL_S + DRAIN_GRACE.total_seconds() + 3:
                    break
                await asyncio.sleep(0.5)  # the client's retry pace
            killed.append(((before + refused_first) / budget, (before + after) / budget, last_call_s))
            # The parent restarts the worker; let it finish starting before the stack is stopped.
            eventually(lambda: len(workers_of(parent)) == WORKERS and victim not in workers_of(parent), 30, "the restart")
            log = stack.services["proxy-a"].log_path
            eventually(lambda: log.read_text().count('"proxy_worker_ready"') > WORKERS, 60, "the restarted worker ready")
            return {"key_propagation_p99_ms": round(delays[int(len(delays) * 0.99) - 1] * 1000, 2),
                    "key_propagation_p50_ms": round(delays[len(delays) // 2] * 1000, 2),
                    "overshoot_requests_worth_max": float(max(overshoots)),
                    "overshoot_bound_requests_worth": float(HOLDERS),
                    "delivered_share_keep_alive_client_min": float(min(keep_alive)),
                    "delivered_share_client_over_all_workers_min": float(min(spread)),
                    "delivered_share_with_a_worker_sigkilled_at_first_refusal": float(killed[0][0]),
                    "delivered_share_with_a_worker_sigkilled": float(killed[0][1]),
                    "sigkill_to_last_call_delivered_s": round(killed[0][2], 2),
                    "rounds": rounds}

    try:
        for service in stack.services:
            stack.start(service)
        for replica in ("proxy-a", "proxy-b"):
            log = stack.services[replica].log_path
            eventually(lambda log=log: log.read_text().count('"proxy_worker_ready"') >= WORKERS, 60, f"{replica}'s workers")
        return asyncio.run(run())
    finally:
        stack.stop_all()
        asyncio.run(delete_prefixed(common.kafka_bootstrap_servers, common.topic_prefix))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--no-stack", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="budgets exhausted per stack figure")
    args = parser.parse_args()
    results: dict[str, object] = {"target_us": TARGET_US, **check_cost(args.iterations)}
    if not args.no_stack:
        results.update(stack_figures(args.rounds))
    results["measured_at"] = datetime.now(timezone.utc).isoformat()
    for name, value in results.items():
        print(f"{name}: {value}")
    out = ROOT / "bench" / "results" / "budget.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["auth_and_budget_us_per_request_median"] <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
