"""The proxy's settings: one frozen object built at start-up from the environment and the
LiteLLM-style config file, then passed down. Nothing reads os.environ after this."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.proxy.calls.limits import EdgeLimits, edge_limits_from
from services.proxy.transport.http1 import Limits
from shared.config import ProxyConfig, load_config
# The weak-key rule is shared with the reports service; re-exported for the proxy's own code.
from shared.master_key import is_loopback
from shared.settings import REPO_ROOT, CommonSettings, common_from_env, run_dir_from_env, env_bool, env_float, env_int, price_maps_from_env

WORKER_ENV = "TALLY_PROXY_WORKER"  # set by workers.py for each process it starts


class ProxySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    config: ProxyConfig = Field(default_factory=ProxyConfig)
    port: int = 4000
    master_key: str | None = None
    reports_url: str = "http://127.0.0.1:4001"
    spool_dir: Path | None = None  # TALLY_SPOOL_DIR, else <TALLY_RUN_DIR>/spool/proxy-<port>
    upstream_timeout_s: float = 600.0
    upstream_connect_timeout_s: float = 10.0
    max_request_size_mb: float = 64.0
    usage_queue_size: int = 50_000
    stall_after_s: float = 60.0  # /health fails when spooled usage events wait this long without progress
    spool_fsync_batch: int = 256
    key_sync_timeout_s: float = 15.0  # start-up waits this long for the key table to catch up
    always_include_stream_usage: bool = False
    upstream_connections: int = 200  # per upstream origin
    upstream_limits: Limits = Field(default_factory=Limits)  # size and time bounds of an upstream answer
    replicas: int = 1  # TALLY_PROXY_REPLICAS: no longer used (budgets and rate limits are leased, docs/budgets.md)
    budget_lease_ttl_s: float = 10.0  # a budget lease not renewed this long is its dead holder's (docs/budgets.md)
    budget_lease_wait_s: float = 2.0  # how long a call may wait for a budget lease renewal
    workers: int = 1  # processes of this replica sharing its port (workers.py)
    worker: int = 0  # which of them this process is
    price_maps: tuple[Path, ...] = ()  # the user's own price-map files (TALLY_PRICE_MAP), as the pricer
    price_map_poll_s: float = 5.0  # how often the price files are checked for changes (0: never)
    edge_limits: EdgeLimits = Field(default_factory=EdgeLimits)  # what one call may record (limits.py)
    shutdown_drain_s: float = 20.0  # at SIGTERM, calls in flight get this long to finish (docs/settlement.md)

    @property
    def spool_root(self) -> Path:
        return self.spool_dir if self.spool_dir is not None else REPO_ROOT / ".run" / "spool" / f"proxy-{self.port}"

    @property
    def spool_path(self) -> Path:
        """Worker 0 owns the root itself (what a single-process proxy used), the others a
        subdirectory each: a journal or spool is only ever written by one process."""
        return worker_spool_path(self.spool_root, self.worker)

    @property
    def budget_processes(self) -> int:
        """Worker processes across the deployment (nothing splits a limit by it any more: leases)."""
        return self.replicas * self.workers

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.common.host)


def worker_spool_path(root: Path, worker: int) -> Path:
    return root if worker == 0 else root / f"worker-{worker}"


def proxy_settings_from_env(env: Mapping[str, str] | None = None) -> ProxySettings:
    env = os.environ if env is None else env
    common = CommonSettings(**common_from_env(env))  # type: ignore[arg-type]
    config = load_config(common.config_path, env)
    general = config.general_settings
    litellm_settings = config.litellm_settings
    # LITELLM_MASTER_KEY from the real environment wins over the file (as in LiteLLM).
    master_key = env.get("LITELLM_MASTER_KEY") or general.master_key
    max_mb = env_float(env, "TALLY_MAX_REQUEST_SIZE_MB", general.max_request_size_mb or 64.0)
    spool = env.get("TALLY_SPOOL_DIR")
    port = env_int(env, "PROXY_PORT", 4000)
    timeout = litellm_settings.get("request_timeout")
    maps = price_maps_from_env(env)
    return ProxySettings(
        common=common,
        price_maps=maps,
        price_map_poll_s=env_float(env, "TALLY_PRICE_MAP_POLL_S", 5.0),
        config=config,
        edge_limits=edge_limits_from(env, general.model_extra or {}),
        port=port,
        master_key=master_key or None,
        reports_url=env.get("REPORTS_URL", "http://127.0.0.1:4001").rstrip("/"),
        spool_dir=Path(spool) if spool else run_dir_from_env(env) / "spool" / f"proxy-{port}",
        upstream_timeout_s=env_float(env, "TALLY_UPSTREAM_TIMEOUT_S", float(timeout) if timeout else 600.0),
        max_request_size_mb=max_mb,
        usage_queue_size=env_int(env, "TALLY_USAGE_QUEUE_SIZE", 50_000),
        stall_after_s=env_float(env, "TALLY_STALL_AFTER_S", 60.0),
        key_sync_timeout_s=env_float(env, "TALLY_KEY_SYNC_TIMEOUT_S", 15.0),
        replicas=max(1, env_int(env, "TALLY_PROXY_REPLICAS", 1)),
        budget_lease_ttl_s=max(1.0, env_float(env, "TALLY_BUDGET_LEASE_TTL_S", 10.0)),
        budget_lease_wait_s=max(0.0, env_float(env, "TALLY_BUDGET_LEASE_WAIT_S", 2.0)),
        workers=max(1, env_int(env, "TALLY_PROXY_WORKERS", 1)),
        shutdown_drain_s=max(0.0, env_float(env, "TALLY_SHUTDOWN_DRAIN_S", 20.0)),
        worker=max(0, env_int(env, WORKER_ENV, 0)),
        upstream_limits=upstream_limits_from_env(env),
        always_include_stream_usage=env_bool(
            env, "TALLY_ALWAYS_INCLUDE_STREAM_USAGE", bool(litellm_settings.get("always_include_stream_usage", False))
        ),
    )


def upstream_limits_from_env(env: Mapping[str, str]) -> Limits:
    """TALLY_MAX_UPSTREAM_{RESPONSE,STREAM,EVENT}_MB and TALLY_MAX_STREAM_S (0: no bound)."""
    sizes = {}
    for field, name, default in (("body_bytes", "TALLY_MAX_UPSTREAM_RESPONSE_MB", 32.0),
                                 ("stream_bytes", "TALLY_MAX_UPSTREAM_STREAM_MB", 256.0),
                                 ("event_bytes", "TALLY_MAX_UPSTREAM_EVENT_MB", 4.0)):
        mb = env_float(env, name, default)
        if mb <= 0:
            raise ValueError(f"{name} must be above 0, got {mb:g}")
        sizes[field] = int(mb * 1024 * 1024)
    stream_s = env_float(env, "TALLY_MAX_STREAM_S", 3600.0)
    return Limits(**sizes, stream_s=stream_s if stream_s > 0 else None)
