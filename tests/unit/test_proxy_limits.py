"""The edge limits: each one passes at its value and refuses one over with a message naming it; text
Postgres cannot store is refused; and the largest event the limits allow fits the event budget."""

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from services.proxy.auth.keys import CallerIdentity
from services.proxy.calls.attribution import attribute
from services.proxy.errors import InvalidRequest
from services.proxy.calls.limits import (
    MAX_ERROR_MESSAGE_CHARS, MAX_RESPONSE_MODEL_CHARS, USAGE_EVENT_MAX_BYTES, EdgeLimits, check, edge_limits_from, recordable,
    worst_case_event_bytes,
)
from services.proxy.routing.router import CHAT, IMAGE, build_target
from services.proxy.settings import proxy_settings_from_env
from services.proxy.usage_log.record import encode_usage, usage_event, with_fields
from shared.config import PRICE_FIELDS, parse_config
from shared.errors import error_body
from shared.events import TokenUsage, decode

MASTER = CallerIdentity.master()
LIMITS = EdgeLimits()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
# Control characters orjson writes as \u00XX (6 bytes each); \b \t \n \f \r have 2-byte escapes.
SIX_BYTE_CHARS = [chr(c) for c in range(1, 32) if chr(c) not in "\b\t\n\f\r"]


def checked(body: dict[str, Any], headers: dict[str, str] | None = None, caller: CallerIdentity = MASTER,
            limits: EdgeLimits = LIMITS, call_type: str = CHAT) -> None:
    check(limits, call_type, body, attribute(body, headers or {}, caller), caller)


def refusal(body: dict[str, Any], headers: dict[str, str] | None = None, caller: CallerIdentity = MASTER,
            limits: EdgeLimits = LIMITS, call_type: str = CHAT) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as error:
        checked(body, headers, caller, limits, call_type)
    shown = error_body(error.value.message, error.value.status, type=error.value.type, code=error.value.code, param=error.value.param)
    assert (error.value.status, shown["error"]["type"]) == (400, "invalid_request_error")
    return error.value


def nested(depth: int) -> dict[str, Any]:
    """Metadata holding `depth` levels of objects, itself the first."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# -- metadata size ----------------------------------------------------------------------------------

def test_metadata_at_its_limit_passes_and_one_byte_over_is_refused():
    """{"p": "x" * 92} records as exactly 100 bytes: passes at 100, refused at 99 with the numbers."""
    body = {"metadata": {"p": "x" * 92}}
    assert len(orjson.dumps(body["metadata"])) == 100
    checked(body, limits=EdgeLimits(max_metadata_bytes=100))
    error = refusal(body, limits=EdgeLimits(max_metadata_bytes=99))
    assert error.message == ("metadata is 100 bytes as recorded (spend_logs_metadata included); "
                             "the limit is 99 (TALLY_MAX_METADATA_BYTES)")
    assert error.param == "metadata"


def test_the_issue_metadata_of_300_000_quotes_is_refused():
    """The issue's call: 300,000 double quotes record as 600,008 escaped bytes, over 65,536."""
    error = refusal({"user": "u", "metadata": {"p": '"' * 300_000}})
    assert error.message == ("metadata is 600,008 bytes as recorded (spend_logs_metadata included); "
                             "the limit is 65,536 (TALLY_MAX_METADATA_BYTES)")


def test_spend_logs_metadata_counts_toward_the_same_limit():
    """metadata (8 bytes) + spend_logs_metadata from the header (92 bytes) = 100: 99 refuses, naming spend_logs_metadata."""
    body = {"metadata": {"p": ""}}
    headers = {"x-litellm-spend-logs-metadata": orjson.dumps({"q": "y" * 84}).decode()}
    checked(body, headers, limits=EdgeLimits(max_metadata_bytes=100))
    error = refusal(body, headers, limits=EdgeLimits(max_metadata_bytes=99))
    assert error.message.startswith("metadata is 100 bytes as recorded")
    assert error.param == "metadata.spend_logs_metadata"


