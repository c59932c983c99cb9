"""Proxy overhead and throughput. The upstream (bench/canned_upstream.py) and the proxy run as
their own processes, the proxy with everything on: a virtual key with a budget (lookup,
admission, settlement), pricing, Kafka emission against the real broker (a bench topic prefix).
This process is the load generator (bench/loadgen.py: keep-alive connections and ready-made
requests, so that it does not eat the CPU it is measuring). Every figure is measured in the same
run both directly against the upstream and through the proxy.

    python bench/bench_proxy.py [--latency-requests 2000] [--warmup-seconds 3] [--seconds 10] [--memory-requests 200000] [--workers 2]

Figures: added latency at concurrency 1 (p50, p99 of proxy minus direct), requests/s at
concurrency 32 plain and streamed, the proxy's CPU time per request (from /proc), its RSS across
the memory run, and the usage events that reached Kafka. Writes bench/results/proxy.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench.loadgen import LoadTarget, run_for  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402
from shared.topics import USAGE  # noqa: E402
from stack.kafka import ensure_kafka  # noqa: E402
from stack.prune import delete_prefixed  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "proxy.json"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "this is a test request, write a short poem"}],
        "user": "palantir", "metadata": {"tags": ["jobID:214590dsff09fds", "taskName:run_page_classification"]}}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
TICKS = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # poll interval, bounded by the deadline
    raise SystemExit(f"{url} did not answer within {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class OtherLoad:
    """CPU the rest of the machine took during a phase (the broker, other programs), and CPU the
    hypervisor stole: what makes one run of this benchmark slower than another."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = sum(fields[i] for i in (0, 1, 2, 5, 6)) / TICKS  # user nice system irq softirq
        ours = sum(proxy_cpu_seconds(pid) for pid in self.pids) + time.process_time()
        return busy, fields[7] / TICKS, ours, time.monotonic()

    def report(self) -> dict[str, float]:
        busy, steal, ours, now = self._now()
        wall = now - self.start[3]
        return {"other_cores": round(((busy - self.start[0]) - (ours - self.start[2])) / wall, 2),
                "stolen_cores": round((steal - self.start[1]) / wall, 2)}


def proxy_cpu_seconds(pid: int) -> float:
    """The proxy's CPU time: the process and, with workers, every worker it started."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def proxy_rss_mb(pid: int) -> float:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return rss_mb(pid) + sum(rss_mb(int(child)) for child in children)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def virtual_key(proxy_url: str) -> str:
    request = urllib.request.Request(proxy_url + "/key/generate", data=json.dumps({"max_budget": 1_000_000, "key_alias": "bench"}).encode(),
                                     headers={"Authorization": "Bearer sk-1234", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["key"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def latency(targets: dict[str, LoadTarget], n: int, warmup_s: float) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Concurrency 1, the targets alternating call by call so drift hits both alike. The first
    `warmup_s` seconds are kept apart (returned first): right after start-up the proxy's second
    worker, the broker (its topics just created) and cold caches take CPU, which says nothing
    about the steady cost of a call."""
    warmup: dict[str, list[float]] = {name: [] for name in targets}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    warm_until = time.perf_counter() + warmup_s
    while len(next(iter(samples.values()))) < n:
        into = warmup if time.perf_counter() < warm_until else samples
        for name, target in targets.items():
            t = time.perf_counter()
            await target.call()
            into[name].append((time.perf_counter() - t) * 1000)
    return warmup, samples


async def topic_size(common: CommonSettings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=common.kafka_bootstrap_servers)
    await consumer.start()
    try:
        topic = common.topic(USAGE)
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))]
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()
    consumer.subscribe([topic])
    deadline = time.monotonic() + 20
    while not consumer.assignment() and time.monotonic() < deadline:
        await consumer.getmany(timeout_ms=100)
    return {tp.partition for tp in consumer.assignment()}


