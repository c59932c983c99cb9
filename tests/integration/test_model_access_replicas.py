"""An organisation's `models` changed through one proxy replica bound its keys on the other at
their next call, without a restart: the change travels on the entities topic like a team's
(real Kafka, Postgres, pricer and ledger; two proxy processes)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.fixtures.polling import eventually_async
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.integration


async def post(session: aiohttp.ClientSession, stack: TallyStack, replica: str, path: str, body: dict[str, Any],
               key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key or stack.master_key}", "Content-Type": "application/json"}
    async with session.post(stack.url(replica) + path, data=orjson.dumps(body), headers=headers) as response:
        return response.status, orjson.loads(await response.read())


async def chat(session: aiohttp.ClientSession, stack: TallyStack, replica: str, key: str, model: str) -> tuple[int, str | None]:
    """The call's status and, when refused, LiteLLM's error type."""
    status, body = await post(session, stack, replica, "/chat/completions",
                              {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}, key)
    return status, body["error"]["type"] if status != 200 else None


async def test_an_organisations_models_change_on_every_replica(two_replicas: TallyStack) -> None:
    """/organization/update of models on proxy-a refuses the organisation's key on proxy-b, then admits the new model there."""
    async with aiohttp.ClientSession() as session:
        status, org = await post(session, two_replicas, "proxy-a", "/organization/new",
                                 {"organization_alias": "replicated", "models": ["llama3"]})
        assert status == 200, org
        status, created = await post(session, two_replicas, "proxy-a", "/key/generate",
                                     {"organization_id": org["organization_id"]})
        assert status == 200, created
        key = created["key"]
        assert await chat(session, two_replicas, "proxy-b", key, "llama3") == (200, None)
        assert await chat(session, two_replicas, "proxy-b", key, "gpt-4o-mini") == (401, "org_model_access_denied")

        status, body = await post(session, two_replicas, "proxy-a", "/organization/update",
                                  {"organization_id": org["organization_id"], "models": ["gpt-4o-mini"]})
        assert status == 200, body

        async def bound_on_b() -> bool:
            return await chat(session, two_replicas, "proxy-b", key, "llama3") == (401, "org_model_access_denied")

        await eventually_async(bound_on_b, 5, "the organisation's update on proxy-b")
        assert await chat(session, two_replicas, "proxy-b", key, "gpt-4o-mini") == (200, None)
