"""The outbox's sender: due deliveries are POSTed to their channel's URL; a 2xx is sent, a 5xx,
429, timeout or connection error is tried again after a capped exponential backoff, until
`max_attempts`, then the row is dead (`alerts list` / `alerts resend`). Any other answer is dead at
once: the receiver refuses the body, and sending it again would not change that."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import aiohttp
import structlog

from services.reports.alerts.store import AlertStore, Delivery
from shared.backoff import Backoff
from shared.metrics import Registry

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Tally-Signature"  # "sha256=<hex HMAC-SHA256 of the body with the secret>"
ALERT_ID_HEADER = "X-Tally-Alert-Id"  # the same on every attempt: a receiver can drop repeats
CLAIM_BATCH = 20


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(first_s: float, cap_s: float, attempts: int) -> float:
    """The wait after the `attempts`-th failure: first, then doubling, never above cap."""
    backoff = Backoff(first_s, cap_s)
    for _ in range(attempts - 1):
        backoff.take()
    return backoff.take()


class Transient(Exception):
    """Worth another attempt."""


class Refused(Exception):
    """Not worth another attempt."""


class DeliveryMetrics:
    def __init__(self, registry: Registry) -> None:
        self.sent = registry.counter("alerts_sent_total", "alert deliveries a receiver accepted")
        self.failed = registry.counter("alerts_failed_total", "alert deliveries dead-lettered")
        self.retried = registry.counter("alerts_retried_total", "alert delivery attempts to be tried again")
        self.pending = registry.gauge("alerts_pending", "alert deliveries waiting to be sent")


class Sender:
    def __init__(self, store: AlertStore, session: aiohttp.ClientSession, urls: dict[str, str], *, secret: str | None,
                 max_attempts: int, retry_first_s: float, retry_cap_s: float, timeout_s: float, metrics: DeliveryMetrics) -> None:
        self.store, self.session, self.urls, self.secret = store, session, urls, secret
        self.max_attempts, self.retry_first_s, self.retry_cap_s = max_attempts, retry_first_s, retry_cap_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.metrics = metrics
        self.wake = asyncio.Event()

    async def run(self, poll_interval_s: float) -> None:
        while True:
            self.wake.clear()
            await self.send_due()
            self.metrics.pending.set((await self.store.counts())["pending"])
            try:
                await asyncio.wait_for(self.wake.wait(), poll_interval_s)
            except TimeoutError:
                pass

    async def send_due(self) -> None:
        lease = self.timeout.total + 5  # type: ignore[operator]
        while batch := await self.store.claim(CLAIM_BATCH, lease):
            for delivery in batch:
                await self._attempt(delivery)

    async def _attempt(self, delivery: Delivery) -> None:
        attempts = delivery.attempts + 1
        try:
            await self._post(delivery)
        except Refused as exc:
            await self._dead(delivery, str(exc))
        except Transient as exc:
            if attempts >= self.max_attempts:
                await self._dead(delivery, f"{exc} (attempt {attempts} of {self.max_attempts})")
            else:
                self.metrics.retried.inc()
                await self.store.retry_later(delivery.id, str(exc), retry_delay(self.retry_first_s, self.retry_cap_s, attempts))
        else:
            self.metrics.sent.inc()
            await self.store.sent(delivery.id)

    async def _dead(self, delivery: Delivery, error: str) -> None:
        self.metrics.failed.inc()
        log.warning("alert_dead", delivery_id=delivery.id, channel=delivery.channel, error=error[:300])
        await self.store.dead(delivery.id, error)

    async def _post(self, delivery: Delivery) -> None:
        url = self.urls.get(delivery.channel)
        if url is None:
            raise Transient(f"no URL configured for {delivery.channel}")  # configured again later, then resent
        headers = {"Content-Type": "application/json", ALERT_ID_HEADER: str(delivery.id)}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, delivery.body)
        try:
            async with self.session.post(url, data=delivery.body, headers=headers, timeout=self.timeout) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            raise Transient(f"HTTP {status}")
        if status >= 300:
            raise Refused(f"HTTP {status}")
