"""End to end, everything on this machine: the fake upstream, the proxy, the pricer, the ledger, the
reports service, Kafka and Postgres, and this process as the load generator.

    python bench/bench_e2e.py [--seconds 10] [--overhead-requests 2000]
    python bench/bench_e2e.py --compare-cluster [--seconds 10] [--rates 100,250,500,750,1000,1250,1500]

Figures, all measured in the same run:
- freshness: the time from a call's answer to its spend being visible in /global/spend/report
  (asked through the proxy, as a user would), p50 / p99 / max, at 100 and 1,000 requests/s and at
  the highest rate this machine sustains. Every 20th call of the load is a probe with a customer
  (`user`) of its own; a poller asks the report grouped by customer every 50 ms, and the probe is
  visible once its customer's total_spend equals the cost it was quoted. The same probes are also
  timed to their spend log row (polled by request id every 50 ms), which separates the ledger's
  delay from the report's. "Sustained": at least 95% of the asked rate answered, no failed call,
  every probe visible, report-freshness p99 under 5 s.
- proxy overhead: direct to the fake upstream, through a minimal aiohttp relay (below; no auth, no
  pricing, no events), and through Tally's proxy: latency at concurrency 1 (p50 / p99), requests/s
  at concurrency 32.
- ledger ingest: the ledger is stopped while load runs, then started; events per second from its
  start to the last row.

Writes bench/results/e2e.json and prints a table.

`--compare-cluster` runs only the freshness ramp (a 10 s warm-up, then steps at rising rates up to
the first not sustained), first on a single broker (KAFKA_BOOTSTRAP_SERVERS, else the one `make up` runs), then on
three KRaft nodes this run starts on free ports and stops afterwards (replication factor 3,
min.insync.replicas 2, every producer acks=all), each time with one of each service on this
machine; it reports the highest sustained rate on each, the ratios cluster / single of that rate and
of the answered rate and freshness p99 at the highest rate both sustained (else the first rate),
and the load average around each run.
Writes bench/results/e2e_cluster.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import psycopg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.kafka import ensure_topics  # noqa: E402
from shared.migrations import migrate  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402
from stack import cluster  # noqa: E402
from stack.kafka import ensure_kafka  # noqa: E402
from stack.postgres import ensure_postgres  # noqa: E402
from stack.procs import port_open  # noqa: E402
from stack.prune import delete_prefixed  # noqa: E402
from tests.faults.load import Answered, Population, provision, run_load  # noqa: E402
from tests.fixtures.faults import free_ports_below_ephemeral  # noqa: E402
from tests.fixtures.polling import eventually as wait_for  # noqa: E402
from tests.fixtures.stack import ServiceProcess, TallyStack, _create_database, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "e2e.json"
CLUSTER_RESULTS = ROOT / "bench" / "results" / "e2e_cluster.json"
WARM_UP_S = 10.0
PROBE_EVERY = 20
POLL_S = 0.05
SUSTAINED = {"answered_share": 0.95, "freshness_p99_s": 5.0}
BODY = {"model": "llama3", "messages": [{"role": "user", "content": "this is a test request, write a short poem"}]}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def dist(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, float | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v * scale, digits)
    return {"p50": r(pct(values, 0.5)), "p99": r(pct(values, 0.99)), "max": r(max(values) if values else None)}


# -- the minimal relay: what any proxy costs at least ---------------------------------------------


def relay_app(upstream: str) -> web.Application:
    """POST the body to the upstream's /v1/chat/completions, answer its bytes: nothing else."""

    async def session_ctx(app: web.Application):  # noqa: ANN202
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        yield
        await app["session"].close()

    async def relay(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app["session"].post(upstream + "/v1/chat/completions", data=body,
                                               headers={"Content-Type": "application/json"}) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/chat/completions", relay)
    return app


# -- freshness ------------------------------------------------------------------------------------


async def freshness_step(stack: TallyStack, population: Population, rate: float, seconds: float, seed: int) -> dict:
    proxy = stack.url("proxy")
    pending: dict[str, Answered] = {}  # customer → its probe call
    row_pending: dict[str, Answered] = {}  # request id → probe call
    report_delay: list[float] = []
    row_delay: list[float] = []
    loading = True

    def on_answer(call: Answered) -> None:
        if call.customer.startswith("probe-"):
            pending[call.customer] = call
            row_pending[call.call_id] = call

    today = datetime.now(timezone.utc).date()
    query = f"/global/spend/report?start_date={today}&end_date={today + timedelta(days=1)}&group_by=customer"

    async def poll_report(session: aiohttp.ClientSession) -> None:
        while loading or pending:
            async with session.get(proxy + query, headers={"Authorization": f"Bearer {stack.master_key}"}) as resp:
                days = orjson.loads(await resp.read())
            seen = time.monotonic()
            for day in days:
                for row in day.get("customers", []):
                    call = pending.get(row.get("customer"))
                    if call is not None and Decimal(str(row["total_spend"])) == call.cost:
                        report_delay.append(seen - call.answered_at)
                        del pending[call.customer]
            await asyncio.sleep(POLL_S)  # the poll period

    async def poll_rows() -> None:
        async with await psycopg.AsyncConnection.connect(stack.common.database_url, autocommit=True) as conn:
            while loading or row_pending:
                cur = await conn.execute('SELECT request_id FROM "LiteLLM_SpendLogs" WHERE request_id = ANY(%s)', (list(row_pending),))
                seen = time.monotonic()
                for (request_id,) in await cur.fetchall():
                    row_delay.append(seen - row_pending.pop(request_id).answered_at)
                await asyncio.sleep(POLL_S)  # the poll period

    async with aiohttp.ClientSession() as session:
        pollers = [asyncio.create_task(poll_report(session)), asyncio.create_task(poll_rows())]
        result = await run_load([proxy], population, rate=rate, duration_s=seconds, max_calls=int(rate * seconds),
                                seed=seed, probe_every=PROBE_EVERY, on_answer=on_answer)
        loading = False
        try:
            await asyncio.wait_for(asyncio.gather(*pollers), 90)
        except asyncio.TimeoutError:
            for task in pollers:
                task.cancel()
    latencies = result.latencies()
    step = {
        "asked_rps": rate, "answered_rps": round(result.achieved_rate, 1), "answered": len(result.answered),
        "failed": len(result.failed), "call_latency_ms": dist(latencies, 1000, 1),
        "probes": len(report_delay) + len(pending), "probes_not_visible": len(pending),
        "freshness_report_s": dist(report_delay), "freshness_row_s": dist(row_delay),
    }
    p99 = step["freshness_report_s"]["p99"]
    step["sustained"] = (result.achieved_rate >= SUSTAINED["answered_share"] * rate and not result.failed and not pending
                         and p99 is not None and p99 < SUSTAINED["freshness_p99_s"])
    return step


# -- ledger ingest ---------------------------------------------------------------------------------


def spend_log_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs"').fetchone()[0]


def pricer_lag(stack: TallyStack) -> float:
    with urllib.request.urlopen(stack.url("pricer") + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("tally_pricer_consumer_lag "):
                return float(line.split()[1])
    raise SystemExit("the pricer's /metrics has no tally_pricer_consumer_lag")


async def ledger_ingest(stack: TallyStack, population: Population, rate: float, seconds: float) -> dict:
    stack.kill("ledger", signal.SIGTERM)
    before = spend_log_count(stack.common.database_url)
    result = await run_load([stack.url("proxy")], population, rate=rate, duration_s=seconds, max_calls=int(rate * seconds), seed=99)
    expected = before + len(result.answered)
    await asyncio.to_thread(wait_for, lambda: pricer_lag(stack) == 0, 120, "the pricer to price the backlog", 0.2)
    began = time.monotonic()
    await asyncio.to_thread(stack.start, "ledger")
    healthy = time.monotonic()
    await asyncio.to_thread(wait_for, lambda: spend_log_count(stack.common.database_url) >= expected, 300, "the ledger to ingest the backlog", 0.1)
    done = time.monotonic()
    backlog = expected - before
    return {"backlog_events": backlog, "seconds_from_start": round(done - began, 2), "seconds_from_healthy": round(done - healthy, 2),
            "events_per_s_from_start": round(backlog / (done - began)), "events_per_s_from_healthy": round(backlog / (done - healthy))}


# -- overhead --------------------------------------------------------------------------------------


async def overhead(stack: TallyStack, population: Population, relay_url: str, requests: int, seconds: float) -> dict:
    key = population.keys[0].raw
    body = orjson.dumps(BODY)
    targets = {
        "direct": (stack.url("upstream") + "/v1/chat/completions", {"Content-Type": "application/json"}),
        "relay": (relay_url + "/chat/completions", {"Content-Type": "application/json"}),
        "proxy": (stack.url("proxy") + "/chat/completions", {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}),
    }
    out: dict[str, dict] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def one(url: str, headers: dict[str, str]) -> None:
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"{url} answered {resp.status}")

        samples: dict[str, list[float]] = {name: [] for name in targets}
        for i in range(requests + 200):
            for name, (url, headers) in targets.items():  # alternating, so drift hits all alike
                t = time.perf_counter()
                await one(url, headers)
                if i >= 200:  # warm-up
                    samples[name].append((time.perf_counter() - t) * 1000)
        for name, (url, headers) in targets.items():
            done = 0
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await one(url, headers)
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(32)))
            out[name] = {"c1_p50_ms": round(pct(samples[name], 0.5), 3), "c1_p99_ms": round(pct(samples[name], 0.99), 3),
                         "c1_mean_ms": round(statistics.fmean(samples[name]), 3), "c32_rps": round(done / (time.perf_counter() - start), 1)}
    out["proxy_minus_relay"] = {"c1_p50_ms": round(out["proxy"]["c1_p50_ms"] - out["relay"]["c1_p50_ms"], 3),
                                "c1_p99_ms": round(out["proxy"]["c1_p99_ms"] - out["relay"]["c1_p99_ms"], 3)}
    out["relay_minus_direct"] = {"c1_p50_ms": round(out["relay"]["c1_p50_ms"] - out["direct"]["c1_p50_ms"], 3),
                                 "c1_p99_ms": round(out["relay"]["c1_p99_ms"] - out["direct"]["c1_p99_ms"], 3)}
    return out


