"""A steady-load client for the fault suite and the end-to-end benchmark.

`provision()` creates teams, internal users, customers and virtual keys through the proxy's admin
routes; `run_load()` then sends chat completions at a fixed rate through one or more proxy
replicas (round robin, like a load balancer), each call with a random key, customer (`user`),
request tags and token counts (the fake upstream reports the counts it is asked for, so every
call has its own cost), and records every answered call's `x-litellm-call-id` and
`x-litellm-response-cost` (as a Decimal) and every call that failed.

The loop is bounded: it stops after `max_calls` calls or `duration_s` seconds, whichever comes
first (or earlier when `stop` is set), each call has a timeout, and it only talks to 127.0.0.1.
A refused connection never reached a proxy, so, like a load balancer, the client marks that
replica down for a moment and sends the same call to the next one; a connection that drops after
the request was sent is "ambiguous": the proxy may or may not have recorded the call."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

import aiohttp
import orjson

from shared.keys import hash_key

MODEL = "llama3"
REPLICA_DOWN_S = 1.0  # how long a replica that refused a connection is skipped


@dataclass(frozen=True)
class VirtualKey:
    raw: str
    team_id: str
    user_id: str
    tags: tuple[str, ...]  # the key's own metadata.tags, added to every call's request tags

    @property
    def hashed(self) -> str:
        return hash_key(self.raw)


@dataclass(frozen=True)
class Population:
    """Who the load is attributed to, created through the admin routes."""

    keys: tuple[VirtualKey, ...]
    teams: tuple[str, ...]
    users: tuple[str, ...]
    customers: tuple[str, ...]
    tags: tuple[str, ...]  # request tags the client draws from

    def all_tags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.tags, *(t for k in self.keys for t in k.tags)]))


@dataclass(frozen=True)
class Answered:
    call_id: str
    cost: Decimal
    key: VirtualKey
    customer: str
    tags: tuple[str, ...]  # the tags the spend log must carry: request tags, then the key's
    replica: str
    sent_at: float  # time.monotonic()
    answered_at: float  # time.monotonic(), when the whole answer was read
    answered_wall: float  # time.time() at the same moment


@dataclass(frozen=True)
class Failed:
    replica: str
    error: str
    status: int | None  # the HTTP status when the proxy answered with an error
    at: float  # time.monotonic()
    ambiguous: bool  # the request was sent: the proxy may have recorded it


@dataclass
class LoadResult:
    rate: float  # requested calls per second
    answered: list[Answered] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    redirected: int = 0  # calls re-sent to another replica after a refused connection
    started: float = 0.0
    ended: float = 0.0

    @property
    def achieved_rate(self) -> float:
        elapsed = self.ended - self.started
        return len(self.answered) / elapsed if elapsed > 0 else 0.0

    def latencies(self) -> list[float]:
        return sorted(a.answered_at - a.sent_at for a in self.answered)

    def summary(self) -> str:
        lat = self.latencies()
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        return (f"{len(self.answered)} answered, {len(self.failed)} failed "
                f"({sum(f.ambiguous for f in self.failed)} ambiguous), {self.redirected} redirected, "
                f"{self.achieved_rate:.0f}/s of {self.rate:.0f}/s asked, latency p50 {p50:.1f} ms p99 {p99:.1f} ms")


def _loopback_only(urls: Sequence[str]) -> None:
    for url in urls:
        if urlsplit(url).hostname != "127.0.0.1":
            raise ValueError(f"the load client only talks to 127.0.0.1, not {url}")


async def _admin(session: aiohttp.ClientSession, base: str, master_key: str, path: str, body: dict) -> dict:
    async with session.post(base + path, data=orjson.dumps(body), headers={"Authorization": f"Bearer {master_key}",
                                                                             "Content-Type": "application/json"}) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise AssertionError(f"POST {path} answered {resp.status}: {data[:300]!r}")
        return orjson.loads(data)


async def _known_everywhere(session: aiohttp.ClientSession, bases: Sequence[str], master_key: str, path: str,
                            timeout: float) -> None:
    """Poll GET `path` on every replica until each answers 200 (it has read the entity)."""
    deadline = time.monotonic() + timeout
    for base in bases:
        while True:
            async with session.get(base + path, headers={"Authorization": f"Bearer {master_key}"}) as resp:
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{base}{path} still not 200 after {timeout}s")
            await asyncio.sleep(0.05)  # poll interval, bounded by the deadline above


async def provision(bases: Sequence[str], master_key: str, *, label: str, teams: int = 2, users: int = 3,
                    keys: int = 4, customers: int = 5, tags: int = 4, timeout: float = 60.0) -> Population:
    """Teams, users and customers, then keys in those teams for those users; returns once every
    replica in `bases` knows every key. Key 0 carries a key-level tag of its own."""
    _loopback_only(bases)
    admin = bases[0]
    team_ids = tuple(f"{label}-team-{i}" for i in range(teams))
    user_ids = tuple(f"{label}-user-{i}" for i in range(users))
    customer_ids = tuple(f"{label}-cust-{i}" for i in range(customers))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for team_id in team_ids:
            await _admin(session, admin, master_key, "/team/new", {"team_id": team_id, "team_alias": team_id})
        for user_id in user_ids:
            await _admin(session, admin, master_key, "/user/new", {"user_id": user_id})
        for customer_id in customer_ids:
            await _admin(session, admin, master_key, "/customer/new", {"user_id": customer_id})
        for team_id in team_ids:
            await _known_everywhere(session, [admin], master_key, f"/team/info?team_id={team_id}", timeout)
        made: list[VirtualKey] = []
        for i in range(keys):
            team_id, user_id = team_ids[i % teams], user_ids[i % users]
            key_tags = (f"{label}-keytag-{i}",) if i == 0 else ()
            body = {"team_id": team_id, "user_id": user_id, "key_alias": f"{label}-key-{i}",
                    "metadata": {"tags": list(key_tags)} if key_tags else {}}
            answer = await _admin(session, admin, master_key, "/key/generate", body)
            made.append(VirtualKey(answer["key"], team_id, user_id, key_tags))
        for key in made:
            await _known_everywhere(session, bases, master_key, f"/key/info?key={key.raw}", timeout)
    return Population(tuple(made), team_ids, user_ids, customer_ids, tuple(f"{label}-tag-{i}" for i in range(tags)))


class _Replicas:
    """Round robin over the proxies, skipping for a moment one that refused a connection."""

    def __init__(self, bases: Sequence[str]) -> None:
        self.bases = list(bases)
        self._next = itertools.cycle(range(len(bases)))
        self._down_until = [0.0] * len(bases)

    def pick(self, avoid: str | None = None) -> str:
        now = time.monotonic()
        for _ in range(len(self.bases)):
            i = next(self._next)
            if self._down_until[i] <= now and self.bases[i] != avoid:
                return self.bases[i]
        return self.bases[next(self._next)]

    def mark_down(self, base: str) -> None:
        self._down_until[self.bases.index(base)] = time.monotonic() + REPLICA_DOWN_S


async def run_load(bases: Sequence[str], population: Population, *, rate: float, duration_s: float, max_calls: int,
                   stop: asyncio.Event | None = None, concurrency: int = 256, call_timeout_s: float = 15.0,
                   seed: int = 0, probe_every: int = 0, on_answer: Callable[[Answered], None] | None = None,
                   steer: dict | None = None) -> LoadResult:
    """Send calls at `rate` per second (open loop: call i is due at start + i/rate) until
    `max_calls`, `duration_s` or `stop`; wait for every call to finish; return what happened.
    With `probe_every` = k, every k-th call is a probe: its customer (`user`) is its own,
    "probe-<seed>-<n>", so a report grouped by customer shows when that one call is counted.
    `steer` is merged into every call's `x_fake` (e.g. {"delay_ms": 6000} for long calls)."""
    _loopback_only(bases)
    rng = random.Random(seed)
    replicas = _Replicas(bases)
    result = LoadResult(rate=rate)
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=call_timeout_s)

    async def one(session: aiohttp.ClientSession, n: int, body: bytes, key: VirtualKey, customer: str,
                  tags: tuple[str, ...]) -> None:
        headers = {"Authorization": f"Bearer {key.raw}", "Content-Type": "application/json"}
        base = replicas.pick()
        for attempt in range(len(bases) + 1):
            sent = time.monotonic()
            try:
                async with session.post(base + "/chat/completions", data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        result.failed.append(Failed(base, f"HTTP {resp.status}", resp.status, time.monotonic(), True))
                        return
                    answered = Answered(resp.headers["x-litellm-call-id"], Decimal(resp.headers["x-litellm-response-cost"]),
                                        key, customer, tags, base, sent, time.monotonic(), time.time())
            except aiohttp.ClientConnectorError as exc:  # refused: the request never left
                replicas.mark_down(base)
                if attempt < len(bases):
                    result.redirected += 1
                    base = replicas.pick(avoid=base)
                    continue
                result.failed.append(Failed(base, f"connect: {exc}", None, time.monotonic(), False))
                return
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # sent, then lost
                replicas.mark_down(base)
                result.failed.append(Failed(base, f"{type(exc).__name__}: {exc}", None, time.monotonic(), True))
                return
            result.answered.append(answered)
            if on_answer is not None:
                on_answer(answered)
            return

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        result.started = time.monotonic()
        start = loop.time()
        for n in range(max_calls):
            if loop.time() - start >= duration_s or (stop is not None and stop.is_set()):
                break
            due = start + n / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())  # pacing: the next call is not due yet
            key = rng.choice(population.keys)
            customer = f"probe-{seed}-{n}" if probe_every and n % probe_every == 0 else rng.choice(population.customers)
            request_tags = tuple(rng.sample(population.tags, rng.randint(0, 2)))
            usage = {"prompt_tokens": rng.randint(1, 4000), "completion_tokens": rng.randint(1, 2000)}
            body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": f"load call {n}"}],
                                 "user": customer, "metadata": {"tags": list(request_tags)}, "x_fake": {"usage": usage, **(steer or {})}})
            await limit.acquire()
            task = asyncio.create_task(one(session, n, body, key, customer, tuple(dict.fromkeys(request_tags + key.tags))))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), limit.release()))
        if tasks:
            await asyncio.gather(*tasks)
        result.ended = time.monotonic()
    return result