def test_the_keys_spend_logs_metadata_counts_too():
    """A key's spend_logs_metadata is recorded with each call, so it counts."""
    key = CallerIdentity.from_state("h", {"metadata": {"spend_logs_metadata": {"q": "y" * 200}}})
    assert refusal({}, caller=key, limits=EdgeLimits(max_metadata_bytes=100)).message.startswith("metadata is 208 bytes")


# -- metadata depth ---------------------------------------------------------------------------------

def test_metadata_nested_to_its_limit_passes_and_one_deeper_is_refused():
    """32 levels pass; 33 are refused with the path and the setting."""
    checked({"metadata": nested(32)})
    error = refusal({"metadata": nested(33)})
    assert error.message == ("metadata" + ".a" * 32 + " is nested more than 32 levels deep; "
                             "the limit is 32 (TALLY_MAX_METADATA_DEPTH)")
    assert error.param == "metadata"


def test_metadata_too_deep_for_the_encoder_gets_the_depth_message():
    """300 levels (orjson writes at most 254) are refused as too deep, not with an encoder error."""
    error = refusal({"metadata": nested(300)})
    assert error.message.endswith("is nested more than 32 levels deep; the limit is 32 (TALLY_MAX_METADATA_DEPTH)")


def test_brackets_inside_strings_do_not_count_as_depth():
    """A string full of braces is text, not nesting."""
    checked({"metadata": {"p": "{[" * 100}})


# -- tags -------------------------------------------------------------------------------------------

def test_tag_count_at_its_limit_passes_and_one_more_is_refused():
    """64 distinct tags pass; the 65th (here from the key) is refused, naming every source."""
    tags = [f"t{i}" for i in range(64)]
    checked({"metadata": {"tags": tags}})
    key = CallerIdentity.from_state("h", {"metadata": {"tags": ["from-key"]}})
    error = refusal({"metadata": {"tags": tags}}, caller=key)
    assert error.message == ("the call has 65 distinct tags (metadata.tags, tags, x-litellm-tags and the key's); "
                             "the limit is 64 (TALLY_MAX_TAGS)")
    assert error.param == "metadata.tags"


def test_eighty_thousand_tags_are_refused():
    """The issue's 80,000 distinct tags."""
    error = refusal({"tags": [f"t{i}" for i in range(80_000)]})
    assert error.message.startswith("the call has 80,000 distinct tags")


def test_duplicate_tags_count_once():
    """Tags are counted as recorded: once each."""
    checked({"metadata": {"tags": ["same"] * 1000}})


def test_tag_length_at_its_limit_passes_and_one_over_is_refused():
    """A 256-character tag passes; 257 is refused."""
    checked({"metadata": {"tags": ["x" * 256]}})
    error = refusal({"metadata": {"tags": ["x" * 257]}})
    assert error.message == f"tag {'x' * 40!r}... is 257 characters; the limit is 256 (TALLY_MAX_TAG_CHARS)"


@pytest.mark.parametrize("tags", [[1], ["a", None], [{"a": 1}], "a,b"])
def test_non_string_tags_are_refused(tags):
    """Tags must be a list of strings."""
    error = refusal({"metadata": {"tags": tags}})
    assert (error.message, error.param) == ("metadata.tags must be a list of strings", "metadata.tags")


# -- identifiers ------------------------------------------------------------------------------------

def test_user_at_its_limit_passes_and_one_over_is_refused():
    """user of 1,024 characters passes; 1,025 is refused."""
    checked({"user": "u" * 1024})
    error = refusal({"user": "u" * 1025})
    assert (error.message, error.param) == ("user is 1,025 characters; the limit is 1,024 (TALLY_MAX_IDENTIFIER_CHARS)", "user")


@pytest.mark.parametrize("body, headers", [
    ({"litellm_session_id": "s" * 21}, {}),
    ({"metadata": {"session_id": "s" * 21}}, {}),
    ({}, {"x-litellm-session-id": "s" * 21}),
])
def test_session_id_is_an_identifier_from_every_source(body, headers):
    """The session id is limited whether it comes from the body, its metadata or the header."""
    checked(body, headers, limits=EdgeLimits(max_identifier_chars=21))
    error = refusal(body, headers, limits=EdgeLimits(max_identifier_chars=20))
    assert error.message == "session_id is 21 characters; the limit is 20 (TALLY_MAX_IDENTIFIER_CHARS)"


