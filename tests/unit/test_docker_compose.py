"""docker-compose.yml agrees with what `make up` runs (same services, ports and variables) and is
secure by default: the master key and the Postgres password are required, only the proxy is published."""

import re
from pathlib import Path

import yaml

from stack.services import CLUSTER_SERVICES, DEMO_UPSTREAM, SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_with_kafka_postgres_and_every_service():
    """The file is valid YAML naming Kafka, Postgres, the demo upstream and the four services."""
    default = {name for name, service in COMPOSE["services"].items() if "profiles" not in service}
    assert default == {"kafka", "postgres", "demo-upstream", "pricer", "ledger", "reports", "alerts", "proxy"}


def test_compose_cluster_profile_adds_two_kafka_nodes_and_a_second_pricer_ledger_and_proxy():
    """The cluster profile is the shape of `make up CLUSTER=3`: three voters, two of each service."""
    cluster = {name for name, service in COMPOSE["services"].items() if service.get("profiles") == ["cluster"]}
    assert cluster == {"kafka-2", "kafka-3", *(spec.name for spec in CLUSTER_SERVICES)}
    settings = dict(line.split("=", 1) for line in (ROOT / "stack" / "compose-cluster.env").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert settings["TALLY_KAFKA_VOTERS"] == "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert (settings["TALLY_KAFKA_REPLICAS"], settings["TALLY_KAFKA_MIN_ISR"]) == ("3", "2")
    assert [COMPOSE["services"][f"kafka-{i}"]["environment"]["KAFKA_NODE_ID"] for i in (2, 3)] == [2, 3]


def test_compose_publishes_only_the_proxy():
    """The proxy's port is the one published; Kafka, Postgres and the other services stay on the network."""
    published = {name: service["ports"] for name, service in COMPOSE["services"].items() if "ports" in service}
    assert published == {"proxy": ["4000:4000"], "proxy-2": ["4020:4000"]}


def test_compose_services_listen_on_the_ports_make_up_gives_them():
    """Each service's port variable is the port `make up` gives it (they reach each other by it)."""
    for spec in SERVICES:
        assert COMPOSE["services"][spec.name]["environment"][spec.port_variable] == str(spec.port), spec.name
    assert COMPOSE["services"]["demo-upstream"]["command"][-1] == str(DEMO_UPSTREAM.port)


REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?(?P<message>[^}]+)\}$")


def required_variable(value: str) -> tuple[str, str]:
    match = REQUIRED.match(value)
    assert match is not None, f"{value!r} is not a required variable"
    return match["name"], match["message"]


def test_compose_requires_a_master_key_with_a_message_saying_how():
    """LITELLM_MASTER_KEY has no default: compose stops with a message on how to set it."""
    for name in ("proxy", "reports"):
        variable, message = required_variable(COMPOSE["services"][name]["environment"]["LITELLM_MASTER_KEY"])
        assert variable == "LITELLM_MASTER_KEY", name
        assert message == "set LITELLM_MASTER_KEY to a long random key, for example sk- followed by the output of openssl rand -hex 24 (docs/security.md)"


def test_compose_gives_the_master_key_only_to_the_services_that_check_callers():
    """The pricer, the ledger and the demo upstream never see the master key."""
    holders = {name for name, service in COMPOSE["services"].items() if "LITELLM_MASTER_KEY" in service.get("environment", {})}
    assert holders == {"proxy", "proxy-2", "reports"}


def test_compose_requires_a_postgres_password_and_keeps_it_out_of_the_url():
    """Postgres and every service that uses it (budget leases, quarantine, alerts too) get POSTGRES_PASSWORD (required); no password is written in the file."""
    services = COMPOSE["services"]
    assert required_variable(services["postgres"]["environment"]["POSTGRES_PASSWORD"])[0] == "POSTGRES_PASSWORD"
    users = {name for name, service in services.items() if "PGPASSWORD" in service.get("environment", {})}
    assert users == {"pricer", "pricer-2", "ledger", "ledger-2", "reports", "alerts", "proxy", "proxy-2"}
    for name in users:
        assert required_variable(services[name]["environment"]["PGPASSWORD"])[0] == "POSTGRES_PASSWORD"
    for spec in SERVICES:
        assert services[spec.name]["environment"]["DATABASE_URL"] == "postgresql://tally@postgres:5432/tally"


def test_compose_runs_the_same_modules():
    """Each container runs the module `make up` starts for that service."""
    for spec in [*SERVICES, DEMO_UPSTREAM]:
        assert COMPOSE["services"][spec.name]["command"][:3] == ["python", "-m", spec.module], spec.name


def test_compose_sets_the_variables_the_services_read():
    """Every service gets Kafka, Postgres and config locations and its own port variable."""
    for spec in SERVICES:
        env = COMPOSE["services"][spec.name]["environment"]
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "TALLY_CONFIG"} <= set(env), spec.name
        assert env[spec.port_variable] == str(spec.port), spec.name


def test_compose_kafka_image_is_the_broker_version_make_up_fetches():
    """Docker users run the same Kafka release as the Maven jars `make up` fetches."""
    pom = (ROOT / "stack" / "kafka" / "pom.xml").read_text()
    version = COMPOSE["services"]["kafka"]["image"].split(":")[1]
    assert f"<artifactId>kafka_2.13</artifactId>\n      <version>{version}</version>" in pom
