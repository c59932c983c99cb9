"""One whole stack for the adversarial suite (docs/adversarial.md): the hostile upstream
(tests/fixtures/hostile_upstream.py) as the stack's "upstream" process behind one deployment per
mode, the pricer, the ledger, the reports service and one proxy worker, each its own process,
against real Kafka and Postgres with a topic prefix and a database of their own. Started once for
the package (both modules) to keep `make test` short; each module ends with its own reconcile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.adversarial.harness import Adversary, build_config
from tests.fixtures.stack import TallyStack, running_stack

PLAN = [("upstream", "tests.fixtures.hostile_upstream", {}), ("pricer", "services.pricer", {}),
        ("ledger", "services.ledger", {}), ("reports", "services.reports", {}),
        ("proxy", "services.proxy", {"TALLY_PROXY_WORKERS": "1"})]


@pytest.fixture(scope="package")
def hostile_stack(kafka_bootstrap: str, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyStack]:
    """The stack with the hostile upstream behind every `hostile-*` model."""
    work = tmp_path_factory.mktemp("adversarial")
    config: Path = work / "config.yaml"
    config.write_text(yaml.safe_dump(build_config()))
    with running_stack(kafka_bootstrap, postgres_admin_url, work, PLAN, config_path=config) as stack:
        yield stack


@pytest.fixture(scope="package")
def adversary_session(hostile_stack: TallyStack) -> Iterator[Adversary]:
    """The client and database connection every test of the package shares."""
    with Adversary(hostile_stack) as session:
        yield session


@pytest.fixture
def adversary(adversary_session: Adversary) -> Adversary:
    """The session with a fresh virtual key (budget, max_parallel_requests=2) for this test, so a
    slot one test leaks locks out only that test's key."""
    adversary_session.key = adversary_session.new_key()
    return adversary_session
