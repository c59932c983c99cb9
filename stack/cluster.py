"""`make up CLUSTER=3`: three KRaft nodes on this machine (each broker and controller, a static
three-voter quorum), beside the single broker of `make up` and never touching it. Node i (1..3)
listens on 19090 + 2i (clients) and 19091 + 2i (controllers); its config, data and pid are its own
(`.run/kafka-cluster/node-i`, pid and log name `kafka-node-i`), so a fault test can kill and
restart one node alone."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stack.kafka import HERE, broker_answers, fetch_jars, java_command
from stack.paths import LOGS, RUN
from stack.procs import StackError, port_open, recorded_pid, run, start_detached, stop, wait_until

CLUSTER_DIR = RUN / "kafka-cluster"
FIRST_PORT = 19092
TEMPLATE = HERE / "cluster.properties.template"


@dataclass(frozen=True)
class Node:
    node_id: int
    first_port: int = FIRST_PORT  # node 1's client port; its controller port and the others follow
    root: Path = CLUSTER_DIR
    label: str = "kafka-node"

    @property
    def port(self) -> int:
        return self.first_port + 2 * (self.node_id - 1)

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def name(self) -> str:
        return f"{self.label}-{self.node_id}"

    @property
    def run_dir(self) -> Path:
        return self.root / f"node-{self.node_id}"


def nodes(count: int, first_port: int = FIRST_PORT, root: Path = CLUSTER_DIR, label: str = "kafka-node") -> list[Node]:
    """The stack's cluster by default; the fault suite passes ports, a directory and a label of its own."""
    if count < 3:
        raise StackError(f"CLUSTER={count}: a cluster here has 3 nodes or more (a quorum of voters survives one loss)")
    return [Node(i, first_port, root, label) for i in range(1, count + 1)]


def bootstrap(members: list[Node]) -> str:
    return ",".join(f"127.0.0.1:{n.port}" for n in members)


def _cluster_id(root: Path) -> str:
    path = root / "cluster.id"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex[:22])
    return path.read_text().strip()


def _format(node: Node, members: list[Node]) -> None:
    config, data = node.run_dir / "server.properties", node.run_dir / "data"
    config.parent.mkdir(parents=True, exist_ok=True)
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in members)
    config.write_text(TEMPLATE.read_text().format(node_id=node.node_id, voters=voters, port=node.port,
                                                  controller_port=node.controller_port, data_dir=data))
    if (data / "meta.properties").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    run(java_command("kafka.tools.StorageTool", "format", "-t", _cluster_id(node.root), "-c", str(config)),
        f"formatting the KRaft storage of {node.name}")


def start_node(node: Node, members: list[Node]) -> bool:
    """Start one node unless ours runs; True if this call started it."""
    if recorded_pid(node.name) is not None:
        return False
    for port in (node.port, node.controller_port):
        if port_open(port):
            raise StackError(f"port {port} (for {node.name}) is taken by another program: stop it")
    _format(node, members)
    logs_dir = LOGS / node.name
    logs_dir.mkdir(parents=True, exist_ok=True)
    # Half the single broker's heap: three of them share this machine.
    argv = [a if a != "-Xmx1g" else "-Xmx512m" for a in java_command("kafka.Kafka", str(node.run_dir / "server.properties"),
                                                                    logs_dir=logs_dir)]
    start_detached(node.name, argv)
    return True


def ensure_cluster(count: int = 3, members: list[Node] | None = None) -> tuple[str, list[str]]:
    """Start the nodes that are not running; returns the bootstrap list and the names started."""
    members = members if members is not None else nodes(count)
    fetch_jars()
    started = [n.name for n in members if start_node(n, members)]
    for n in members:
        wait_for_node(n)
    servers = bootstrap(members)
    if not broker_answers(servers, timeout=90) or not wait_until(lambda: registered_brokers(servers) == len(members), 90, interval=1):
        raise StackError(f"the cluster's {len(members)} nodes do not all answer: see {LOGS}/{members[0].label}-*/server.log")
    return servers, started


def wait_for_node(node: Node) -> None:
    if not wait_until(lambda: port_open(node.port) or recorded_pid(node.name) is None, 90) or recorded_pid(node.name) is None:
        raise StackError(f"{node.name} did not start: see {LOGS / node.name}.log and {LOGS / node.name / 'server.log'}")


def registered_brokers(servers: str) -> int:
    """How many brokers the cluster's metadata lists (topics need all three to be replicated)."""
    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5000)
        try:
            await admin.start()
            return len((await admin.describe_cluster())["brokers"])
        except KafkaError:
            return 0
        finally:
            await admin.close()

    return asyncio.run(describe())


def stop_cluster(count: int = 3, members: list[Node] | None = None) -> list[str]:
    members = members if members is not None else nodes(count)
    return [n.name for n in reversed(members) if stop(n.name, timeout=30)]


def active_controller(members: list[Node]) -> Node:
    """The quorum's leader: the node whose log shows the latest KRaft epoch it became leader in
    (aiokafka has no DescribeQuorum; each node's RaftManager logs its transitions)."""
    best: tuple[int, Node] | None = None
    for n in members:
        path = LOGS / n.name / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        for match in re.finditer(r"\[RaftManager id=(\d+)\] Completed transition to Leader\(.*?epoch=(\d+)", text):
            if int(match.group(1)) == n.node_id and (best is None or int(match.group(2)) > best[0]):
                best = (int(match.group(2)), n)
    if best is None:
        raise StackError("no node's log shows it leading the KRaft quorum")
    return best[1]


def running_nodes() -> int:
    """How many nodes the last `make up CLUSTER=N` recorded (0: no cluster)."""
    path = CLUSTER_DIR / "nodes"
    return int(path.read_text()) if path.exists() else 0


def record_nodes(count: int) -> None:
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True)
    (CLUSTER_DIR / "nodes").write_text(str(count))


def forget_nodes() -> None:
    (CLUSTER_DIR / "nodes").unlink(missing_ok=True)
