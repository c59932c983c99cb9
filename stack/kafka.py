"""One local Kafka broker (KRaft, broker + controller) from Maven Central's jars, run on the JDK."""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.kafka import wait_for_broker
from shared.settings import CommonSettings
from stack.paths import KAFKA_LIBS, LOGS, RUN
from stack.procs import StackError, port_open, recorded_pid, run, start_detached, wait_until

HERE = Path(__file__).resolve().parent / "kafka"
NAME = "kafka"


def broker_answers(bootstrap: str, timeout: float) -> bool:
    try:
        asyncio.run(wait_for_broker(CommonSettings(kafka_bootstrap_servers=bootstrap), timeout=timeout))
        return True
    except TimeoutError:
        return False


def fetch_jars() -> None:
    """Copy kafka_2.13 and its dependencies from Maven Central into the cache, once."""
    marker = KAFKA_LIBS / ".complete"
    if marker.exists():
        return
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is missing: install it with `apt-get install -y maven`, then run `make up` again")
    KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
    print("fetching Kafka's jars from Maven Central (once) ...", flush=True)
    run(
        ["mvn", "-q", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={KAFKA_LIBS}", "-DincludeScope=runtime"],
        "downloading Kafka's jars from Maven Central (check the network, then run `make up` again)",
    )
    marker.write_text("ok\n")


def java_command(*args: str, logs_dir: Path = LOGS / "kafka") -> list[str]:
    return ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={logs_dir}", "-cp", f"{KAFKA_LIBS}/*", *args]


def format_storage(port: int, run_dir: Path = RUN / "kafka") -> None:
    """Write `run_dir`/server.properties and format `run_dir`/data unless it already is."""
    config, data = run_dir / "server.properties", run_dir / "data"
    controller_port = port + 1
    if port_open(controller_port):
        raise StackError(f"port {controller_port} (Kafka's controller) is taken by another program: stop it, or set KAFKA_BOOTSTRAP_SERVERS to a running broker")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text((HERE / "server.properties.template").read_text().format(
        port=port, controller_port=controller_port, data_dir=data))
    if (data / "meta.properties").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    run(java_command("kafka.tools.StorageTool", "format", "--standalone", "-t", uuid.uuid4().hex[:22], "-c", str(config)),
        "formatting Kafka's KRaft storage")


@contextmanager
def _starting_alone(run_dir: Path) -> Iterator[None]:
    """Test sessions, benchmarks and `make up` may all call ensure_kafka at once: one starts the
    broker, the others wait for it instead of starting a second one on the same data."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_kafka(port: int = 9092, name: str = NAME, run_dir: Path = RUN / "kafka") -> str:
    """Return a bootstrap address of a running broker on `port`, starting ours if none runs.

    `name` is its pid file and log name, `run_dir` holds its config and data: a second broker
    (the fault suite's) passes its own, so stopping it never touches the stack's broker."""
    with _starting_alone(run_dir):
        return _ensure_kafka(port, name, run_dir)


def _ensure_kafka(port: int, name: str, run_dir: Path) -> str:
    bootstrap = f"127.0.0.1:{port}"
    if not port_open(port) and recorded_pid(name) is not None:
        # Ours, still starting (a broker with many partitions takes a while to open them).
        wait_until(lambda: port_open(port) or recorded_pid(name) is None, 120)
    if port_open(port):
        if broker_answers(bootstrap, timeout=20):
            return bootstrap
        raise StackError(f"port {port} is taken by a program that is not a Kafka broker: stop it, or set KAFKA_BOOTSTRAP_SERVERS")
    if shutil.which("java") is None:
        raise StackError("no JDK found (java is missing): install one with `apt-get install -y openjdk-17-jre-headless`, then run `make up` again")
    fetch_jars()
    format_storage(port, run_dir)
    logs_dir = LOGS / name
    logs_dir.mkdir(parents=True, exist_ok=True)
    pid = start_detached(name, java_command("kafka.Kafka", str(run_dir / "server.properties"), logs_dir=logs_dir))
    started = wait_until(lambda: port_open(port) or recorded_pid(name) is None, 90)
    if not started or recorded_pid(name) is None:
        raise StackError(f"the Kafka broker (pid {pid}) did not start: see {LOGS / name}.log and {logs_dir / 'server.log'}")
    if not broker_answers(bootstrap, timeout=60):
        raise StackError(f"the Kafka broker listens on {port} but does not answer: see {logs_dir / 'server.log'}")
    return bootstrap
