"""One call in flight (`Call`) and what its stream needs from the relay that admitted it
(`CallHost`). streaming.py depends on these two, not on relay.py: the relay calls the stream
code, and the stream code reaches the relay only through this interface."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.admission import Admission
from services.proxy.calls.attribution import Attribution
from services.proxy.calls.cost import CostQuoter
from services.proxy.routing.router import Target
from services.proxy.settings import ProxySettings
from services.proxy.transport.http1 import Pool
from shared.events import TokenUsage, UsageEvent


@dataclass(slots=True)
class Call:
    """One call in flight: what every step after admission needs."""

    request_id: str
    call_type: str
    caller: CallerIdentity
    target: Target
    attribution: Attribution
    admission: Admission
    body: dict[str, Any]  # what goes upstream (proxy-only fields removed)
    start_time: datetime
    t0: float  # perf_counter at arrival
    requester_ip: str | None
    inbound: Any = None  # the API the caller spoke when not OpenAI chat's (MessagesCall, ResponsesCall), else None
    settled: bool = False  # set by SettlementBook.close, once
    detached: bool = False  # a background task finishes (and settles) the call after its handler ended
    timeout_s: float | None = None  # the request's own `timeout`, over its deployment's
    retry_open: bool = False  # another attempt may follow: a failure is not settled yet (attempts.py)
    attempted_retries: int = 0
    attempted_fallbacks: int = 0


class CallHost(Protocol):
    """The relay, as a stream sees it: the upstream pools and timeouts, the quoter for usage
    chunks, and the two ways a call ends (`finish`, `fail`), each settling it exactly once."""

    settings: ProxySettings
    quoter: CostQuoter
    pools: Mapping[str, Pool]
    timeouts: dict[str, float]
    stopping: bool  # shutdown has begun: a cancelled stream records itself instead of reading on
    background: set[asyncio.Task[None]]  # streams finishing after their client left

    def headers(self, call: Call, cost: Decimal | None, key_spend: Decimal | None) -> dict[str, str]: ...

    def finish(self, call: Call, usage: TokenUsage, *, response_model: str | None = None, stream: bool = False,
               completion_start_time: datetime | None = None, metadata_extra: dict | None = None
               ) -> tuple[UsageEvent, Decimal | None, Decimal | None]: ...

    def fail(self, call: Call, status: int, message: str, usage: TokenUsage | None = None, *,
             stream: bool = False) -> None: ...