def test_the_keys_identifiers_are_limited_too():
    """A key whose admin-set key_alias is over the limit cannot record a call; the message says whose field."""
    key = CallerIdentity.from_state("h", {"key_alias": "k" * 11})
    error = refusal({}, caller=key, limits=EdgeLimits(max_identifier_chars=10))
    assert (error.message, error.param) == ("the key's key_alias is 11 characters; the limit is 10 (TALLY_MAX_IDENTIFIER_CHARS)", None)


def test_image_size_and_quality_are_identifiers_and_n_is_bounded():
    """An image call's size and quality are recorded in its usage: strings within the limit; n is 1..128."""
    checked({"size": "1024x1024", "quality": "hd", "n": 2}, call_type=IMAGE)
    assert refusal({"size": "s" * 21}, limits=EdgeLimits(max_identifier_chars=20), call_type=IMAGE).message == (
        "size is 21 characters; the limit is 20 (TALLY_MAX_IDENTIFIER_CHARS)")
    assert refusal({"quality": 5}, call_type=IMAGE).message == "quality must be a string"
    for n in (0, 129, "2", 1.5, True):
        assert refusal({"n": n}, call_type=IMAGE).message == "n must be a whole number from 1 to 128"


# -- text Postgres cannot store ---------------------------------------------------------------------

@pytest.mark.parametrize("body, headers, message, param", [
    ({"user": "a\x00b"}, {}, "user contains a NUL character (\\u0000), which Postgres cannot store", "user"),
    ({"metadata": {"tags": ["a\x00"]}}, {}, "tag 'a\\x00' contains a NUL character (\\u0000), which Postgres cannot store", "metadata.tags"),
    ({"metadata": {"a": [1, {"b": "x\x00"}]}}, {}, "metadata.a[1].b contains a NUL character (\\u0000), which Postgres cannot store", "metadata"),
    ({"metadata": {"a": {"k\x00": 1}}}, {}, "the key metadata.a.'k\\x00' contains a NUL character (\\u0000), which Postgres cannot store", "metadata"),
    ({"metadata": {"spend_logs_metadata": {"s": "\x00"}}}, {},
     "metadata.spend_logs_metadata.s contains a NUL character (\\u0000), which Postgres cannot store", "metadata.spend_logs_metadata"),
    ({"litellm_session_id": "\x00"}, {}, "session_id contains a NUL character (\\u0000), which Postgres cannot store", "session_id"),
])
def test_nul_anywhere_recorded_is_refused(body, headers, message, param):
    """A NUL in any recorded string, at any depth, key or value, is a 400 naming where."""
    error = refusal(body, headers)
    assert (error.message, error.param) == (message, param)


def test_the_issue_call_is_refused_for_its_user():
    """The issue's exact call: user "a\\u0000b" with 300,000 quotes in metadata; refused, the user first."""
    body = orjson.loads(b'{"model": "llama3", "mock_response": "x", "messages": [{"role": "user", "content": "hi"}], '
                        b'"user": "a\\u0000b", "metadata": {"p": "' + b'\\"' * 300_000 + b'"}}')
    assert refusal(body).param == "user"


def test_a_literal_backslash_u0000_is_ordinary_text():
    """The six characters \\u0000 written by a caller are not a NUL and pass."""
    checked({"user": "\\u0000", "metadata": {"p": "\\u0000", "tags": ["\\u0000"]}})


@pytest.mark.parametrize("headers, message", [
    ({"x-litellm-tags": "ok, a\udcffb"}, "tag 'a\\udcffb' contains an unpaired surrogate, which is not valid Unicode text"),
    ({"x-litellm-session-id": "s\udcff"}, "session_id contains an unpaired surrogate, which is not valid Unicode text"),
])
def test_header_bytes_that_are_not_utf8_are_refused(headers, message):
    """aiohttp turns a header's invalid UTF-8 into lone surrogates; no recorded string may hold one."""
    assert refusal({}, headers).message == message


def test_a_keys_metadata_with_a_surrogate_is_refused():
    """orjson cannot encode a lone surrogate: the walk names where it is."""
    key = CallerIdentity.from_state("h", {"metadata": {"spend_logs_metadata": {"s": "\ud800"}}})
    assert refusal({}, caller=key).message == (
        "metadata.spend_logs_metadata.s contains an unpaired surrogate, which is not valid Unicode text")


