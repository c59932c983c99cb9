"""The router end to end: calls retried or fallen back under the fault fake reach the spend logs as
one row each, booked to the deployment that answered at its price (= the cost header), and a call
whose every attempt failed is one failure row with no spend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestServer

from stack.fake_upstream import build_app as build_upstream
from tests.fixtures.priced_calls import MASTER, proxy_for, serve, spend_of, url_of
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

# 20 prompt + 80 completion tokens (the fake's usage) at each deployment's custom prices.
PRICES = {"primary-a": ("0.000001", "0.000002"), "primary-b": ("0.000003", "0.000004"), "backup": ("0.000005", "0.000006")}
COST = {"primary-b": Decimal("0.00038"), "backup": Decimal("0.00058")}


def models(base: str) -> list[dict[str, Any]]:
    return [{"model_name": group, "model_info": {"id": name},
             "litellm_params": {"model": f"openai/{name}", "api_base": f"{base}/v1", "api_key": "up-key",
                                "input_cost_per_token": PRICES[name][0], "output_cost_per_token": PRICES[name][1]}}
            for group, name in (("gpt", "primary-a"), ("gpt", "primary-b"), ("backup", "backup"))]


@pytest.fixture
async def router_url(pricing_chain: TallyStack, tmp_path: Path) -> AsyncIterator[str]:
    upstream = await serve(build_upstream())
    sections = {"router_settings": {"num_retries": 1, "fallbacks": [{"gpt": ["backup"]}], "cooldown_time": 0}}
    async with proxy_for(pricing_chain, models(url_of(upstream)), tmp_path / "spool", sections=sections) as url:
        yield url
    await upstream.close()


async def chat(url: str, by_model: dict[str, Any]) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "x_fake": {"by_model": by_model}}) as response:
            await response.read()
            return response.status, dict(response.headers)


def rows_of(stack: TallyStack, request_id: str) -> list[tuple[str, Decimal, str, str]]:
    with psycopg.connect(stack.common.database_url) as conn:
        return conn.execute('SELECT status, spend, model_id, model_group FROM "LiteLLM_SpendLogs" WHERE request_id = %s',
                            (request_id,)).fetchall()


async def test_retried_and_fallen_back_calls_are_one_spend_row_each(router_url: str, pricing_chain: TallyStack) -> None:
    """500 then retry, 429s then fallback, all failing: one row per call, spend = header, none for a failed attempt."""
    retried = await chat(router_url, {"primary-a": {"status": 500}})
    fell_back = await chat(router_url, {"primary-a": {"status": 429}, "primary-b": {"status": 429}})
    failed = await chat(router_url, {name: {"status": 500} for name in PRICES})
    last = await chat(router_url, {})  # recorded after the failed call (one key, one partition): its row proves the others are in
    assert [status for status, _ in (retried, fell_back, failed, last)] == [200, 200, 500, 200]
    await spend_of(pricing_chain, last[1]["x-litellm-call-id"])
    for (_, headers), (model_id, group) in ((retried, ("primary-b", "gpt")), (fell_back, ("backup", "backup"))):
        rows = await asyncio.to_thread(rows_of, pricing_chain, headers["x-litellm-call-id"])
        assert rows == [("success", COST[model_id], model_id, group)]
        assert Decimal(headers["x-litellm-response-cost"]) == COST[model_id]
    assert (retried[1]["x-litellm-attempted-retries"], fell_back[1]["x-litellm-attempted-fallbacks"]) == ("1", "1")
    rows = await asyncio.to_thread(rows_of, pricing_chain, failed[1]["x-litellm-call-id"])
    assert rows == [("failure", Decimal("0"), "backup", "backup")]
