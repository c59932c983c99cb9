"""Event schemas on the Kafka topics. Frozen, extra="forbid", versioned: a published version is
never edited; a new version comes with an upcaster from the old one (see `decode`).

Money is Decimal and is serialised as a JSON string so no digit is ever lost to a float."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter

from shared.record_limits import excerpt, sha256_hex

# A Decimal that travels as a string: "0.000051", never 5.1e-05 as a float.
Money = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]

MAX_LEASE_HOLDER_CHARS = 300  # a host name (≤ 253), a port, a worker number and a nonce
# The budgets whose spend the ledger counts per lease holder (services/ledger/holder_spend.py) and
# whose dead holders the lease authority charges from that count (services/proxy/budget/leases.py).
HOLDER_COUNTED_ENTITY_TYPES = frozenset({"key", "team", "user", "customer", "organization"})
CallType = Literal["acompletion", "atext_completion", "aembedding", "aimage_generation"]
Status = Literal["success", "failure"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=new_id)


class TokenUsage(BaseModel):
    """What the upstream reported, normalised. Counts are whole and never negative."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    # Of prompt_tokens, how many were read from / written to the provider's prompt cache.
    cache_read_input_tokens: int = Field(default=0, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    # Of completion_tokens, how many were reasoning tokens.
    reasoning_tokens: int = Field(default=0, ge=0)
    image_count: int = Field(default=0, ge=0)
    image_size: str | None = None  # "1024x1024"
    image_quality: str | None = None  # "standard" | "hd" | "low" | "medium" | "high"
    input_characters: int = Field(default=0, ge=0)
    duration_seconds: Decimal = Field(default=Decimal(0), ge=0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageEvent(Event):
    """One finished call through the proxy (success or failure). Key: hashed api key."""

    type: Literal["usage"] = "usage"
    schema_version: Literal[1] = 1

    request_id: str
    call_type: CallType
    status: Status = "success"
    stream: bool = False
    start_time: AwareDatetime
    end_time: AwareDatetime
    completion_start_time: AwareDatetime | None = None

    api_key_hash: str
    key_alias: str | None = None
    user_id: str | None = None  # internal user owning the key
    team_id: str | None = None
    organization_id: str | None = None
    end_user: str | None = None  # the request's `user`: the customer

    model_group: str  # the model name the caller asked for
    model: str  # the deployment's litellm_params.model, e.g. "groq/llama3-8b-8192"
    model_id: str | None = None
    custom_llm_provider: str | None = None
    api_base: str | None = None
    response_model: str | None = None  # the model named in the upstream's response
    base_model: str | None = None
    custom_prices: dict[str, Money] = Field(default_factory=dict)

    usage: TokenUsage = Field(default_factory=TokenUsage)
    request_tags: list[str] = Field(default_factory=list)
    spend_logs_metadata: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    error_status: int | None = None
    error_message: str | None = None
    soft_budget_exceeded: bool = False

    quoted_cost: Money | None = None  # what x-litellm-response-cost said
    quoted_catalog_version: str | None = None
    requester_ip_address: str | None = None
    session_id: str | None = None
    messages: Any = None  # bodies only when store_prompts_in_spend_logs is on
    response: Any = None
    # Added to v1 (optional: records written before decode unchanged). The budget lease holder that
    # admitted the call ("<host>:<port>/<worker>/<boot nonce>"), set when a budget lease held it: the
    # ledger counts each holder's spend, so a dead holder's lease is charged what it really spent.
    lease_holder: str | None = Field(default=None, max_length=MAX_LEASE_HOLDER_CHARS)


class CostBreakdown(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Money = Decimal(0)
    output: Money = Decimal(0)
    cache_read: Money = Decimal(0)
    cache_creation: Money = Decimal(0)
    reasoning: Money = Decimal(0)
    images: Money = Decimal(0)
    other: Money = Decimal(0)  # characters, seconds
    total: Money = Decimal(0)


class PricedUsageEvent(Event):
    """A usage event with its authoritative cost. Key: hashed api key."""

    type: Literal["priced_usage"] = "priced_usage"
    schema_version: Literal[1] = 1

    usage_event: UsageEvent
    cost: CostBreakdown
    priced_model: str | None  # the catalog entry (or "custom") that priced it; None when unpriced
    unpriced: bool = False
    catalog_version: str
    priced_at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def request_id(self) -> str:
        return self.usage_event.request_id

    @property
    def spend(self) -> Decimal:
        return self.cost.total


# "organization" and "budget" were added to v1: records written before decode unchanged.
EntityType = Literal["key", "team", "user", "customer", "organization", "budget"]


class EntityChanged(Event):
    """An admin change: the full new state of a key, team, user, customer, organisation or budget
    (or its deletion).
    Key: "<entity_type>:<entity_id>"."""

    type: Literal["entity_changed"] = "entity_changed"
    schema_version: Literal[1] = 1

    entity_type: EntityType
    entity_id: str  # key: the SHA-256 hash; team: team_id; user, customer: user_id; organization_id; budget_id
    deleted: bool = False
    state: dict[str, Any] = Field(default_factory=dict)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)


class SpendReset(Event):
    """POST /global/spend/reset: every key's and team's spend is zero as of `occurred_at`."""

    type: Literal["spend_reset"] = "spend_reset"
    schema_version: Literal[1] = 1

    scope: Literal["keys_and_teams"] = "keys_and_teams"
    occurred_at: AwareDatetime = Field(default_factory=utcnow)


class EntityTotal(Event):
    """The ledger's running spend of one entity in its current budget window. Compacted topic,
    key "<entity_type>:<entity_id>"."""

    type: Literal["entity_total"] = "entity_total"
    schema_version: Literal[1] = 1

    entity_type: Literal["key", "team", "user", "customer", "tag", "organization"]
    entity_id: str
    spend: Money
    window_start: AwareDatetime | None = None
    budget_reset_at: AwareDatetime | None = None
    as_of: AwareDatetime  # event time of the latest priced call counted


class CatalogPublished(Event):
    """A price catalog version, whole: the pricer and every proxy switch to the newest one, and
    keep the older ones by `version` for events priced under them. `prices` is the catalog's
    entries as JSON, gzip-compressed and base64-encoded (LiteLLM's full map is ~0.5 MB of JSON;
    compressed, it fits a record many times over). Topic catalog.v1, key b"catalog"."""

    type: Literal["catalog_published"] = "catalog_published"
    schema_version: Literal[1] = 1

    version: str  # shared.pricing.catalog_version of the entries: checked when read
    models: int = Field(ge=0)
    prices: str
    sources: list[str] = Field(default_factory=list)
    reason: Literal["startup", "reload", "file_change"]
    published_at: AwareDatetime = Field(default_factory=utcnow)


class DeadLetter(Event):
    """A record a stage set aside, and why. It points at the record (source topic, partition,
    offset: topics keep everything) instead of carrying it: v1 carried the whole payload escaped
    once more, which could outgrow the broker's message limit and stop the stage that sent it."""

    type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[2] = 2

    source_topic: str
    partition: int
    offset: int
    reason: str
    request_id: str | None = None  # when the payload was readable enough to tell
    payload_bytes: int = Field(ge=0)
    payload_sha256: str
    excerpt: str  # the payload's first EXCERPT_BYTES bytes, as text
    failed_at: AwareDatetime = Field(default_factory=utcnow)


def _dead_letter_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 held `payload`, the raw record as text; v2 holds its size, digest and an excerpt. The
    size and digest are of that text in UTF-8 (v1 replaced undecodable bytes)."""
    data = dict(data)
    raw = str(data.pop("payload", "")).encode("utf-8", errors="surrogatepass")
    data.update(schema_version=2, payload_bytes=len(raw), payload_sha256=sha256_hex(raw),
                excerpt=excerpt(raw), request_id=request_id_in(raw))
    return data


def request_id_in(raw: bytes) -> str | None:
    """The request id of a usage or priced event's JSON, if it has a readable one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    found = data.get("request_id")
    if found is None and isinstance(data.get("usage_event"), dict):
        found = data["usage_event"].get("request_id")
    # A NUL is what Postgres refuses: such an id could not be looked up or stored anyway.
    return found if isinstance(found, str) and len(found) <= 256 and "\x00" not in found else None


AnyEvent = Annotated[
    Union[UsageEvent, PricedUsageEvent, EntityChanged, SpendReset, EntityTotal, DeadLetter],
    Field(discriminator="type"),
]
_ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyEvent)


class UnknownEventVersion(ValueError):
    pass


# (type, schema_version) -> function turning that version's dict into the next version's dict.
UPCASTERS: dict[tuple[str, int], Any] = {("dead_letter", 1): _dead_letter_v1_to_v2}
CURRENT_VERSION = {"catalog_published": 1, "usage": 1, "priced_usage": 1, "entity_changed": 1, "spend_reset": 1, "entity_total": 1, "dead_letter": 2}


def upcast(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("type")
    version = data.get("schema_version", 1)
    while kind in CURRENT_VERSION and version < CURRENT_VERSION[kind]:
        step = UPCASTERS.get((kind, version))
        if step is None:
            raise UnknownEventVersion(f"no upcaster for {kind} v{version}")
        data = step(data)
        version = data["schema_version"]
    if kind in CURRENT_VERSION and version > CURRENT_VERSION[kind]:
        raise UnknownEventVersion(f"{kind} v{version} is newer than this service understands")
    return data


def encode(event: Event) -> bytes:
    return event.__pydantic_serializer__.to_json(event)


def decode(raw: bytes | str) -> Any:
    """Parse any event from its JSON bytes, upcasting old versions. Raises ValueError on bad input."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    return _ANY_EVENT.validate_python(upcast(data))


def decode_as(model: type[Event], raw: bytes | str) -> Any:
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    return model.model_validate(upcast(data))