def test_orjson_refuses_surrogates_in_the_body():
    """The body parser already refuses an unpaired surrogate escape: no body string can hold one."""
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b'{"user": "\\ud800"}')


def test_recordable_repairs_upstream_text():
    """Upstream text is cut to its limit and NUL / surrogates become U+FFFD (the call is already answered)."""
    assert recordable("gpt\x00-4o", 256) == "gpt\ufffd-4o"
    assert recordable("m\udcff", 256) == "m\ufffd"
    assert recordable("x" * 300, 256) == "x" * 256
    assert recordable("gpt-4o", 256) == "gpt-4o"
    assert recordable(None, 256) is None


# -- settings ---------------------------------------------------------------------------------------

def test_defaults():
    """The documented defaults."""
    assert (LIMITS.max_metadata_bytes, LIMITS.max_metadata_depth, LIMITS.max_tags, LIMITS.max_tag_chars,
            LIMITS.max_identifier_chars) == (65_536, 32, 64, 256, 1_024)


def test_environment_wins_over_general_settings_which_wins_over_defaults():
    """TALLY_MAX_TAGS beats general_settings.max_tags; general_settings.max_tag_chars beats the default."""
    limits = edge_limits_from({"TALLY_MAX_TAGS": "10"}, {"max_tags": 20, "max_tag_chars": "100"})
    assert (limits.max_tags, limits.max_tag_chars, limits.max_metadata_bytes) == (10, 100, 65_536)


def test_proxy_settings_read_the_limits_from_the_environment_and_the_config_file(tmp_path):
    """proxy_settings_from_env carries general_settings.max_tags and TALLY_MAX_TAG_CHARS into edge_limits."""
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\ngeneral_settings:\n  max_tags: 8\n")
    settings = proxy_settings_from_env({"TALLY_CONFIG": str(config), "TALLY_MAX_TAG_CHARS": "40"})
    assert settings.edge_limits == EdgeLimits(max_tags=8, max_tag_chars=40)


def test_bad_values_are_refused_with_their_name():
    """A limit that is not a whole number >= 1 stops start-up, naming the setting."""
    with pytest.raises(ValueError, match="^TALLY_MAX_TAGS must be a whole number, got 'many'$"):
        edge_limits_from({"TALLY_MAX_TAGS": "many"}, {})
    with pytest.raises(ValueError, match="^general_settings.max_tags must be a whole number, got 'x'$"):
        edge_limits_from({}, {"max_tags": "x"})
    with pytest.raises(ValueError, match="^TALLY_MAX_TAG_CHARS must be a whole number of at least 1, got 0$"):
        EdgeLimits(max_tag_chars=0)


def test_limits_that_would_allow_an_oversized_event_are_refused():
    """Limits are refused at start-up when the event they allow could exceed the budget."""
    with pytest.raises(ValueError, match="allow a usage event of 1,185,780 bytes, over the budget of 524,288"):
        EdgeLimits(max_metadata_bytes=1_000_000)


# -- the size proof ---------------------------------------------------------------------------------

