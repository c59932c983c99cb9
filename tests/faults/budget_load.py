"""Budget clients for the cluster fault suite: spend one key's `max_budget` through the proxy
replicas until it is refused, and hand every answered call to the books as the load client does, so
the module's books (every call logged once at its quoted cost) cover these calls too.

Each key is made in a team and for a user of the population and every call names a customer of it,
so the books can attribute the calls; the calls carry `max_tokens` (the proxy's estimate, an upper
bound of the cost) and the fake upstream's default usage (20 + 80 tokens), so each costs the same.
A refusal must be LiteLLM's budget error (400, type `budget_exceeded`). A 503 `service_unavailable`
(no lease granted within `TALLY_BUDGET_LEASE_WAIT_S`: renewals too slow, e.g. on a starved machine)
is answered before the upstream is called; the client tries again, as the message asks, a bounded
number of times. Any other answer is a failure the books report."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import orjson

from tests.faults.load import Answered, Failed, LoadResult, Population, VirtualKey

BODY = {"model": "llama3", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 80}
UNAVAILABLE_RETRIES = 10  # 503s in a row a call is sent again after (each after the proxy's own lease wait)


@dataclass
class BudgetRun:
    """What one key's callers were answered: the calls (as the books take them) and the refusals."""

    key: VirtualKey
    max_budget: Decimal
    result: LoadResult = field(default_factory=lambda: LoadResult(rate=0.0))
    refused: int = 0  # 400 budget_exceeded
    unavailable: int = 0  # 503 service_unavailable, sent again

    @property
    def spent(self) -> Decimal:
        """Σ the cost headers of the answered calls: what the ledger must count for the key."""
        return sum((a.cost for a in self.result.answered), Decimal(0))

    @property
    def call_costs(self) -> set[Decimal]:
        return {a.cost for a in self.result.answered}


async def budget_key(proxy: str, master_key: str, population: Population, max_budget: Decimal) -> VirtualKey:
    """A key with `max_budget` (sent as an exact JSON number), in the population's first team, for its first user."""
    team_id, user_id = population.teams[0], population.users[0]
    fields = orjson.dumps({"team_id": team_id, "user_id": user_id})
    body = fields[:-1] + b',"max_budget":' + str(max_budget).encode() + b"}"
    async with aiohttp.ClientSession() as session, session.post(
            proxy + "/key/generate", data=body,
            headers={"Authorization": f"Bearer {master_key}", "Content-Type": "application/json"}) as resp:
        answer = await resp.read()
        assert resp.status == 200, f"/key/generate answered {resp.status}: {answer[:300]!r}"
    return VirtualKey(orjson.loads(answer)["key"], team_id, user_id, ())


def _error_type(answer: bytes) -> str | None:
    """The `error.type` of an OpenAI-shaped error body, None for anything else."""
    try:
        return orjson.loads(answer)["error"]["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def call(session: aiohttp.ClientSession, bases: list[str], run: BudgetRun, customer: str, first: int = 0) -> bool:
    """One call, to bases[first] or, when that one refuses the connection or answers 503, the next
    (as a load balancer would); False once the budget refused it, or once every replica in a row
    refused the connection (recorded as a failure)."""
    body = orjson.dumps({**BODY, "user": customer})
    headers = {"Authorization": f"Bearer {run.key.raw}", "Content-Type": "application/json"}
    attempt, refusals, unavailable = -1, 0, 0
    while True:
        attempt += 1
        base = bases[(first + attempt) % len(bases)]
        sent = time.monotonic()
        try:
            async with session.post(base + "/chat/completions", data=body, headers=headers) as resp:
                answer = await resp.read()
        except aiohttp.ClientConnectorError:  # refused: the request never left
            run.result.redirected += 1
            refusals += 1
            if refusals == len(bases):
                run.result.failed.append(Failed(base, "every replica refused the connection", None, time.monotonic(), False))
                return False
            continue
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # sent, then lost: maybe recorded
            run.result.failed.append(Failed(base, f"{type(exc).__name__}: {exc}", None, time.monotonic(), True))
            return False
        refusals = 0
        kind = _error_type(answer) if resp.status != 200 else None
        if resp.status == 400 and kind == "budget_exceeded":
            run.refused += 1
            return False
        if resp.status == 503 and kind == "service_unavailable" and unavailable < UNAVAILABLE_RETRIES:
            run.unavailable += 1
            unavailable += 1
            continue
        if resp.status != 200:
            run.result.failed.append(Failed(base, f"HTTP {resp.status}: {answer[:200]!r}", resp.status, time.monotonic(), True))
            return False
        run.result.answered.append(Answered(resp.headers["x-litellm-call-id"], Decimal(resp.headers["x-litellm-response-cost"]),
                                            run.key, customer, (), base, sent, time.monotonic(), time.time()))
        return True


async def concurrent_callers(bases: list[str], run: BudgetRun, customer: str, callers: int = 64) -> None:
    """`callers` clients, each on its own connections, alternating replicas, each until refused."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def caller(i: int) -> None:
            while await call(session, bases, run, customer, first=i % len(bases)):
                pass

        await asyncio.gather(*(caller(i) for i in range(callers)))


async def keep_alive_client(base: str, run: BudgetRun, customer: str) -> None:
    """One client on one keep-alive connection (so one worker of one replica) until refused."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30)) as session:
        while await call(session, [base], run, customer):
            pass
