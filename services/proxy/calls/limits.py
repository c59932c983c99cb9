"""What a call may ask the books to record, checked before the upstream is called. Pure: no I/O.

Every value a caller (or the key's admin-set fields) puts into a usage event is bounded here: the
metadata (spend_logs_metadata included) by its recorded size and nesting depth, the tags by count
and length, each identifier by length, and every recorded string must be text Postgres can store
(no NUL) and valid Unicode (no unpaired surrogate: aiohttp decodes a header's invalid UTF-8 into
them). A call over a limit is a 400 naming the limit, its value and its setting; nothing is paid
for. With the limits in force, the largest usage event fits `USAGE_EVENT_MAX_BYTES`
(`worst_case_event_bytes`, proved in tests/unit/test_proxy_limits.py); docs/limits.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import orjson

from services.proxy.auth.keys import CallerIdentity
from services.proxy.calls.attribution import Attribution
from services.proxy.errors import InvalidRequest
from services.proxy.routing.router import IMAGE

# The broker refuses records over 1 MiB (message.max.bytes). A usage event stays under half of it:
# the pricer's priced event adds a few hundred bytes, and a dead-letter record carries an excerpt.
USAGE_EVENT_MAX_BYTES = 512 * 1024
# What the fields no caller controls may take in one event: envelope, ids, times, token counts,
# flags, the requester's address and the proxy's own metadata flags.
FIXED_EVENT_BYTES = 8 * 1024
# The deployment's fields (model_group, model, model_id, api_base, base_model, custom_prices), from
# the operator's config file.
CONFIG_EVENT_BYTES = 16 * 1024
# Text the upstream sends that is recorded, cut to these many characters (record.py).
MAX_RESPONSE_MODEL_CHARS = 256
MAX_ERROR_MESSAGE_CHARS = 2000
# orjson writes a control character as \u00XX: no character takes more bytes in an event.
MAX_BYTES_PER_CHAR = 6
# end_user, session_id, the key's key_alias / user_id / team_id / organization_id, and an image
# call's size and quality (recorded in its usage).
RECORDED_IDENTIFIERS = 8

_NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Per-call bounds on what is recorded. Each has an environment variable (`TALLY_` + the
    upper-cased field name) and a general_settings entry of the field's own name."""

    max_metadata_bytes: int = 65_536  # metadata + spend_logs_metadata, as recorded (JSON bytes)
    max_metadata_depth: int = 32  # nesting of objects and lists inside metadata
    max_tags: int = 64  # distinct tags of one call: body, header and the key's together
    max_tag_chars: int = 256
    max_identifier_chars: int = 1_024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{setting_name(f.name)} must be a whole number of at least 1, got {value!r}")
        worst = worst_case_event_bytes(self)
        if worst > USAGE_EVENT_MAX_BYTES:
            raise ValueError(
                f"these limits allow a usage event of {worst:,} bytes, over the budget of {USAGE_EVENT_MAX_BYTES:,}: "
                "lower TALLY_MAX_METADATA_BYTES, TALLY_MAX_TAGS, TALLY_MAX_TAG_CHARS or TALLY_MAX_IDENTIFIER_CHARS")


def setting_name(field_name: str) -> str:
    return "TALLY_" + field_name.upper()


