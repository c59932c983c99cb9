"""The reports service's settings: one frozen object, built once from the environment and the
LiteLLM-style config file (for the master key and the model list /spend/calculate prices)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ConfigDict

from shared.settings import CommonSettings, common_from_env, env_float, env_int, price_maps_from_env

STATIC_DIR = Path(__file__).resolve().parent / "static"


class ReportsSettings(CommonSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = 4001
    master_key: str | None = None
    # How long a virtual key's permissions are trusted before Postgres is asked again.
    auth_cache_seconds: float = 5.0
    # Raw spend-log rows returned at most by one /spend/logs?summarize=false call.
    max_log_rows: int = 10_000
    price_maps: tuple[Path, ...] = ()
    static_dir: Path = STATIC_DIR
    # At start-up, the Usage page's first load over this many days is made by the service itself
    # (0: off); /health is 503 until it is done or the timeout has passed (warmup.py).
    warm_days: int = 30
    warm_timeout_s: float = 60.0


def reports_settings(env: Mapping[str, str] | None = None, master_key_from_config: str | None = None) -> ReportsSettings:
    """LITELLM_MASTER_KEY wins over general_settings.master_key, as in LiteLLM."""
    env = os.environ if env is None else env
    maps = price_maps_from_env(env)
    return ReportsSettings(
        **common_from_env(env),
        port=env_int(env, "REPORTS_PORT", 4001),
        master_key=env.get("LITELLM_MASTER_KEY") or master_key_from_config,
        auth_cache_seconds=env_float(env, "REPORTS_AUTH_CACHE_SECONDS", 5.0),
        max_log_rows=env_int(env, "REPORTS_MAX_LOG_ROWS", 10_000),
        warm_days=env_int(env, "REPORTS_WARM_DAYS", 30),
        warm_timeout_s=env_float(env, "REPORTS_WARM_TIMEOUT_S", 60.0),
        price_maps=maps,
    )