# -- the run ---------------------------------------------------------------------------------------


def start_stack(kafka: str, admin_url: str, work: Path) -> tuple[TallyStack, str]:
    name, database_url = _create_database(admin_url)
    common = CommonSettings(kafka_bootstrap_servers=kafka, database_url=database_url, topic_prefix=f"be2e{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(common))
    asyncio.run(migrate(database_url))
    stack = TallyStack(common=common, config_path=ROOT / "config" / "config.yaml", log_dir=work)
    for service, module in [("upstream", "stack.fake_upstream"), ("pricer", "services.pricer"), ("ledger", "services.ledger"),
                            ("reports", "services.reports"), ("proxy", "services.proxy")]:
        port = free_port()
        stack.services[service] = ServiceProcess(service, module, port, work / f"{service}.log",
                                                 ["--port", str(port)] if service == "upstream" else [])
    for service in stack.services:
        stack.start(service)
    return stack, name


async def measure(stack: TallyStack, relay_url: str, args: argparse.Namespace) -> dict:
    population = await provision([stack.url("proxy")], stack.master_key, label="bench")
    steps: list[dict] = []

    async def step(rate: float) -> dict:
        result = await freshness_step(stack, population, rate, args.seconds, seed=len(steps))
        steps.append(result)
        print(f"  {rate:>6.0f}/s asked: {result['answered_rps']:>7.1f}/s answered, freshness p50 "
              f"{result['freshness_report_s']['p50']} s p99 {result['freshness_report_s']['p99']} s, "
              f"sustained {result['sustained']}", flush=True)
        return result

    await step(100)
    at_1000 = await step(1000)
    best = 1000.0 if at_1000["sustained"] else None
    if at_1000["sustained"]:
        for rate in (1250, 1500, 2000, 2500, 3000):
            if not (await step(rate))["sustained"]:
                break
            best = rate
    else:
        for rate in (750, 500, 250):
            if (await step(rate))["sustained"]:
                best = rate
                break
    sustainable = max((s for s in steps if s["sustained"]), key=lambda s: s["asked_rps"], default=None)
    ingest = await ledger_ingest(stack, population, best or 500, args.seconds)
    over = await overhead(stack, population, relay_url, args.overhead_requests, args.overhead_seconds)
    return {"freshness_steps": steps, "highest_sustained_rps": best, "at_highest": sustainable,
            "ledger_ingest": ingest, "overhead": over}


def table(results: dict) -> str:
    lines = ["freshness: answer → visible in /global/spend/report (and → spend log row), seconds",
             f"{'asked/s':>8} {'answered/s':>10} {'report p50':>10} {'report p99':>10} {'row p50':>8} {'row p99':>8} {'call p99 ms':>11} sustained"]
    for s in results["freshness_steps"]:
        f, r = s["freshness_report_s"], s["freshness_row_s"]
        lines.append(f"{s['asked_rps']:>8.0f} {s['answered_rps']:>10.1f} {f['p50']!s:>10} {f['p99']!s:>10} {r['p50']!s:>8} "
                     f"{r['p99']!s:>8} {s['call_latency_ms']['p99']!s:>11} {s['sustained']}")
    lines.append(f"highest sustained: {results['highest_sustained_rps']}/s")
    o = results["overhead"]
    lines.append("overhead (concurrency 1 latency, concurrency 32 throughput):")
    for name in ("direct", "relay", "proxy"):
        lines.append(f"  {name:<7} p50 {o[name]['c1_p50_ms']:>7.3f} ms  p99 {o[name]['c1_p99_ms']:>7.3f} ms  {o[name]['c32_rps']:>7.1f}/s")
    lines.append(f"  proxy − relay: p50 {o['proxy_minus_relay']['c1_p50_ms']} ms, p99 {o['proxy_minus_relay']['c1_p99_ms']} ms")
    i = results["ledger_ingest"]
    lines.append(f"ledger ingest: {i['backlog_events']} events, {i['events_per_s_from_healthy']}/s from healthy "
                 f"({i['events_per_s_from_start']}/s from process start)")
    return "\n".join(lines)


# -- the same load on one broker and on a three-node cluster --------------------------------------


async def ramp(stack: TallyStack, seconds: float, rates: list[float]) -> list[dict]:
    """Freshness steps at rising rates, up to the first one not sustained, after a warm-up step at
    the first rate that is not counted (new JVMs, partition leaders and consumer groups settle)."""
    population = await provision([stack.url("proxy")], stack.master_key, label="bench")
    warm = await freshness_step(stack, population, rates[0], WARM_UP_S, seed=1000)
    print(f"  warm-up {rates[0]:.0f}/s for {WARM_UP_S:.0f} s: {warm['answered_rps']}/s answered", flush=True)
    steps: list[dict] = []
    for rate in rates:
        step = await freshness_step(stack, population, rate, seconds, seed=len(steps))
        steps.append(step)
        print(f"  {rate:>6.0f}/s asked: {step['answered_rps']:>7.1f}/s answered, row freshness p50 {step['freshness_row_s']['p50']} s "
              f"p99 {step['freshness_row_s']['p99']} s, sustained {step['sustained']}", flush=True)
        if not step["sustained"]:
            break
    return steps


def ramp_on(kind: str, kafka: str, admin_url: str, args: argparse.Namespace) -> dict:
    """Start the stack (one of each service) on `kafka`, ramp the load, stop it; with the load average around it."""
    work = Path(tempfile.mkdtemp(prefix=f"tally-bench-e2e-{kind}-"))
    load_before = os.getloadavg()
    stack, database = start_stack(kafka, admin_url, work)
    print(f"bench e2e on {kind} Kafka ({kafka}): logs in {work}", flush=True)
    try:
        steps = asyncio.run(ramp(stack, args.seconds, args.rates))
    finally:
        stack.stop_all()
        asyncio.run(delete_prefixed(kafka, stack.common.topic_prefix))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {"kafka": kafka, "steps": steps, "highest_sustained_rps": max((s["asked_rps"] for s in steps if s["sustained"]), default=None),
            "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def compare_cluster(args: argparse.Namespace) -> dict:
    """The same ramp on a single broker, then on three KRaft nodes of this run's own (RF 3,
    min.insync.replicas 2, acks=all), on this machine; the ratios cluster / single."""
    admin_url = os.environ.get("DATABASE_URL") or ensure_postgres()
    single = ramp_on("single", os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ensure_kafka(), admin_url, args)
    port, data = free_ports_below_ephemeral(6), Path(tempfile.mkdtemp(prefix="tally-bench-e2e-kafka-"))
    nodes = cluster.nodes(3, port, data, f"kafka-bench-{port}")
    try:
        servers, _ = cluster.ensure_cluster(members=nodes)
        three = ramp_on("cluster", servers, admin_url, args)
    finally:
        cluster.stop_cluster(members=nodes)
        shutil.rmtree(data, ignore_errors=True)  # the nodes' logs stay under .run/logs/kafka-bench-<port>-<i>
    # At the highest rate both sustained, or else at the first rate (which both ran).
    common = min(single["highest_sustained_rps"] or 0, three["highest_sustained_rps"] or 0) or args.rates[0]
    at = {kind: next(s for s in run["steps"] if s["asked_rps"] == common) for kind, run in (("single", single), ("cluster", three))}

    def ratio(cluster_value: float | None, single_value: float | None) -> float | None:
        return round(cluster_value / single_value, 2) if cluster_value is not None and single_value else None

    return {"single": single, "cluster": three, "ratios_cluster_over_single": {
        "highest_sustained_rps": ratio(three["highest_sustained_rps"], single["highest_sustained_rps"]),
        "at_rps": common, "answered_rps": ratio(at["cluster"]["answered_rps"], at["single"]["answered_rps"]),
        "freshness_row_p99": ratio(at["cluster"]["freshness_row_s"]["p99"], at["single"]["freshness_row_s"]["p99"]),
        "freshness_report_p99": ratio(at["cluster"]["freshness_report_s"]["p99"], at["single"]["freshness_report_s"]["p99"])}}


def compare_table(results: dict) -> str:
    lines = [f"{'kafka':<8} {'asked/s':>8} {'answered/s':>10} {'row p50':>8} {'row p99':>8} {'report p99':>10} sustained"]
    for kind in ("single", "cluster"):
        run = results[kind]
        for s in run["steps"]:
            lines.append(f"{kind:<8} {s['asked_rps']:>8.0f} {s['answered_rps']:>10.1f} {s['freshness_row_s']['p50']!s:>8} "
                         f"{s['freshness_row_s']['p99']!s:>8} {s['freshness_report_s']['p99']!s:>10} {s['sustained']}")
        lines.append(f"{kind:<8} highest sustained {run['highest_sustained_rps']}/s; load average before {run['load_average_before']}, "
                     f"after {run['load_average_after']}")
    lines.append(f"cluster / single: {results['ratios_cluster_over_single']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load per freshness step")
    parser.add_argument("--compare-cluster", action="store_true",
                        help="only the freshness ramp, on a single broker and on a three-node cluster; writes e2e_cluster.json")
    parser.add_argument("--rates", type=lambda v: [float(r) for r in v.split(",")], default=[100, 250, 500, 750, 1000, 1250, 1500],
                        help="the ramp of --compare-cluster, calls/s")
    parser.add_argument("--overhead-requests", type=int, default=2000)
    parser.add_argument("--overhead-seconds", type=float, default=5.0)
    parser.add_argument("--relay", metavar="UPSTREAM", help=argparse.SUPPRESS)  # internal: run the minimal relay
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        web.run_app(relay_app(args.relay), host="127.0.0.1", port=args.port, print=None, access_log=None)
        return
    if args.compare_cluster:
        results = compare_cluster(args)
        results["machine"] = {"cpus": os.cpu_count()}
        results["method"] = {"probe_every": PROBE_EVERY, "poll_s": POLL_S, "sustained_if": SUSTAINED, "seconds_per_step": args.seconds,
                             "services": "one fake upstream, pricer, ledger, reports and proxy on each Kafka"}
        CLUSTER_RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(compare_table(results))
        print(f"wrote {CLUSTER_RESULTS}")
        return

    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ensure_kafka()
    admin_url = os.environ.get("DATABASE_URL") or ensure_postgres()
    work = Path(tempfile.mkdtemp(prefix="tally-bench-e2e-"))
    stack, database = start_stack(kafka, admin_url, work)
    relay_port = free_port()
    relay_proc = subprocess.Popen([sys.executable, str(Path(__file__)), "--relay", stack.url("upstream"), "--port", str(relay_port)],
                                  cwd=ROOT, stdout=open(work / "relay.log", "ab"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: relay_proc.poll() is None and port_open(relay_port), 30, "the minimal relay to listen")
        print(f"bench e2e: services on {', '.join(f'{n} {s.port}' for n, s in stack.services.items())}; logs in {work}", flush=True)
        results = asyncio.run(measure(stack, f"http://127.0.0.1:{relay_port}", args))
    finally:
        relay_proc.send_signal(signal.SIGTERM)
        relay_proc.wait(timeout=30)
        stack.stop_all()
        asyncio.run(delete_prefixed(kafka, stack.common.topic_prefix))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    results["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg())}
    results["method"] = {"probe_every": PROBE_EVERY, "poll_s": POLL_S, "sustained_if": SUSTAINED, "seconds_per_step": args.seconds,
                         "visible_means": "the probe's customer has total_spend = its quoted cost in /global/spend/report?group_by=customer via the proxy"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
