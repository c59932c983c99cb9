"""`python -m services.pricer dlq ...`: the pricer's dead letters (usage.dlq.v1) and quarantined
records; a replay sends the original back to usage.v1 (see shared/dlq_repair.py)."""

from __future__ import annotations

from services.pricer.settings import PricerSettings
from shared.dlq_repair import Stage, dlq_command
from shared.topics import USAGE, USAGE_DLQ


def pricer_stage(settings: PricerSettings) -> Stage:
    return Stage("pricer", settings.topic(USAGE_DLQ), (settings.topic(USAGE),))


async def run(settings: PricerSettings, args) -> int:  # noqa: ANN001 - argparse's namespace
    return await dlq_command(settings, pricer_stage(settings), args)