def edge_limits_from(env: Mapping[str, str], general_settings: Mapping[str, Any]) -> EdgeLimits:
    """The environment wins over the config file's general_settings, which wins over the default."""
    values: dict[str, int] = {}
    for f in fields(EdgeLimits):
        name = setting_name(f.name)
        raw = env.get(name)
        if raw in (None, ""):
            raw = general_settings.get(f.name)
            name = f"general_settings.{f.name}"
        if raw is None:
            continue
        try:
            values[f.name] = int(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc
    return EdgeLimits(**values)


def worst_case_event_bytes(limits: EdgeLimits) -> int:
    """An upper bound on a usage event's encoded size when a call passed `check`."""
    def text(chars: int) -> int:
        return chars * MAX_BYTES_PER_CHAR + 2  # with its quotes

    return (FIXED_EVENT_BYTES + CONFIG_EVENT_BYTES + limits.max_metadata_bytes
            + limits.max_tags * (text(limits.max_tag_chars) + 1)
            + RECORDED_IDENTIFIERS * text(limits.max_identifier_chars)
            + text(MAX_RESPONSE_MODEL_CHARS) + text(MAX_ERROR_MESSAGE_CHARS))


def recordable(text: str | None, max_chars: int) -> str | None:
    """Upstream text as it may be recorded: cut to `max_chars`, NUL and unpaired surrogates replaced
    by U+FFFD. The call is answered already, so the text is repaired, not refused."""
    if text is None:
        return None
    if len(text) > max_chars:
        text = text[:max_chars]
    if _NUL in text:
        text = text.replace(_NUL, "\ufffd")
    if not text.isascii() and _bad_unicode(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text


def check(limits: EdgeLimits, call_type: str, body: Mapping[str, Any], attribution: Attribution, caller: CallerIdentity) -> None:
    """Raise InvalidRequest when the call would record something over a limit or not storable.
    Runs on every call: the usual call (a short user, a few tags, little metadata) costs a few
    length checks and at most one serialisation of its metadata."""
    cap = limits.max_identifier_chars
    _identifier(attribution.end_user, "user", cap)
    _identifier(attribution.session_id, "session_id", cap)
    _identifier(caller.key_alias, "the key's key_alias", cap, param=None)
    _identifier(caller.user_id, "the key's user_id", cap, param=None)
    _identifier(caller.team_id, "the key's team_id", cap, param=None)
    _identifier(caller.organization_id, "the key's organization_id", cap, param=None)
    if call_type == IMAGE:
        for name in ("size", "quality"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise _refused(f"{name} must be a string", param=name)
            _identifier(value, name, cap)
        n = body.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128):
            raise _refused("n must be a whole number from 1 to 128", param="n")
    _tags(limits, attribution.request_tags)
    _metadata(limits, attribution)


def _refused(message: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(message, param=param, type="invalid_request_error")


def _identifier(value: str | None, what: str, cap: int, param: str | None = "") -> None:
    if not value:
        return
    param = what if param == "" else param
    if len(value) > cap:
        raise _refused(f"{what} is {len(value):,} characters; the limit is {cap:,} (TALLY_MAX_IDENTIFIER_CHARS)", param=param)
    _text(value, what, param)


def _text(value: str, what: str, param: str | None) -> None:
    if _NUL in value:
        raise _refused(f"{what} contains a NUL character (\\u0000), which Postgres cannot store", param=param)
    if not value.isascii() and _bad_unicode(value):
        raise _refused(f"{what} contains an unpaired surrogate, which is not valid Unicode text", param=param)


def _bad_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _tags(limits: EdgeLimits, tags: tuple[str, ...]) -> None:
    if not tags:
        return
    if len(tags) > limits.max_tags:
        raise _refused(
            f"the call has {len(tags):,} distinct tags (metadata.tags, tags, x-litellm-tags and the key's); "
            f"the limit is {limits.max_tags:,} (TALLY_MAX_TAGS)", param="metadata.tags")
    cap = limits.max_tag_chars
    for tag in tags:
        if len(tag) > cap:
            raise _refused(f"tag {tag[:40]!r}... is {len(tag):,} characters; the limit is {cap:,} (TALLY_MAX_TAG_CHARS)",
                           param="metadata.tags")
        if _NUL in tag or not tag.isascii():  # the message is formatted only for a tag that may fail
            _text(tag, f"tag {tag[:40]!r}", "metadata.tags")


def _metadata(limits: EdgeLimits, attribution: Attribution) -> None:
    size = 0
    for where, value in (("metadata", attribution.metadata), ("metadata.spend_logs_metadata", attribution.spend_logs_metadata)):
        if not value:
            continue
        try:
            raw = orjson.dumps(value, default=_json_default)
        except orjson.JSONEncodeError as exc:  # an unpaired surrogate, or nesting past orjson's 254 levels
            _scan(limits, value, where)
            raise _refused(f"{where} cannot be recorded: {exc}", param=where) from exc
        size += len(raw)
        if size > limits.max_metadata_bytes:
            raise _refused(f"metadata is {size:,} bytes as recorded (spend_logs_metadata included); "
                           f"the limit is {limits.max_metadata_bytes:,} (TALLY_MAX_METADATA_BYTES)", param=where)
        # Each level of nesting opens a bracket: with fewer brackets than the limit, no walk.
        deep = raw.count(b"{") + raw.count(b"[") > limits.max_metadata_depth
        if deep or _ESCAPED_NUL in raw:  # the escape may also be a caller's literal backslash-u0000
            _scan(limits, value, where)


def _scan(limits: EdgeLimits, root: Mapping[str, Any], where: str) -> None:
    """Walk the value (without recursion: it may be nested a thousand levels) and raise on the first
    key or string holding a NUL or an unpaired surrogate, or on nesting past the limit."""
    stack: list[tuple[Any, str, int]] = [(root, where, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping):
            if depth > limits.max_metadata_depth:
                _too_deep(limits, path, where)
            for key, item in value.items():
                child = f"{path}.{_shown(key)}"
                if isinstance(key, str):
                    _text(key, f"the key {child}", where)
                stack.append((item, child, depth + 1))
        elif isinstance(value, (list, tuple)):
            if depth > limits.max_metadata_depth:
                _too_deep(limits, path, where)
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _text(value, path, where)


def _too_deep(limits: EdgeLimits, path: str, where: str) -> None:
    raise _refused(f"{path} is nested more than {limits.max_metadata_depth} levels deep; "
                   f"the limit is {limits.max_metadata_depth} (TALLY_MAX_METADATA_DEPTH)", param=where)


def _shown(key: Any) -> str:
    """A key as it appears in a message: short, and printable whatever it holds."""
    text = str(key)
    if len(text) > 40:
        text = text[:40] + "..."
    return text if text.isprintable() and text.isascii() else ascii(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # a key's metadata may hold one: as record.py writes it
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_json_value(limits: EdgeLimits, value: Mapping[str, Any], where: str) -> None:
    """A JSON object some other route stores (the admin routes): NUL, unpaired surrogates and
    nesting past max_metadata_depth refused with a 400, as for a call's metadata."""
    _scan(limits, value, where)


def check_identifier(limits: EdgeLimits, value: str, what: str) -> None:
    _identifier(value, what, limits.max_identifier_chars)
