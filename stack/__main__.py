"""`python -m stack up|down|status`: what `make up` and `make down` run."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from shared.config import ConfigError, load_config
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import DEFAULT_CONFIG_PATH, CommonSettings
from stack import cluster, kafka, postgres, services
from stack.paths import LOGS, RUN
from stack.procs import StackError, recorded_pid, stop

STARTED_POSTGRES = RUN / "started-postgres"


def up(config: Path, nodes: int = 0) -> None:
    """The stack; with `nodes` (CLUSTER=3), on that many Kafka nodes with two of each service."""
    began = time.monotonic()
    try:
        proxy_config = load_config(config)
    except ConfigError as exc:
        raise StackError(str(exc)) from exc
    started: list[str] = []
    try:
        if nodes:
            bootstrap, nodes_started = cluster.ensure_cluster(nodes)
            started.extend(nodes_started)
            cluster.record_nodes(nodes)
        else:
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or _start_kafka(started)
        database_url = os.environ.get("DATABASE_URL") or _start_postgres(started)
        common = CommonSettings(kafka_bootstrap_servers=bootstrap, database_url=database_url)
        asyncio.run(ensure_topics(common))
        asyncio.run(migrate(database_url))
        env = services.service_env(bootstrap, database_url, config)
        specs = [services.DEMO_UPSTREAM, *services.SERVICES]
        if nodes:
            specs += services.CLUSTER_SERVICES
            env["TALLY_PROXY_REPLICAS"] = "2"  # the two proxies split budgets and rate limits
        for spec in specs:
            if services.start(spec, env):
                started.append(spec.name)
        for spec in specs:
            services.wait_healthy(spec)
    except BaseException:
        for name in reversed(started):
            stop(name)
        if nodes:
            cluster.forget_nodes()
        raise
    master_key = proxy_config.general_settings.master_key or "(none: set general_settings.master_key)"
    print(f"Tally is up ({time.monotonic() - began:.1f}s; {'started ' + ', '.join(started) if started else 'already running'})")
    print("  proxy    http://127.0.0.1:4000   (OpenAI-compatible; spend routes and /ui too)")
    print("  reports  http://127.0.0.1:4001   Usage page: http://127.0.0.1:4000/ui")
    print("  pricer   http://127.0.0.1:4002/health   ledger http://127.0.0.1:4003/health")
    if nodes:
        print("  second   proxy http://127.0.0.1:4020   pricer :4012/health   ledger :4013/health")
    print(f"  kafka    {bootstrap}   postgres {database_url}")
    print(f"  master key: {master_key}")
    print(f"  logs: {LOGS}/")


def _start_kafka(started: list[str]) -> str:
    running = recorded_pid(kafka.NAME) is not None
    bootstrap = kafka.ensure_kafka()
    if not running and recorded_pid(kafka.NAME) is not None:
        started.append(kafka.NAME)
    return bootstrap


def _start_postgres(started: list[str]) -> str:
    was_up = postgres.can_connect(postgres.url())
    dsn = postgres.ensure_postgres()
    if not was_up and not STARTED_POSTGRES.exists():
        RUN.mkdir(parents=True, exist_ok=True)
        STARTED_POSTGRES.write_text(postgres.installed_versions()[-1])
    return dsn


def down() -> None:
    stopped = services.stop_all()
    if cluster.running_nodes():
        stopped += cluster.stop_cluster(cluster.running_nodes())
        cluster.forget_nodes()
    if stop(kafka.NAME, timeout=30):
        stopped.append(kafka.NAME)
    if STARTED_POSTGRES.exists():
        version = STARTED_POSTGRES.read_text().strip()
        postgres.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"], "stopping PostgreSQL")
        STARTED_POSTGRES.unlink()
        stopped.append("postgres")
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def status() -> None:
    for spec in [services.DEMO_UPSTREAM, *services.SERVICES, *(services.CLUSTER_SERVICES if cluster.running_nodes() else [])]:
        pid = recorded_pid(spec.name)
        state = "healthy" if services.healthy(spec) else ("running, unhealthy" if pid else "stopped")
        print(f"{spec.name:14} {state:18} pid {pid or '-'}  port {spec.port}")
    print(f"{'kafka':14} {'running' if recorded_pid(kafka.NAME) else 'not ours / stopped':18} pid {recorded_pid(kafka.NAME) or '-'}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--config", type=Path, default=Path(os.environ.get("TALLY_CONFIG") or DEFAULT_CONFIG_PATH))
    parser.add_argument("--cluster", type=int, default=0, metavar="N", help="run N Kafka nodes (3 or more) and two of each service")
    args = parser.parse_args()
    try:
        {"up": lambda: up(args.config.resolve(), args.cluster), "down": down, "status": status}[args.command]()
    except StackError as exc:
        print(f"make {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
