"""POST /global/spend/reset publishes one SpendReset on the entities topic and answers exactly as
LiteLLM does; the logs stay."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer

from services.reports.app import build_app
from shared import kafka
from shared.events import SpendReset, decode
from shared.settings import CommonSettings
from shared.topics import ENTITIES
from tests.fixtures.polling import eventually_async
from tests.fixtures.reports_support import MASTER, bearer, reports_settings_for, seed


async def test_reset_publishes_a_spend_reset_event(settings: CommonSettings):
    """The master key's reset lands on the entities topic with key "spend_reset"; the logs remain."""
    seed(settings.database_url)
    app = build_app(reports_settings_for(settings.database_url, settings.kafka_bootstrap_servers, settings.topic_prefix))
    consumer = kafka.consumer(settings, ENTITIES, group_id=None)
    await consumer.start()
    try:
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/global/spend/reset", headers=bearer(MASTER))
            assert (response.status, await response.json()) == (
                200, {"message": "Spend for all API Keys and Teams reset successfully", "status": "success"})

            async def published() -> list:
                return [r for batch in (await consumer.getmany(timeout_ms=500)).values() for r in batch]

            records = await eventually_async(published, 20, "the reset on the entities topic", interval=0)  # getmany waits
            logs = await client.get("/spend/logs", params={"request_id": "r1"}, headers=bearer(MASTER))
            assert len(json.loads(await logs.text())) == 1
    finally:
        await consumer.stop()
    assert len(records) == 1
    assert records[0].key == b"spend_reset"
    event = decode(records[0].value)
    assert isinstance(event, SpendReset) and event.scope == "keys_and_teams"
