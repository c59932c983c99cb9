"""Budgets: the cost of auth + budget check per request, the overshoot past max_budget under 64-way
concurrency on two replicas, and the time from /key/generate on one replica to the key working on
the other.

    .venv/bin/python bench/bench_budget.py [--iterations 200000] [--no-stack]

The first figure is measured in process (Authenticator.authenticate + BudgetGuard.admit + settle
for a key with a budget, in a team with a budget, for a customer with a budget). The other two
start a fake upstream, pricer, ledger and two proxy replicas as processes against the local Kafka
and Postgres (KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, else the ones `make up` runs).
Prints the figures and writes bench/results/budget.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.proxy.auth.keys import Authenticator, KeyTable  # noqa: E402
from services.proxy.budget.admission import BudgetRequest  # noqa: E402
from services.proxy.budget.entities import EntityDirectory  # noqa: E402
from services.proxy.budget.estimate import group_rates  # noqa: E402
from services.proxy.budget.guard import BudgetGuard  # noqa: E402
from services.proxy.budget.totals import TotalsView  # noqa: E402
from services.proxy.routing.router import Router  # noqa: E402
from shared.config import load_config  # noqa: E402
from shared.events import EntityChanged, TokenUsage, UsageEvent  # noqa: E402
from shared.keys import hash_key  # noqa: E402
from shared.pricing import load_catalog  # noqa: E402
from stack.prune import delete_prefixed  # noqa: E402

TARGET_US = 50.0
CALL_COST = Decimal("0.0000074")


def check_cost(iterations: int) -> dict[str, float]:
    catalog = load_catalog()
    config = load_config(ROOT / "config" / "config.yaml", {"TALLY_DEMO_UPSTREAM": "http://127.0.0.1:4010/v1", "LITELLM_MASTER_KEY": "sk-bench-master-key-0123"})
    router = Router.from_deployments(config.model_list, {})
    keys, directory, totals = KeyTable(), EntityDirectory(), TotalsView()
    guard = BudgetGuard(directory, totals, catalog, group_rates(catalog, router.all_targets()), replicas=2)
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
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iterations // 5):
            caller = auth.authenticate(headers)
            admission = guard.admit(BudgetRequest("r", caller, "llama3", "c1", (), "acompletion", body))
            guard.settle(admission, event)
        samples.append((time.perf_counter() - t0) / (iterations // 5) * 1e6)
    return {"auth_and_budget_us_per_request_median": round(sorted(samples)[2], 2),
            "auth_and_budget_us_per_request_best": round(min(samples), 2)}


def stack_figures() -> dict[str, float]:
    import aiohttp
    import orjson
    import psycopg

    from shared.kafka import ensure_topics
    from shared.migrations import migrate
    from shared.settings import CommonSettings
    from tests.fixtures.stack import ServiceProcess, TallyStack, _create_database, free_port
    import os

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
    for service, module, env in [("upstream", "stack.fake_upstream", {}), ("pricer", "services.pricer", {}),
                                 ("ledger", "services.ledger", {"LEDGER_BATCH_MAX_MS": "20"}),
                                 ("proxy-a", "services.proxy", {"TALLY_PROXY_REPLICAS": "2", "TALLY_SPOOL_DIR": str(log_dir / "a")}),
                                 ("proxy-b", "services.proxy", {"TALLY_PROXY_REPLICAS": "2", "TALLY_SPOOL_DIR": str(log_dir / "b")})]:
        port = free_port()
        stack.services[service] = ServiceProcess(service, module, port, log_dir / f"{service}.log",
                                                 ["--port", str(port)] if service == "upstream" else [], env)
    master = {"Authorization": f"Bearer {stack.master_key}", "Content-Type": "application/json"}
    body = orjson.dumps({"model": "llama3", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 80})

    async def run() -> dict[str, float]:
        async with aiohttp.ClientSession() as session:
            async def generate(**fields: object) -> str:
                async with session.post(stack.url("proxy-a") + "/key/generate", data=orjson.dumps(fields), headers=master) as r:
                    return (await r.json())["key"]

            async def chat(replica: str, key: str) -> tuple[int, Decimal]:
                async with session.post(stack.url(replica) + "/chat/completions", data=body,
                                        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
                    await r.read()
                    return r.status, Decimal(r.headers.get("x-litellm-response-cost", "0"))

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
            overshoots = []
            for _ in range(5):
                budget = CALL_COST * 20
                key = await generate(max_budget=float(budget))
                spent: list[Decimal] = []

                async def caller(i: int) -> None:
                    while True:
                        status, cost = await chat(("proxy-a", "proxy-b")[i % 2], key)
                        if status != 200:
                            return
                        spent.append(cost)

                await asyncio.gather(*(caller(i) for i in range(64)))
                overshoots.append((sum(spent, Decimal(0)) - budget) / CALL_COST)
            return {"key_propagation_p99_ms": round(delays[int(len(delays) * 0.99) - 1] * 1000, 2),
                    "key_propagation_p50_ms": round(delays[len(delays) // 2] * 1000, 2),
                    "overshoot_requests_worth_max": float(max(overshoots)),
                    "overshoot_bound_requests_worth": 2.0}

    try:
        for service in stack.services:
            stack.start(service)
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
    args = parser.parse_args()
    results: dict[str, object] = {"target_us": TARGET_US, **check_cost(args.iterations)}
    if not args.no_stack:
        results.update(stack_figures())
    results["measured_at"] = datetime.now(timezone.utc).isoformat()
    for name, value in results.items():
        print(f"{name}: {value}")
    out = ROOT / "bench" / "results" / "budget.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["auth_and_budget_us_per_request_median"] <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
