"""Starting Tally's services (the four, the alerts process of the reports package, the demo upstream) as background processes."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stack.paths import LOGS, ROOT
from stack.procs import StackError, port_open, recorded_pid, start_detached, stop, wait_until


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    port_variable: str
    env: tuple[tuple[str, str], ...] = ()  # what sets this replica apart from its twin
    args: tuple[str, ...] = ()  # a subcommand of the service's package (the reports package's `alerts`)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


DEMO_UPSTREAM = ServiceSpec("demo-upstream", "stack.fake_upstream", 4010, "FAKE_UPSTREAM_PORT")
SERVICES = [
    ServiceSpec("pricer", "services.pricer", 4002, "PRICER_PORT"),
    ServiceSpec("ledger", "services.ledger", 4003, "LEDGER_PORT"),
    ServiceSpec("reports", "services.reports", 4001, "REPORTS_PORT"),
    ServiceSpec("alerts", "services.reports", 4005, "TALLY_ALERTS_PORT", args=("alerts",)),
    ServiceSpec("proxy", "services.proxy", 4000, "PROXY_PORT"),
]

# `make up CLUSTER=3` adds a second pricer, ledger and proxy (docs/operations.md).
CLUSTER_SERVICES = [
    ServiceSpec("pricer-2", "services.pricer", 4012, "PRICER_PORT", (("PRICER_INSTANCE", "1"),)),
    ServiceSpec("ledger-2", "services.ledger", 4013, "LEDGER_PORT"),
    ServiceSpec("proxy-2", "services.proxy", 4020, "PROXY_PORT"),
]


def healthy(spec: ServiceSpec) -> bool:
    url = spec.health_url if spec is not DEMO_UPSTREAM else f"http://127.0.0.1:{spec.port}/v1/models"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def last_log_line(name: str) -> str:
    path = LOGS / f"{name}.log"
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def start(spec: ServiceSpec, env: dict[str, str], timeout: float = 90) -> bool:
    """Start one service unless ours already runs; True if this call started it."""
    if recorded_pid(spec.name) is not None:
        return False
    if port_open(spec.port):
        raise StackError(f"port {spec.port} (for {spec.name}) is taken by another program: stop it or set {spec.port_variable}")
    argv = [sys.executable, "-m", spec.module, *spec.args]
    if spec is DEMO_UPSTREAM:
        argv += ["--port", str(spec.port)]
    start_detached(spec.name, argv, env={**env, **dict(spec.env), spec.port_variable: str(spec.port)}, cwd=ROOT)
    return True


def wait_healthy(spec: ServiceSpec, timeout: float = 90) -> None:
    ok = wait_until(lambda: healthy(spec) or recorded_pid(spec.name) is None, timeout, interval=0.25)
    if not ok or recorded_pid(spec.name) is None:
        raise StackError(f"{spec.name} did not become healthy: {last_log_line(spec.name)} (log: {LOGS / spec.name}.log)")


def stop_all() -> list[str]:
    stopped = []
    for spec in [*reversed(CLUSTER_SERVICES), *reversed(SERVICES), DEMO_UPSTREAM]:
        if stop(spec.name):
            stopped.append(spec.name)
    return stopped


def service_env(kafka: str, database_url: str, config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka, DATABASE_URL=database_url, TALLY_CONFIG=str(config), PYTHONUNBUFFERED="1")
    return env
