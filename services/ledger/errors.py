"""The ledger's errors: one base class, `LedgerError`, for everything the ledger itself raises.

Infrastructure errors (psycopg's, aiokafka's, a timeout) are translated where they are met
(`raise ConsumerStalled(...) from exc`); the ledger answers no HTTP request with them, so they
do not derive from shared.errors.TallyError. A worker that raises one is restarted by its
supervisor with new clients, resuming from the offsets stored in Postgres."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises."""


class Unstorable(LedgerError, ValueError):
    """The event is valid by its schema but Postgres would refuse it: it goes to the dead letters."""


class BadData(LedgerError):
    """The database refused the batch because of what one of its events holds."""


class SchemaSwapped(LedgerError):
    """A replay swapped in a rebuilt schema: re-read from the offsets stored there."""


class ConsumerStalled(LedgerError):
    """Messages are waiting but the consumer reads none: restart the worker with new clients."""


class KafkaAckTimeout(LedgerError):
    """The producer stopped answering: restart the worker with new clients."""


class PartitionsFenced(LedgerError):
    """Another ledger claimed a partition of this batch: nothing was written; rejoin the group."""
