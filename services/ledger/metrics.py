"""The ledger's Prometheus metrics."""

from __future__ import annotations

from shared.metrics import Registry


class LedgerMetrics:
    def __init__(self, registry: Registry) -> None:
        self.consumed = registry.counter("ledger_events_consumed_total", "Events read from the priced and entities topics")
        self.inserted = registry.counter("ledger_rows_inserted_total", "Spend log rows inserted")
        self.duplicates = registry.counter("ledger_duplicates_skipped_total", "Priced events whose request_id was already logged")
        self.dead_lettered = registry.counter("ledger_dead_lettered_total", "Events sent to the dead-letter topic")
        self.quarantined = registry.counter("ledger_quarantined_total",
                                            "Records neither stored nor dead-lettered (the send was refused), kept in Postgres")
        self.batches = registry.counter("ledger_batches_total", "Batches committed")
        self.batch_seconds = registry.counter("ledger_batch_seconds_sum", "Total seconds spent committing batches")
        self.batch_last = registry.gauge("ledger_batch_seconds_last", "Seconds the last batch took to commit")
        self.delay_max = registry.gauge("ledger_event_delay_seconds_last_max",
                                        "In the last batch, the longest time from an event's end_time to its row being committed")
        self.db_retries = registry.counter("ledger_db_retries_total", "Batches retried because Postgres did not answer")
        self.lag = registry.gauge("ledger_consumer_lag",
                                  "Messages between the offsets stored in Postgres and the end of the priced and entities topics")
        self.totals_published = registry.counter("ledger_totals_published_total", "EntityTotal messages sent")
