"""Settings shared by every service: one frozen object, built once at start-up from the
environment (and the LiteLLM-style config file), then passed down. Nothing reads os.environ later."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "config" / "config.yaml"


class CommonSettings(BaseModel):
    """What every service needs: where Kafka and Postgres are and how topics are named."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://tally:tally@127.0.0.1:5432/tally"
    # Tests and side-by-side stacks isolate themselves with a topic prefix ("t1234." …).
    topic_prefix: str = ""
    config_path: Path = DEFAULT_CONFIG_PATH
    log_level: str = "info"
    host: str = "127.0.0.1"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def common_from_env(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The CommonSettings fields present in the environment, ready to pass to a settings class."""
    env = os.environ if env is None else env
    fields: dict[str, object] = {}
    mapping = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
        "DATABASE_URL": "database_url",
        "TALLY_TOPIC_PREFIX": "topic_prefix",
        "TALLY_CONFIG": "config_path",
        "TALLY_LOG_LEVEL": "log_level",
        "TALLY_HOST": "host",
    }
    for variable, field in mapping.items():
        if env.get(variable):
            fields[field] = env[variable]
    return fields


def run_dir_from_env(env: Mapping[str, str]) -> Path:
    """Where run state lives (pids, logs, Kafka data, the proxy's spool): TALLY_RUN_DIR, or .run
    in the repository. `make up` (stack/) and the services read the same variable."""
    return Path(env.get("TALLY_RUN_DIR") or REPO_ROOT / ".run")


def price_maps_from_env(env: Mapping[str, str]) -> tuple[Path, ...]:
    """TALLY_PRICE_MAP: the user's own price-map files, comma-separated. Every service that
    prices (proxy, pricer, reports) reads the same list, so they price alike."""
    return tuple(Path(p.strip()) for p in env.get("TALLY_PRICE_MAP", "").split(",") if p.strip())


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}
