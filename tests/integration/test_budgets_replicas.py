"""Budgets and admin changes across two proxy replicas (real Kafka, Postgres, pricer and ledger).

Prices: `llama3` is groq/llama3-8b-8192 (5e-08 in, 8e-08 out per token) and the fake upstream
answers 20 prompt + 80 completion tokens, so every call costs exactly 0.0000074. The prompt and
max_tokens below make the proxy's upper-bound reservation (47 x 5e-08 + 80 x 8e-08 = 0.00000875)
no smaller than that."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.events import SpendReset, encode
from tests.fixtures.polling import eventually_async
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.integration

CALL_COST = Decimal("0.0000074")
PROMPT = "x" * 40


def master(stack: TallyStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.master_key}"}


async def admin(session: aiohttp.ClientSession, stack: TallyStack, replica: str, path: str,
                body: dict[str, Any] | None = None, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = stack.url(replica) + path
    headers = master(stack) if headers is None else headers
    if body is None:
        async with session.get(url, params=params, headers=headers) as response:
            return response.status, orjson.loads(await response.read())
    async with session.post(url, data=orjson.dumps(body), headers={**headers, "Content-Type": "application/json"}) as response:
        return response.status, orjson.loads(await response.read())


async def chat(session: aiohttp.ClientSession, stack: TallyStack, replica: str, key: str,
               user: str | None = None) -> tuple[int, Any, Decimal]:
    body: dict[str, Any] = {"model": "llama3", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 80}
    if user is not None:
        body["user"] = user
    async with session.post(stack.url(replica) + "/chat/completions", data=orjson.dumps(body),
                            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as response:
        data = orjson.loads(await response.read())
        return response.status, data, Decimal(response.headers.get("x-litellm-response-cost", "0"))


async def new_key(session: aiohttp.ClientSession, stack: TallyStack, **fields: Any) -> str:
    status, body = await admin(session, stack, "proxy-a", "/key/generate", fields)
    assert status == 200, body
    key = body["key"]

    async def known_on_b() -> bool:
        code, _ = await admin(session, stack, "proxy-b", "/key/info", params={"key": key})
        return code == 200

    await eventually_async(known_on_b, 5, "the new key on proxy-b")
    return key


async def hammer(session: aiohttp.ClientSession, stack: TallyStack, keys: list[str], callers: int = 64,
                 user: str | None = None) -> tuple[Decimal, list[tuple[int, Any]]]:
    """`callers` concurrent callers, alternating replicas (and keys), each calling until refused."""
    spent: list[Decimal] = []
    refusals: list[tuple[int, Any]] = []

    async def caller(i: int) -> None:
        replica = ("proxy-a", "proxy-b")[i % 2]
        key = keys[i % len(keys)]
        while True:
            status, data, cost = await chat(session, stack, replica, key, user)
            if status != 200:
                refusals.append((status, data))
                return
            spent.append(cost)

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return sum(spent, Decimal(0)), refusals


def assert_budget_refusals(refusals: list[tuple[int, Any]], label: str = "") -> None:
    assert refusals
    for status, data in refusals:
        assert status == 400, data
        assert data["error"]["type"] == "budget_exceeded", data
        assert data["error"]["message"].startswith(f"Budget has been exceeded! {label}"), data


async def test_two_replica_hammer_stays_within_one_call_per_replica(two_replicas: TallyStack) -> None:
    """64 callers on two replicas spend at most max_budget plus one call per replica; every refusal is the budget error."""
    budget = CALL_COST * 20
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_replicas, max_budget=float(budget))
        spent, refusals = await hammer(session, two_replicas, [key])
        assert_budget_refusals(refusals)
        assert spent <= budget + 2 * CALL_COST, spent
        assert spent >= budget / 2, spent

        async def ledger_agrees() -> bool:
            _, info = await admin(session, two_replicas, "proxy-b", "/key/info", params={"key": key})
            return Decimal(str(info["info"]["spend"])) == spent

        try:
            await eventually_async(ledger_agrees, 15, "the ledger's total to equal the headers' sum")
        except AssertionError:
            _, info = await admin(session, two_replicas, "proxy-b", "/key/info", params={"key": key})
            async with session.get(two_replicas.url("ledger") + "/metrics") as r:
                metrics = [l for l in (await r.text()).splitlines() if "total" in l and not l.startswith("#")]
            raise AssertionError(f"spent={spent} info={info} metrics={metrics}")


async def test_team_budget_limits_all_its_keys_together(two_replicas: TallyStack) -> None:
    """Two keys of one team, on two replicas, together spend at most the team's budget plus one call per replica."""
    budget = CALL_COST * 6
    async with aiohttp.ClientSession() as session:
        team_id = f"team-{uuid.uuid4().hex[:8]}"
        status, body = await admin(session, two_replicas, "proxy-a", "/team/new", {"team_id": team_id, "max_budget": float(budget)})
        assert status == 200, body
        keys = [await new_key(session, two_replicas, team_id=team_id) for _ in range(2)]
        spent, refusals = await hammer(session, two_replicas, keys, callers=16)
        assert_budget_refusals(refusals, f"Team={team_id} ")
        assert spent <= budget + 2 * CALL_COST, spent


