"""The request's user, tags and spend-log metadata are read from body, headers and the key."""

import pytest

from services.proxy.auth.keys import CallerIdentity, KeyTable
from services.proxy.calls.attribution import attribute, upstream_body
from services.proxy.errors import InvalidRequest
from services.proxy.routing.router import EMBEDDING, IMAGE, TEXT
from shared.events import EntityChanged

MASTER = CallerIdentity.master()


def test_seed_request_attribution():
    """The seed page's request: user is the end user, metadata.tags are the request tags."""
    body = {"model": "llama3", "messages": [], "user": "palantir",
            "metadata": {"tags": ["jobID:214590dsff09fds", "taskName:run_page_classification"]}}
    attribution = attribute(body, {}, MASTER)
    assert attribution.end_user == "palantir"
    assert attribution.request_tags == ("jobID:214590dsff09fds", "taskName:run_page_classification")


def test_spend_logs_metadata_merges_key_body_and_header_in_that_order():
    """Key metadata < body metadata.spend_logs_metadata < the x-litellm-spend-logs-metadata header."""
    key = CallerIdentity.from_state("h", {"metadata": {"tags": ["team-x"], "spend_logs_metadata": {"a": 1, "b": 1, "c": 1}}})
    body = {"metadata": {"spend_logs_metadata": {"b": 2, "c": 2}, "trace": "t1"}}
    attribution = attribute(body, {"x-litellm-spend-logs-metadata": '{"c": 3}'}, key)
    assert attribution.spend_logs_metadata == {"a": 1, "b": 2, "c": 3}
    assert attribution.request_tags == ("team-x",)
    assert attribution.metadata == {"trace": "t1"}


def test_the_keys_team_alias_is_carried_and_a_callers_own_is_dropped():
    """The team's alias from the key table goes into the event's metadata; a caller cannot write that name."""
    table = KeyTable()
    table.apply(EntityChanged(entity_type="team", entity_id="t1", state={"team_alias": "Search"}))
    table.apply(EntityChanged(entity_type="key", entity_id="h", state={"team_id": "t1"}))
    spoofed = {"metadata": {"user_api_key_team_alias": "Billing", "trace": "x"}}
    assert attribute(spoofed, {}, table.get("h")).metadata == {"trace": "x", "user_api_key_team_alias": "Search"}
    assert attribute(spoofed, {}, MASTER).metadata == {"trace": "x"}


def test_tags_from_body_header_and_key_are_kept_once_each_in_order():
    """Request tags first, then header tags, then the key's tags; duplicates dropped."""
    key = CallerIdentity.from_state("h", {"metadata": {"tags": ["k", "a"]}})
    attribution = attribute({"metadata": {"tags": ["a", "b"]}}, {"x-litellm-tags": "c, a"}, key)
    assert attribution.request_tags == ("a", "b", "c", "k")


@pytest.mark.parametrize("body, param", [
    ({"user": 5}, "user"),
    ({"metadata": "x"}, "metadata"),
    ({"metadata": {"tags": "a,b"}}, "metadata.tags"),
    ({"metadata": {"spend_logs_metadata": [1]}}, "metadata.spend_logs_metadata"),
    ({"mock_response": {"x": 1}}, "mock_response"),
])
def test_wrong_types_are_a_400_naming_the_field(body, param):
    """A field of the wrong type is refused before any upstream call."""
    with pytest.raises(InvalidRequest) as error:
        attribute(body, {}, MASTER)
    assert error.value.param == param


def test_bad_spend_logs_metadata_header_is_a_400():
    """The header must hold a JSON object."""
    with pytest.raises(InvalidRequest):
        attribute({}, {"x-litellm-spend-logs-metadata": "not json"}, MASTER)


def test_proxy_fields_are_stripped_and_unknown_fields_forwarded():
    """metadata and mock_response stay in the proxy; x_fake and provider extras go upstream."""
    body = {"model": "m", "messages": [], "user": "u", "metadata": {"tags": []}, "mock_response": "hi", "x_fake": {"status": 429}, "seed": 1}
    assert upstream_body(body) == {"model": "m", "messages": [], "user": "u", "x_fake": {"status": 429}, "seed": 1}


@pytest.mark.parametrize("call_type", [EMBEDDING, IMAGE])
def test_embeddings_and_images_go_upstream_without_stream(call_type):
    """Embeddings and images have no stream: stream and stream_options are dropped, so the call is plain."""
    body = {"model": "m", "input": "x", "stream": True, "stream_options": {"include_usage": True}, "metadata": {}}
    assert upstream_body(body, call_type) == {"model": "m", "input": "x"}
    assert upstream_body(body, TEXT) == {"model": "m", "input": "x", "stream": True, "stream_options": {"include_usage": True}}


def test_mock_response_and_session_are_read():
    """mock_response and the session id are picked up."""
    attribution = attribute({"mock_response": "hello", "litellm_session_id": "s1"}, {}, MASTER)
    assert attribution.mock_response == "hello"
    assert attribution.session_id == "s1"
