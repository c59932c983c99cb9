"""The master key rules every service that holds the key applies alike (docs/security.md):

- a guessable master key is refused when the service listens beyond this machine, and only
  warned about on loopback (the development stack's `sk-1234` keeps working there);
- the master key's SHA-256 is never written where readers look: calls made with it are
  recorded under `MASTER_KEY_ALIAS`, the label LiteLLM writes for them in its spend logs."""

from __future__ import annotations

import ipaddress

import structlog

log = structlog.get_logger(__name__)

# What a master-key call's `api_key` is in spend logs, usage and priced events and the totals
# (LiteLLM's own label for the master key, so dashboards that filter on it keep working).
MASTER_KEY_ALIAS = "litellm_proxy_master_key"

# Keys from tutorials and READMEs: anyone can guess them.
WELL_KNOWN_KEYS = frozenset({
    "sk-1234", "sk-12345", "sk-123456", "sk-1234567890", "sk-test", "sk-master", "sk-admin",
    "changeme", "password", "admin", "master", "secret", "test", "sk-litellm", "sk-master-key",
})
MIN_MASTER_KEY_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 6


class WeakMasterKey(ValueError):
    """A guessable master key on a service reachable from other machines: start-up stops."""


def is_loopback(host: str) -> bool:
    """True when only this machine can reach a server bound to `host`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def weak_key_reason(key: str) -> str | None:
    """Why a master key is guessable, or None when it looks strong enough."""
    if key.lower() in WELL_KNOWN_KEYS:
        return "it is a well-known example key"
    if len(key) < MIN_MASTER_KEY_LENGTH:
        return f"it is shorter than {MIN_MASTER_KEY_LENGTH} characters"
    body = key[3:] if key.startswith("sk-") else key
    if len(set(body)) < MIN_DISTINCT_CHARACTERS:
        return "it repeats too few distinct characters"
    return None


def weak_key_message(service: str, reason: str, host: str) -> str:
    return (f"the master key is weak ({reason}) and the {service} would listen on {host}: "
            "set LITELLM_MASTER_KEY to a long random value (e.g. sk- followed by 32 random characters), "
            "or listen on 127.0.0.1 only (TALLY_HOST)")


def check_master_key(key: str | None, host: str, service: str) -> None:
    """Refuse (WeakMasterKey) a guessable master key unless `service` listens on loopback only."""
    if not key:
        log.warning("no_master_key", service=service,
                    hint="set LITELLM_MASTER_KEY or general_settings.master_key; only virtual keys will work")
        return
    reason = weak_key_reason(key)
    if reason is None:
        return
    if not is_loopback(host):
        raise WeakMasterKey(weak_key_message(service, reason, host))
    log.warning("weak_master_key", service=service, reason=reason, host=host,
                hint=f"accepted because the {service} listens on loopback only; "
                     "set a strong LITELLM_MASTER_KEY before exposing it")
