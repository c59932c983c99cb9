"""The ids of stored responses, as the proxy hands them out: LiteLLM's managed id (`resp_` +
base64 of `litellm:custom_llm_provider:<p>;model_id:<id>;response_id:<upstream id>`), so that a
retrieve or a `previous_response_id` finds the deployment that created the response on any replica,
with one more part, `owner:<tag>`: an HMAC, under the proxy's master key, of the creating key's
hash and the upstream id. A key may use only the ids it was given. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

PREFIX = "resp_"
MAX_ID_CHARS = 1024  # a managed id is a few hundred characters; anything longer is not one of ours
_UPSTREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")  # goes into an upstream path: nothing else passes


@dataclass(frozen=True, slots=True)
class StoredResponse:
    provider: str
    model_id: str
    upstream_id: str
    owner: str


def owner_tag(secret: str, key_hash: str, upstream_id: str) -> str:
    return hmac.new(secret.encode(), f"{key_hash}\n{upstream_id}".encode(), hashlib.sha256).hexdigest()[:32]


def managed_id(secret: str, key_hash: str, provider: str, model_id: str, upstream_id: str) -> str:
    assembled = (f"litellm:custom_llm_provider:{provider};model_id:{model_id};response_id:{upstream_id}"
                 f";owner:{owner_tag(secret, key_hash, upstream_id)}")
    return PREFIX + base64.urlsafe_b64encode(assembled.encode()).decode().rstrip("=")


def decode(response_id: str) -> StoredResponse | None:
    """The parts of a managed id; None for anything else (an upstream's own id, a forged string)."""
    if not response_id.startswith(PREFIX) or len(response_id) > MAX_ID_CHARS:
        return None
    encoded = response_id[len(PREFIX):]
    try:
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    fields = dict(part.partition(":")[::2] for part in text.removeprefix("litellm:").split(";"))
    provider, model_id = fields.get("custom_llm_provider"), fields.get("model_id")
    upstream_id, owner = fields.get("response_id"), fields.get("owner")
    if not (text.startswith("litellm:") and provider and model_id and upstream_id and owner
            and _UPSTREAM_ID.fullmatch(upstream_id)):
        return None
    return StoredResponse(provider, model_id, upstream_id, owner)


def owned_by(stored: StoredResponse, secret: str, key_hash: str) -> bool:
    return hmac.compare_digest(stored.owner, owner_tag(secret, key_hash, stored.upstream_id))


@dataclass(frozen=True, slots=True)
class Owner:
    """The key a call runs under, as stored responses know it."""

    secret: str  # the proxy's master key ("" without one: then a tag proves less, see docs/providers.md)
    key_hash: str

    def managed_id(self, provider: str, model_id: str, upstream_id: str) -> str:
        return managed_id(self.secret, self.key_hash, provider, model_id, upstream_id)

    def owns(self, stored: StoredResponse) -> bool:
        return owned_by(stored, self.secret, self.key_hash)