async def test_customer_budget_limits_every_key_used_for_it(two_replicas: TallyStack) -> None:
    """Calls for one customer through two keys stop at its budget; another customer on the same key still works."""
    budget = CALL_COST * 6
    async with aiohttp.ClientSession() as session:
        customer = f"cust-{uuid.uuid4().hex[:8]}"
        status, body = await admin(session, two_replicas, "proxy-a", "/customer/new", {"user_id": customer, "max_budget": float(budget)})
        assert status == 200, body
        keys = [await new_key(session, two_replicas) for _ in range(2)]

        async def customer_known_on_b() -> bool:
            code, _ = await admin(session, two_replicas, "proxy-b", "/customer/info", params={"end_user_id": customer})
            return code == 200

        await eventually_async(customer_known_on_b, 5, "the customer on proxy-b")
        spent, refusals = await hammer(session, two_replicas, keys, callers=16, user=customer)
        assert_budget_refusals(refusals, f"End User={customer} ")
        assert spent <= budget + 2 * CALL_COST, spent
        status, _, _ = await chat(session, two_replicas, "proxy-a", keys[0], user="someone-else")
        assert status == 200


async def test_budget_window_rolls_over_and_the_key_works_again(two_replicas: TallyStack) -> None:
    """A key refused in its 2 s budget window is admitted again once the next window starts."""
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_replicas, max_budget=float(CALL_COST * 2), budget_duration="2s")
        while (await chat(session, two_replicas, "proxy-a", key))[0] == 200:
            pass
        status, data, _ = await chat(session, two_replicas, "proxy-a", key)
        assert (status, data["error"]["type"]) == (400, "budget_exceeded")

        async def admitted() -> bool:
            return (await chat(session, two_replicas, "proxy-a", key))[0] == 200

        await eventually_async(admitted, 6, "the next budget window", interval=0.2)


async def test_spend_reset_makes_a_spent_key_work_again(two_replicas: TallyStack) -> None:
    """After a SpendReset on the entities topic, a key that had used its budget is admitted on both replicas."""
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_replicas, max_budget=float(CALL_COST * 2))
        for replica in ("proxy-a", "proxy-b"):
            while (await chat(session, two_replicas, replica, key))[0] == 200:
                pass
        producer = AIOKafkaProducer(bootstrap_servers=two_replicas.common.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(two_replicas.common.topic(topics.ENTITIES), encode(SpendReset()), key=b"spend_reset")
        finally:
            await producer.stop()
        for replica in ("proxy-a", "proxy-b"):
            async def admitted(replica: str = replica) -> bool:
                return (await chat(session, two_replicas, replica, key))[0] == 200

            await eventually_async(admitted, 5, f"the reset on {replica}")


async def test_key_changes_take_effect_on_both_replicas(two_replicas: TallyStack) -> None:
    """A key generated on one replica works on the other; updated, it is refused there; deleted, it is a 401 on both."""
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_replicas)
        status, body = await admin(session, two_replicas, "proxy-b", "/key/update", {"key": key, "models": ["gpt-4o-mini"]})
        assert status == 200, body

        async def refused_on_a() -> bool:
            status, answer, _ = await chat(session, two_replicas, "proxy-a", key)
            return (status, answer["error"]["type"] if status != 200 else None) == (401, "key_model_access_denied")

        await eventually_async(refused_on_a, 5, "the update on proxy-a")
        status, body = await admin(session, two_replicas, "proxy-a", "/key/delete", {"keys": [key]})
        assert (status, body) == (200, {"deleted_keys": [key]})
        assert (await chat(session, two_replicas, "proxy-a", key))[0] == 401

        async def gone_on_b() -> bool:
            return (await chat(session, two_replicas, "proxy-b", key))[0] == 401

        await eventually_async(gone_on_b, 5, "the deletion on proxy-b")


async def test_an_expired_key_is_refused_on_both_replicas(two_replicas: TallyStack) -> None:
    """A key generated with duration "1s" works, then answers 401 on both replicas."""
    async with aiohttp.ClientSession() as session:
        key = await new_key(session, two_replicas, duration="1s")
        for replica in ("proxy-a", "proxy-b"):
            async def expired(replica: str = replica) -> bool:
                return (await chat(session, two_replicas, replica, key))[0] == 401

            await eventually_async(expired, 5, f"expiry on {replica}", interval=0.2)


async def test_admin_routes_refuse_bad_input_and_other_keys(two_replicas: TallyStack) -> None:
    """Malformed values, negative budgets, bad durations and duplicate aliases are 400s; another key 403; none 401.
    (A field outside LiteLLM's request model is ignored, as LiteLLM does: tests/e2e/test_management_api.py.)"""
    async with aiohttp.ClientSession() as session:
        alias = f"alias-{uuid.uuid4().hex[:8]}"
        key = await new_key(session, two_replicas, key_alias=alias)
        for body in ({"models": "gpt-4"}, {"max_budget": -1}, {"budget_duration": "30w"}, {"key_alias": alias}):
            status, answer = await admin(session, two_replicas, "proxy-a", "/key/generate", body)
            assert status == 400, (body, answer)
            assert answer["error"]["type"] == "invalid_request_error"
        status, _ = await admin(session, two_replicas, "proxy-a", "/key/list", params={"key_alias": alias})
        assert status == 200
        status, answer = await admin(session, two_replicas, "proxy-a", "/team/new", {}, headers={"Authorization": f"Bearer {key}"})
        assert status == 403, answer
        status, answer = await admin(session, two_replicas, "proxy-a", "/team/new", {}, headers={})
        assert status == 401, answer
