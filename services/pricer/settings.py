"""The pricer's settings: one frozen object, built once from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from pydantic import ConfigDict

from shared.settings import CommonSettings, common_from_env, env_float, env_int, price_maps_from_env


class PricerSettings(CommonSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = 4002
    group_id: str = "tally-pricer"
    # Stable per replica: a restarted replica with the same id fences its zombie predecessor.
    transactional_id: str = "tally-pricer-0"
    price_maps: tuple[Path, ...] = ()  # the user's own price-map files, extending the default
    price_map_poll_s: float = 5.0  # how often the price files are checked for changes (0: never)
    catalog_sync_timeout_s: float = 10.0  # start-up waits this long to read the catalog topic
    # Up to this many usage events per transaction: a transaction costs the broker and the pricer
    # a fixed handful of round trips, so a backlog is priced in large ones.
    batch_size: int = 5000
    # /health answers 503 when input waits and the committed offsets have not moved for this long.
    stall_after_s: float = 60.0
    stop_deadline_s: float = 25.0  # a SIGTERM not done by then ends the process (shared/service.py)
    progress_interval_s: float = 5.0  # how often the monitor measures lag and progress


def pricer_settings(env: Mapping[str, str] | None = None) -> PricerSettings:
    env = os.environ if env is None else env
    maps = price_maps_from_env(env)
    common = common_from_env(env)
    prefix = str(common.get("topic_prefix", ""))
    instance = env.get("PRICER_INSTANCE", "0")
    return PricerSettings(
        **common,
        port=env_int(env, "PRICER_PORT", 4002),
        # Prefixed like the topics, so side-by-side stacks (and tests) never share a group.
        group_id=f"{prefix}tally-pricer",
        transactional_id=env.get("PRICER_TRANSACTIONAL_ID") or f"{prefix}tally-pricer-{instance}",
        price_maps=maps,
        price_map_poll_s=env_float(env, "TALLY_PRICE_MAP_POLL_S", 5.0),
        catalog_sync_timeout_s=env_float(env, "TALLY_CATALOG_SYNC_TIMEOUT_S", 10.0),
        batch_size=env_int(env, "PRICER_BATCH_SIZE", 5000),
        stall_after_s=env_float(env, "TALLY_STALL_AFTER_S", 60.0),
        stop_deadline_s=env_float(env, "TALLY_STOP_DEADLINE_S", 25.0),
        progress_interval_s=env_float(env, "TALLY_PROGRESS_INTERVAL_S", 5.0),
    )


def instance_name() -> str:
    return socket.gethostname()
