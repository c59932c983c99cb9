"""docker-compose.yml agrees with what `make up` runs: same services, ports and variables."""

from pathlib import Path

import yaml

from stack.services import DEMO_UPSTREAM, SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_with_kafka_postgres_and_every_service():
    """The file is valid YAML naming Kafka, Postgres, the demo upstream and the four services."""
    assert set(COMPOSE["services"]) == {"kafka", "postgres", "demo-upstream", "pricer", "ledger", "reports", "proxy"}


def test_compose_ports_match_the_makefile_stack():
    """Each service publishes the port `make up` gives it."""
    for spec in [*SERVICES, DEMO_UPSTREAM]:
        assert COMPOSE["services"][spec.name]["ports"] == [f"{spec.port}:{spec.port}"], spec.name


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
