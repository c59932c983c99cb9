"""The ledger's settings: one frozen object, built once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import ConfigDict

from shared.config import load_config
from shared.settings import CommonSettings, common_from_env, env_bool, env_float, env_int


class LedgerSettings(CommonSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = 4003
    # The name under which offsets are kept in tally_consumer_offsets, and (with the topic prefix)
    # the Kafka consumer group that splits the partitions between ledgers; Kafka never stores the
    # ledger's offsets.
    consumer_name: str = "tally-ledger"
    # How long the group waits for a silent ledger before giving its partitions to the others.
    session_timeout_ms: int = 10_000
    db_schema: str = "public"  # where the live tables are; replay builds next to it and swaps
    batch_max_events: int = 10_000
    batch_max_ms: int = 100
    replay_batch_max_events: int = 20000
    store_bodies: bool = False  # messages/response into the spend log (off: rows stay small)
    retry_max_delay_s: float = 5.0
    pool_size: int = 4
    # /health answers 503 when input waits and the stored offsets have not moved for this long.
    stall_after_s: float = 60.0
    stop_deadline_s: float = 25.0  # a SIGTERM not done by then ends the process (shared/service.py)
    progress_interval_s: float = 5.0  # how often the monitor measures lag and progress
    # Keep this many days of spend logs before today (UTC); older daily partitions are dropped and
    # events starting before them refused (retention.py). None: keep everything.
    spend_log_retention_days: int | None = None


def ledger_settings(env: Mapping[str, str] | None = None) -> LedgerSettings:
    env = os.environ if env is None else env
    common = common_from_env(env)
    store_bodies = env_bool(env, "TALLY_STORE_BODIES", False)
    if not store_bodies and env.get("TALLY_CONFIG"):
        # LiteLLM's own switch, general_settings.store_prompts_in_spend_logs, works too. A broken
        # config file raises ConfigError: __main__ prints it and exits.
        store_bodies = load_config(common["config_path"], env).general_settings.store_prompts_in_spend_logs  # type: ignore[arg-type]
    return LedgerSettings(
        **common,
        port=env_int(env, "LEDGER_PORT", 4003),
        consumer_name=env.get("LEDGER_CONSUMER_NAME") or "tally-ledger",
        db_schema=env.get("LEDGER_SCHEMA") or "public",
        session_timeout_ms=env_int(env, "LEDGER_SESSION_TIMEOUT_MS", 10_000),
        batch_max_events=env_int(env, "LEDGER_BATCH_MAX_EVENTS", 10_000),
        batch_max_ms=env_int(env, "LEDGER_BATCH_MAX_MS", 100),
        replay_batch_max_events=env_int(env, "LEDGER_REPLAY_BATCH_MAX_EVENTS", 20000),
        store_bodies=store_bodies,
        retry_max_delay_s=env_float(env, "LEDGER_RETRY_MAX_DELAY_S", 5.0),
        pool_size=env_int(env, "LEDGER_POOL_SIZE", 4),
        stall_after_s=env_float(env, "TALLY_STALL_AFTER_S", 60.0),
        stop_deadline_s=env_float(env, "TALLY_STOP_DEADLINE_S", 25.0),
        progress_interval_s=env_float(env, "TALLY_PROGRESS_INTERVAL_S", 5.0),
        spend_log_retention_days=_retention_days(env),
    )


def _retention_days(env: Mapping[str, str]) -> int | None:
    if not env.get("TALLY_SPEND_LOG_RETENTION_DAYS"):
        return None
    days = env_int(env, "TALLY_SPEND_LOG_RETENTION_DAYS", 0)
    if days < 1:
        raise ValueError(f"TALLY_SPEND_LOG_RETENTION_DAYS must be at least 1, got {days}")
    return days
