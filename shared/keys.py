"""Virtual keys are known only by their SHA-256 hash; the raw key is shown once, at generation."""

from __future__ import annotations

import hashlib
import secrets


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_key() -> str:
    return "sk-" + secrets.token_urlsafe(16)


def abbreviate(raw_key: str) -> str:
    """"sk-...AbCd": enough to recognise a key, not enough to use it."""
    return f"sk-...{raw_key[-4:]}"