async def run(args: argparse.Namespace, common: CommonSettings, upstream_url: str, proxy_url: str, proxy_pid: int,
              upstream_pid: int) -> dict:
    # A virtual key with a budget, as an app would call with: key lookup, budget admission and
    # settlement all run on every call.
    auth = {"Authorization": f"Bearer {virtual_key(proxy_url)}", "Content-Type": "application/json"}
    direct_headers = {"Content-Type": "application/json"}
    plain, streamed = json.dumps(CHAT).encode(), json.dumps(STREAM).encode()
    proxied = 0
    path = "/v1/chat/completions"
    targets = {(where, label): LoadTarget(url + path, headers, body)
               for where, url, headers in (("direct", upstream_url, direct_headers), ("proxy", proxy_url, auth))
               for label, body in (("plain", plain), ("stream", streamed))}
    try:
        other = OtherLoad(proxy_pid, upstream_pid)
        warmup, samples = await latency({"direct": targets["direct", "plain"], "proxy": targets["proxy", "plain"]},
                                        args.latency_requests, args.warmup_seconds)
        proxied += args.latency_requests + len(warmup["proxy"])
        cold = {name: {"calls": len(v), "p50_ms": round(pct(v, 0.5), 3), "p99_ms": round(pct(v, 0.99), 3)} for name, v in warmup.items()}
        print(f"warm-up c=1   first {args.warmup_seconds:g} s after start-up ({cold['proxy']['calls']} calls, not counted): "
              f"direct p99 {cold['direct']['p99_ms']:.3f} ms | proxy p50 {cold['proxy']['p50_ms']:.3f} ms "
              f"p99 {cold['proxy']['p99_ms']:.3f} ms", flush=True)
        lat = {name: {"p50_ms": round(pct(v, 0.5), 3), "p99_ms": round(pct(v, 0.99), 3), "mean_ms": round(statistics.fmean(v), 3)}
               for name, v in samples.items()}
        added = {"p50_ms": round(lat["proxy"]["p50_ms"] - lat["direct"]["p50_ms"], 3),
                 "p99_ms": round(lat["proxy"]["p99_ms"] - lat["direct"]["p99_ms"], 3)}
        print(f"latency c=1   direct p50 {lat['direct']['p50_ms']:.3f} ms p99 {lat['direct']['p99_ms']:.3f} ms | "
              f"proxy p50 {lat['proxy']['p50_ms']:.3f} ms p99 {lat['proxy']['p99_ms']:.3f} ms | "
              f"added p50 {added['p50_ms']:.3f} ms p99 {added['p99_ms']:.3f} ms", flush=True)
        others = {"latency": other.report()}
        print(f"              rest of the machine meanwhile (Kafka broker included): {others['latency']}", flush=True)

        rates: dict[str, dict[str, float]] = {}
        cpu_per_request: dict[str, float] = {}
        for label in ("plain", "stream"):
            up0 = cpu_seconds(upstream_pid)
            n, t = await run_for(targets["direct", label], args.seconds, CONCURRENCY)
            direct_rps = n / t
            upstream_cpu = (cpu_seconds(upstream_pid) - up0) / n * 1000
            cpu0, own0 = proxy_cpu_seconds(proxy_pid), time.process_time()
            other = OtherLoad(proxy_pid, upstream_pid)
            n, t = await run_for(targets["proxy", label], args.seconds, CONCURRENCY)
            cpu_per_request[label] = (proxy_cpu_seconds(proxy_pid) - cpu0) / n * 1000
            loadgen_cpu = (time.process_time() - own0) / n * 1000
            proxied += n
            rates[label] = {"direct_rps": round(direct_rps, 1), "proxy_rps": round(n / t, 1),
                            "upstream_cpu_ms_per_request": round(upstream_cpu, 3), "load_generator_cpu_ms_per_request": round(loadgen_cpu, 3)}
            print(f"c=32 {label:6s}  direct {direct_rps:8.1f} req/s | proxy {n / t:8.1f} req/s | "
                  f"proxy CPU {cpu_per_request[label]:.3f} ms/request (upstream {upstream_cpu:.3f}, "
                  f"load generator {loadgen_cpu:.3f}); rest of the machine {others.setdefault(label, other.report())}", flush=True)

        memory = None
        if args.memory_requests:
            rss_before = proxy_rss_mb(proxy_pid)
            n, t = await run_for(targets["proxy", "plain"], 3600, CONCURRENCY, limit=args.memory_requests)
            proxied += n
            rss_after = proxy_rss_mb(proxy_pid)
            memory = {"requests": n, "seconds": round(t, 1), "rps": round(n / t, 1), "rss_before_mb": round(rss_before, 1),
                      "rss_after_mb": round(rss_after, 1), "growth_pct": round((rss_after - rss_before) / rss_before * 100, 1)}
            print(f"memory        {n} requests in {t:.1f} s ({n / t:.0f}/s): RSS {rss_before:.1f} -> {rss_after:.1f} MB "
                  f"({memory['growth_pct']:+.1f} %)", flush=True)
    finally:
        for target in targets.values():
            target.close()

    deadline = time.monotonic() + 60
    events = await topic_size(common)
    while events < proxied and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # poll the topic's end offsets until every event arrived, bounded
        events = await topic_size(common)
    print(f"load average {os.getloadavg()} (other programs on this machine skew every figure)", flush=True)
    print(f"usage events on Kafka: {events} for {proxied} proxied requests", flush=True)
    return {
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "proxy_workers": args.workers,
        "rest_of_machine_cores": others,
        "latency_c1": {**lat, "added": added, "requests": args.latency_requests, "warmup": cold},
        "throughput_c32": rates,
        "proxy_cpu_ms_per_request": {k: round(v, 3) for k, v in cpu_per_request.items()},
        "memory": memory,
        "usage_events": {"proxied_requests": proxied, "on_topic": events},
        "targets": {"added_p50_ms": 1.0, "added_p99_ms": 3.0, "plain_rps": 3000, "stream_rps": 1500, "cpu_ms_per_request": 0.5,
                    "memory_growth_pct": 10},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-requests", type=int, default=2000)
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="calls at concurrency 1 first, reported apart")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_PROXY_WORKERS", 2)),
                        help="TALLY_PROXY_WORKERS of the proxy under test (one process per core)")
    parser.add_argument("--memory-requests", type=int, default=int(os.environ.get("BENCH_PROXY_MEMORY_REQUESTS", 200_000)))
    args = parser.parse_args()

    common = CommonSettings(kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ensure_kafka(),
                            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(common))
    upstream_port, proxy_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": common.kafka_bootstrap_servers, "TALLY_TOPIC_PREFIX": common.topic_prefix,
           "TALLY_CONFIG": str(ROOT / "config" / "config.yaml"), "TALLY_DEMO_UPSTREAM": f"http://127.0.0.1:{upstream_port}/v1",
           "PROXY_PORT": str(proxy_port), "TALLY_SPOOL_DIR": str(workdir / "spool"), "LITELLM_MASTER_KEY": "sk-1234",
           "TALLY_KEY_SYNC_TIMEOUT_S": "10", "TALLY_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1",
           "TALLY_PROXY_WORKERS": str(args.workers)}
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.canned_upstream", "--port", str(upstream_port)], cwd=ROOT,
                                      stdout=open(workdir / "upstream.log", "wb"), stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([sys.executable, "-m", "services.proxy"], cwd=ROOT, env=env,
                                      stdout=open(workdir / "proxy.log", "wb"), stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{upstream_port}/v1/models")
        wait_http(f"http://127.0.0.1:{proxy_port}/health/liveliness")
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(run(args, common, f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{proxy_port}", procs[1].pid, procs[0].pid))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        asyncio.run(delete_prefixed(common.kafka_bootstrap_servers, common.topic_prefix))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
