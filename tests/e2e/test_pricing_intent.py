"""Pricing that follows the user's intent, end to end (each service its own process, real Kafka and
Postgres): base_model prices a call whatever provider it goes through, and prices change without
a restart (reload route or file change), with every row keeping the version that priced it and a
replay of the topics pricing every row again to the same digit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from services.pricer.pricing_step import Priced, price_message
from shared.events import CatalogPublished, decode_as, request_id_in
from shared.pricing import load_catalog
from shared.pricing.versions import CatalogVersions
from shared.topics import CATALOG, USAGE
from tests.e2e.test_seed_page import post
from tests.fixtures.polling import eventually
from tests.fixtures.stack import TallyStack, running_stack
from tests.fixtures.stages import read_topic

pytestmark = pytest.mark.e2e

CONFIG = """
model_list:
  - model_name: claude-via-gateway
    litellm_params: {model: openai/claude-gw, api_base: os.environ/TALLY_DEMO_UPSTREAM, api_key: fake,
                     base_model: claude-sonnet-4-5}
  - model_name: gemini-via-gateway
    litellm_params: {model: openai/gemini-gw, api_base: os.environ/TALLY_DEMO_UPSTREAM, api_key: fake}
    model_info: {base_model: gemini/gemini-2.5-pro}
  - model_name: house-model
    litellm_params: {model: openai/house-model, api_base: os.environ/TALLY_DEMO_UPSTREAM, api_key: fake}
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def house_prices(input_rate: str, output_rate: str) -> str:
    return ('{"house-model": {"litellm_provider": "openai", "mode": "chat", '
            f'"input_cost_per_token": {input_rate}, "output_cost_per_token": {output_rate}}}}}')


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, postgres_admin_url, tmp_path_factory) -> Iterator[TallyStack]:
    root = tmp_path_factory.mktemp("intent")
    (root / "config.yaml").write_text(CONFIG)
    prices = root / "house_prices.json"
    prices.write_text(house_prices("1e-06", "2e-06"))
    pricing = {"TALLY_PRICE_MAP": str(prices), "TALLY_PRICE_MAP_POLL_S": "0.2"}
    plan = [("upstream", "stack.fake_upstream", {}), ("pricer", "services.pricer", pricing),
            ("ledger", "services.ledger", {}),
            ("proxy", "services.proxy", {**pricing, "TALLY_PROXY_WORKERS": "2"})]
    with running_stack(kafka_bootstrap, postgres_admin_url, root, plan, root / "config.yaml") as running:
        running.prices_path = prices  # type: ignore[attr-defined]
        yield running


def chat(stack: TallyStack, model: str, key: str = "sk-1234") -> tuple[str, Decimal]:
    status, headers, body = post(stack, "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]}, key)
    assert status == 200, body
    return headers["x-litellm-call-id"], Decimal(headers["x-litellm-response-cost"])


def row(stack: TallyStack, request_id: str) -> tuple[Decimal, Decimal, str, str]:
    def found():
        with psycopg.connect(stack.common.database_url) as conn:
            return conn.execute('SELECT spend, quoted_spend, catalog_version, priced_model FROM "LiteLLM_SpendLogs"'
                                ' WHERE request_id = %s', (request_id,)).fetchone()
    return eventually(found, 30, f"spend log row {request_id}")


def test_base_model_of_another_provider_prices_an_openai_deployment(stack):
    """openai/… with base_model claude-sonnet-4-5: header = spend log = 20 × 3e-06 + 80 × 1.5e-05."""
    request_id, header = chat(stack, "claude-via-gateway")
    spend, quoted, _, priced_model = row(stack, request_id)
    assert (header, spend, quoted, priced_model) == (Decimal("0.00126"),) * 3 + ("claude-sonnet-4-5",)


def test_model_info_base_model_with_its_own_provider_prices_the_call(stack):
    """model_info.base_model gemini/gemini-2.5-pro: header = spend log = 20 × 1.25e-06 + 80 × 1e-05."""
    request_id, header = chat(stack, "gemini-via-gateway")
    spend, quoted, _, priced_model = row(stack, request_id)
    assert (header, spend, quoted, priced_model) == (Decimal("0.000825"),) * 3 + ("gemini/gemini-2.5-pro",)


def test_reload_is_for_the_master_key_only(stack):
    """A virtual key asking for /reload/model_cost_map is refused with 403, and nothing is published."""
    status, _, body = post(stack, "/key/generate", {"key_alias": "reload-tester"})
    assert status == 200, body
    status, _, body = post(stack, "/reload/model_cost_map", None, key=body["key"])
    assert (status, body["error"]["message"]) == (403, "Access denied. Admin role required.")


def test_reload_switches_every_worker_and_old_rows_keep_their_version(stack):
    """Before: 20 × 1e-06 + 80 × 2e-06; after the file changes and the reload: 20 × 3e-06 + 80 × 4e-06,
    on both workers, while the row priced before keeps its price and version."""
    before_id, before = chat(stack, "house-model")
    old_spend, _, old_version, _ = row(stack, before_id)
    stack.prices_path.write_text(house_prices("3e-06", "4e-06"))
    status, _, body = post(stack, "/reload/model_cost_map", None)
    assert (status, body["status"], body["models_count"]) == (200, "success", len(load_catalog(stack.prices_path)))
    new_version = body["catalog_version"]
    # Calls alternate between the two workers: four in a row at the new price means both switched.
    eventually(lambda: all(chat(stack, "house-model")[1] == Decimal("0.00038") for _ in range(4)), 15, "every worker on the new prices")
    after_id, after = chat(stack, "house-model")
    assert (before, old_spend, after, row(stack, after_id)[:3]) == (
        Decimal("0.00018"), Decimal("0.00018"), Decimal("0.00038"), (Decimal("0.00038"), Decimal("0.00038"), new_version))
    assert new_version != old_version and row(stack, before_id)[2] == old_version


def test_a_changed_price_file_is_published_without_a_reload(stack):
    """Editing the price file alone moves new calls to its prices: 20 × 5e-06 + 80 × 6e-06."""
    stack.prices_path.write_text(house_prices("5e-06", "6e-06"))
    eventually(lambda: all(chat(stack, "house-model")[1] == Decimal("0.00058") for _ in range(4)), 15, "the file's new prices")


def test_replaying_the_topics_prices_every_row_again_to_the_digit(stack):
    """Every usage event, priced again under the versions catalog.v1 holds, gives its row's spend and version."""
    def settled():  # every usage event priced and in the spend logs, none in flight
        usage = asyncio.run(read_topic(stack.common, USAGE))
        with psycopg.connect(stack.common.database_url) as conn:
            rows = {r[0]: (r[1], r[2]) for r in conn.execute('SELECT request_id, spend, catalog_version FROM "LiteLLM_SpendLogs"')}
        return (usage, rows) if {request_id_in(record.value) for record in usage} == set(rows) else None

    usage, rows = eventually(settled, 30, "every usage event in the spend logs")
    published = asyncio.run(read_topic(stack.common, CATALOG))
    versions = CatalogVersions(load_catalog())
    for record in published:
        versions.apply(decode_as(CatalogPublished, record.value))
    replayed = {}
    for record in usage:
        outcome = price_message(versions, record.value, "2026-01-01T00:00:00+00:00")
        assert isinstance(outcome, Priced)
        data = json.loads(outcome.value)
        replayed[outcome.request_id] = (Decimal(data["cost"]["total"]), data["catalog_version"])
    assert replayed == rows
    assert len({version for _, version in rows.values()}) >= 3  # the start-up files, the reload, the file change
