"""`python -m services.ledger dlq ...`: the ledger's dead letters (priced.dlq.v1) and quarantined
records; a replay sends the original back to priced.v1 or entities.v1 (see shared/dlq_repair.py)."""

from __future__ import annotations

from services.ledger.consumer import topics_for
from services.ledger.settings import LedgerSettings
from shared.dlq_repair import Stage, dlq_command


def ledger_stage(settings: LedgerSettings) -> Stage:
    topics, _priced, dlq, _totals = topics_for(settings.topic)
    return Stage("ledger", dlq, tuple(topics))


async def run(settings: LedgerSettings, args) -> int:  # noqa: ANN001 - argparse's namespace
    return await dlq_command(settings, ledger_stage(settings), args)
