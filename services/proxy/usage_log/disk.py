"""The usage log's disk side: a previous process's journal adopted into the spool, records
spooled, and the records that wait in memory while the disk refuses writes (write_refusal.py says
why; the emitter's drain loop calls `recover` when a retry is due)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from services.proxy.usage_log.batching import Record
from services.proxy.usage_log.journal import Journal
from services.proxy.usage_log.spool import Spool
from services.proxy.usage_log.write_refusal import WriteRefusal
from shared.metrics import Metric

log = structlog.get_logger(__name__)


class UsageDisk:
    def __init__(self, journal: Journal, spool: Spool, writes: WriteRefusal, spooled: Metric,
                 first_waiting: Callable[[], None]) -> None:
        self.journal, self.spool, self.writes, self.spooled = journal, spool, writes, spooled
        self._first_waiting = first_waiting  # the spool had nothing waiting and now has: the stall clock starts
        self.held: list[Record] = []  # could be neither sent nor written to disk: retried

    def adopt_leftovers(self) -> None:
        """A previous process died before these were safe: the spool sends them (again)."""
        leftovers = self.journal.read_leftovers()
        if leftovers:
            self.spool.append(leftovers)
            self.spooled.inc(len(leftovers))
            log.warning("journal_recovered", events=len(leftovers), torn_lines=self.journal.torn_lines)
        self.journal.drop_leftovers()

    def to_spool(self, records: list[Record]) -> bool:
        """Into the fsync'd spool; from then on the journal need not keep them. While the usage
        log cannot be written they wait in memory instead, retried by `recover`."""
        if not records:
            return True
        if self.writes.reason is not None:
            self.held.extend(records)
            return False
        was_empty = not self.spool.pending
        try:
            self.spool.append(r[1] for r in records)
        except OSError as exc:
            self.writes.failed(exc)
            self.held.extend(records)
            return False
        if was_empty:
            self._first_waiting()
        self._spooled(records)
        return True

    def recover(self, to_kafka: Callable[[list[Record]], None] | None) -> None:
        """Try the disk again: leftovers of a previous process, then what waits in memory (handed
        to `to_kafka` when Kafka is healthy, else spooled), then a write probe. Success ends the
        refusal."""
        try:
            if self.journal.leftovers:
                self.adopt_leftovers()
            held, self.held = self.held, []
            if held and to_kafka is not None:
                to_kafka(held)  # Kafka takes them; no disk needed
            elif held:
                try:
                    self.spool.append(r[1] for r in held)
                except OSError:
                    self.held = held + self.held
                    raise
                self._spooled(held)
            self.spool.probe()
        except OSError as exc:
            self.writes.retry_failed(exc, held=len(self.held))
            return
        self.writes.recovered()

    def _spooled(self, records: list[Record]) -> None:
        self.spooled.inc(len(records))
        for record in records:
            if record[3] is not None:
                self.journal.done(record[3])
