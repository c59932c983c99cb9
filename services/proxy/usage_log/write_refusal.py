"""Whether the usage log's disk (journal, spool) takes writes, and when to try it again.

A refused write (disk full, read-only, I/O error) makes the proxy refuse new calls: their usage
could not be written down, so their upstream must not be paid. `WriteRefusal` holds the reason
the relay gives (`reason`), the failure count and the writable gauge on /metrics, and the capped
backoff between attempts to write again; the emitter makes those attempts (its drain loop) and
says how they went."""

from __future__ import annotations

import time

import structlog

from shared.backoff import Backoff
from shared.metrics import Registry

log = structlog.get_logger(__name__)

WRITE_RETRY_MAX_S = 5.0  # cap of the backoff between attempts to write the usage log again


class WriteRefusal:
    """`first_retry_s`: the wait before the first attempt after a failure (the emitter's drain
    interval); each failed attempt doubles it, up to WRITE_RETRY_MAX_S."""

    def __init__(self, registry: Registry, first_retry_s: float) -> None:
        self.reason: str | None = None  # set while writes fail: why calls are refused
        self._backoff = Backoff(first_retry_s, max(first_retry_s, WRITE_RETRY_MAX_S))
        self._retry_at = 0.0
        self.failures = registry.counter(
            "proxy_usage_log_write_failures_total", "Writes of the usage journal or spool the disk refused")
        registry.gauge("proxy_usage_log_writable", "1 while the usage journal and spool can be written, else 0 (calls refused)",
                       callback=lambda: 0.0 if self.reason else 1.0)

    def failed(self, exc: OSError) -> None:
        """A write the disk refused: refuse calls from now on; the first retry comes after the
        first delay."""
        self.failures.inc()
        if self.reason is None:
            log.error("usage_log_unwritable", error=str(exc), hint="new calls are refused (503) until it can be written")
            self._backoff.reset()
            self._retry_at = time.monotonic() + self._backoff.take()
        self.reason = f"the usage log cannot be written: {exc}"

    def due(self) -> bool:
        """Writes fail and the backoff has run out: time for the next attempt."""
        return self.reason is not None and time.monotonic() >= self._retry_at

    def retry_failed(self, exc: OSError, held: int) -> None:
        """An attempt to write again failed: the next one waits longer."""
        self.failures.inc()
        self.reason = f"the usage log cannot be written: {exc}"
        delay = self._backoff.take()
        self._retry_at = time.monotonic() + delay
        log.warning("usage_log_still_unwritable", error=str(exc), retry_in_s=delay, held=held)

    def recovered(self) -> None:
        self.reason = None
        log.info("usage_log_writable_again")