def worst_text(chars: int, salt: int = 0) -> str:
    """`chars` characters that each encode to 6 bytes, distinct for each salt."""
    prefix = SIX_BYTE_CHARS[salt % len(SIX_BYTE_CHARS)] + SIX_BYTE_CHARS[salt // len(SIX_BYTE_CHARS) % len(SIX_BYTE_CHARS)]
    return (prefix + SIX_BYTE_CHARS[0] * chars)[:chars]


def largest_event_bytes(limits: EdgeLimits) -> int:
    """Build the largest usage event `limits` let through and return its encoded size."""
    ident = limits.max_identifier_chars
    key = CallerIdentity.from_state("0" * 64, {
        "key_alias": worst_text(ident), "user_id": worst_text(ident), "team_id": worst_text(ident),
        "organization_id": worst_text(ident),
    })
    # metadata + spend_logs_metadata: each {"p":"..."} is 8 bytes plus 6 per character.
    room = (limits.max_metadata_bytes - 16) // 6
    body = {
        "user": worst_text(ident), "litellm_session_id": worst_text(ident, 1),
        "metadata": {"p": worst_text(room // 2), "tags": [worst_text(limits.max_tag_chars, i) for i in range(limits.max_tags)],
                     "spend_logs_metadata": {"q": worst_text(room - room // 2)}},
        "size": worst_text(ident), "quality": worst_text(ident),
    }
    attribution = attribute(body, {}, key)
    check(limits, IMAGE, body, attribution, key)  # the limits let it through
    assert len(orjson.dumps(attribution.metadata)) + len(orjson.dumps(attribution.spend_logs_metadata)) > limits.max_metadata_bytes - 6
    assert len(attribution.request_tags) == limits.max_tags
    name = "m" * 256  # generous config-file names
    prices = {field: 1e-06 for field in PRICE_FIELDS}
    config = parse_config({"model_list": [{"model_name": name, "litellm_params": {
        "model": f"openai/{name}", "api_base": f"http://{name[:60]}.example/{name}", **prices},
        "model_info": {"base_model": f"openai/{name}"}}]}, {})
    target = build_target(config.model_list[0], {})
    usage = TokenUsage(prompt_tokens=2**31 - 1, completion_tokens=2**31 - 1, cache_read_input_tokens=2**31 - 1,
                       cache_creation_input_tokens=2**31 - 1, reasoning_tokens=2**31 - 1, image_count=2**31 - 1,
                       image_size=body["size"], image_quality=body["quality"])
    event = usage_event(
        request_id="f" * 36, call_type=IMAGE, caller=key, attribution=attribution, target=target, start_time=NOW, end_time=NOW,
        usage=usage, stream=True, completion_start_time=NOW, response_model=worst_text(10 * MAX_RESPONSE_MODEL_CHARS),
        error_status=599, error_message=worst_text(10 * MAX_ERROR_MESSAGE_CHARS), soft_budget_exceeded=True,
        requester_ip_address="ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        metadata_extra={"usage_estimated": True, "client_disconnected": True})
    event = with_fields(event, quoted_cost=Decimal("12345678.123456789012345678"), quoted_catalog_version="v" * 64)
    raw = encode_usage(event)
    assert decode(raw).request_tags == list(attribution.request_tags)  # a real, decodable event
    return len(raw)


@pytest.mark.parametrize("limits", [
    LIMITS,
    EdgeLimits(max_metadata_bytes=300_000, max_tags=16, max_tag_chars=128, max_identifier_chars=256),
], ids=["defaults", "more-metadata"])
def test_the_largest_event_the_limits_allow_fits_the_budget(limits):
    """Every limited field at its maximum, every character a 6-byte escape: the event is within
    worst_case_event_bytes, which is within USAGE_EVENT_MAX_BYTES (512 KiB, half the broker's 1 MiB)."""
    size = largest_event_bytes(limits)
    assert size <= worst_case_event_bytes(limits) <= USAGE_EVENT_MAX_BYTES
    assert size > worst_case_event_bytes(limits) - 30 * 1024  # the bound is tight: the proof used the limits fully


def test_the_default_bound():
    """With the defaults an event is at most 251,316 bytes: under half the 512 KiB budget."""
    assert worst_case_event_bytes(LIMITS) == 251_316
    assert USAGE_EVENT_MAX_BYTES == 524_288


def test_seed_page_examples_are_far_inside_the_defaults():
    """The seed page's tags and spend_logs_metadata use under a quarter of every limit."""
    body = {"user": "palantir", "metadata": {
        "tags": ["jobID:214590dsff09fds", "taskName:run_page_classification"],
        "spend_logs_metadata": {"hello": "world", "job": "nightly-report"}}}
    attribution = attribute(body, {"x-litellm-tags": "team:data, env:prod"}, MASTER)
    check(LIMITS, CHAT, body, attribution, MASTER)
    assert len(attribution.request_tags) * 4 < LIMITS.max_tags
    assert max(map(len, attribution.request_tags)) * 4 < LIMITS.max_tag_chars
    assert len(orjson.dumps(attribution.spend_logs_metadata)) * 4 < LIMITS.max_metadata_bytes
