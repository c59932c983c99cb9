"""Requests generated from the proxy's and the reports service's OpenAPI documents (hypothesis;
docs/fuzz.md) against a real stack: no 5xx, only documented statuses, OpenAI's error shape on every
error, the services healthy afterwards, and a spend log row for exactly the LLM calls that were
answered 2xx — none for a rejected one. FUZZ_EXAMPLES sets the requests per service (default 600)."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.keys import hash_key
from shared.openapi import load_document
from tests.fixtures.openapi import PROXY_DOCUMENT, REPORTS_DOCUMENT, Generator, Operation, Request, operations, requests
from tests.fixtures.polling import eventually
from tests.fixtures.stack import TallyStack

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
MODELS = ("llama3", "gpt-4o-mini", "text-embedding-3-small", "dall-e-3")
LLM_OPERATIONS = ("chat_completions", "v1_chat_completions", "azure_chat_completions", "completions", "v1_completions",
                  "embeddings", "v1_embeddings", "image_generations", "v1_image_generations", "messages", "v1_messages",
                  "responses", "v1_responses")
# Passed to the upstream untouched: breaking them would test the fake upstream, not Tally.
PASSTHROUGH = frozenset({"n", "size", "temperature", "max_tokens", "stream_options"})
# Known bug (reported, not ours to fix here): aiohttp's static route answers a missing asset with a
# bare 404 (empty body), not OpenAI's error shape.
BARE_404 = frozenset({"usage_page_asset"})
# The same requests on every run unless FUZZ_RANDOM=1 asks for new ones: a CI run must not fail on
# what an earlier run never tried (explore with FUZZ_RANDOM=1 and FUZZ_EXAMPLES=20000).
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                         derandomize=os.environ.get("FUZZ_RANDOM") != "1", suppress_health_check=list(HealthCheck))


@dataclass(repr=False)
class Fuzz:
    stack: TallyStack
    keys: dict[str, str]  # name -> raw key
    team_id: str
    answered: list[str] = field(default_factory=list)  # x-litellm-call-id of every 2xx LLM call
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)  # operation -> status -> count

    def __repr__(self) -> str:
        return f"Fuzz({len(self.answered)} LLM calls answered)"

    def auth(self) -> st.SearchStrategy[dict[str, str]]:
        bearer = [{"Authorization": f"Bearer {key}"} for key in self.keys.values()]
        odd = [{}, {"Authorization": "Bearer sk-never-issued-000000"}, {"Authorization": "Bearer"},
               {"Authorization": self.keys["master"]}, {"api-key": self.keys["plain"]},
               {"x-litellm-api-key": self.keys["reader"]}, {"Authorization": "Basic Zm9vOmJhcg=="}]
        return st.sampled_from(bearer * 3 + odd)


class Session(dict):
    """Per-service state built on the first example: operations, strategies, the HTTP client."""

    def __repr__(self) -> str:
        return "Session(...)"


def _key(client: httpx.Client, master: str, body: dict) -> str:
    response = client.post("/key/generate", json=body, headers={"Authorization": f"Bearer {master}"})
    assert response.status_code == 200, response.text
    return response.json()["key"]


@pytest.fixture(scope="module")
def fuzz(tally_stack: TallyStack) -> Fuzz:
    """Keys of every kind the fuzz calls with, known to the proxy and to the reports service."""
    master = tally_stack.master_key
    with httpx.Client(base_url=tally_stack.url("proxy"), timeout=30) as client:
        team = client.post("/team/new", json={"team_alias": "fuzz"}, headers={"Authorization": f"Bearer {master}"})
        assert team.status_code == 200, team.text
        team_id = team.json()["team_id"]
        keys = {
            "master": master,
            "plain": _key(client, master, {"user_id": "fuzz-user", "team_id": team_id}),
            "reader": _key(client, master, {"permissions": {"get_spend_routes": True}}),
            "tiny_budget": _key(client, master, {"max_budget": 0.00001}),  # spent after two llama3 calls
            "rate_limited": _key(client, master, {"rpm_limit": 2}),
            "one_model": _key(client, master, {"models": ["gpt-4o-mini"]}),
        }

    def known() -> bool:
        with psycopg.connect(tally_stack.common.database_url) as conn:
            hashes = [hash_key(k) for name, k in keys.items() if name != "master"]
            return conn.execute('SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)',
                                (hashes,)).fetchone()[0] == len(hashes)

    eventually(known, 60, "the ledger to write the fuzz keys")  # reports caches an unknown key for seconds
    return Fuzz(tally_stack, keys, team_id)


def _generator(document: dict, fuzz: Fuzz) -> Generator:
    names = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
    hints = {
        "model": st.sampled_from(MODELS) | names,
        "key": st.sampled_from(sorted(fuzz.keys.values())) | names,
        "api_key": st.sampled_from(sorted(fuzz.keys.values())) | st.sampled_from([hash_key(k) for k in fuzz.keys.values()]) | names,
        "team_id": st.just(fuzz.team_id) | names,
        "team_ids": st.just(fuzz.team_id) | names,
        "user_id": st.just("fuzz-user") | names,
        "end_user_id": names,
        "mock_response": st.text(max_size=20),
    }
    return Generator(document, hints)


def _send(client: httpx.Client, request: Request) -> httpx.Response:
    return client.request(request.method, request.path, params=request.params, headers=request.headers,
                          content=request.body)


def _check(fuzz: Fuzz, op: Operation, request: Request, response: httpx.Response) -> None:
    status = response.status_code
    counts = fuzz.statuses.setdefault(op.id, {})
    counts[status] = counts.get(status, 0) + 1
    where = f"{request.describe()} -> {status} {response.text[:300]}"
    assert status < 500, where
    assert str(status) in op.spec["responses"], f"undocumented status: {where}"
    if status >= 400 and not (op.id in BARE_404 and status == 404):
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, where
        assert isinstance(error["message"], str) and isinstance(error["type"], str), where
    if op.id in LLM_OPERATIONS and status < 300:
        call_id = response.headers.get("x-litellm-call-id")
        assert call_id, f"a 2xx LLM answer without x-litellm-call-id: {where}"
        fuzz.answered.append(call_id)


def _run(fuzz: Fuzz, service: str, document_path, data: st.DataObject, cache: dict) -> None:  # noqa: ANN001
    if not cache:
        document = load_document(document_path)
        gen = _generator(document, fuzz)
        cache["ops"] = {op.id: op for op in operations(document)}
        cache["strategies"] = {op.id: requests(gen, op, fuzz.auth(), PASSTHROUGH if op.id in LLM_OPERATIONS else frozenset())
                               for op in cache["ops"].values()}
        cache["client"] = httpx.Client(base_url=fuzz.stack.url(service), timeout=60)
    op = cache["ops"][data.draw(st.sampled_from(sorted(cache["ops"])), label="operation")]
    request = data.draw(cache["strategies"][op.id], label="request")
    _check(fuzz, op, request, _send(cache["client"], request))


@pytest.fixture(scope="module")
def proxy_cache() -> Iterator[dict]:
    cache = Session()
    yield cache
    if "client" in cache:
        cache["client"].close()


@pytest.fixture(scope="module")
def reports_cache() -> Iterator[dict]:
    cache = Session()
    yield cache
    if "client" in cache:
        cache["client"].close()


@FUZZ_SETTINGS
@given(data=st.data())
def test_proxy_answers_generated_requests_without_5xx(fuzz: Fuzz, proxy_cache: dict, data: st.DataObject) -> None:
    """Requests generated from the proxy's document get a documented, non-5xx status; errors in OpenAI's shape."""
    _run(fuzz, "proxy", PROXY_DOCUMENT, data, proxy_cache)


@FUZZ_SETTINGS
@given(data=st.data())
def test_reports_answers_generated_requests_without_5xx(fuzz: Fuzz, reports_cache: dict, data: st.DataObject) -> None:
    """Requests generated from the reports service's document get a documented, non-5xx status."""
    _run(fuzz, "reports", REPORTS_DOCUMENT, data, reports_cache)


def test_every_service_is_healthy_after_the_fuzz(fuzz: Fuzz) -> None:
    """No process died and every /health answers 200 after the generated requests."""
    for name, service in fuzz.stack.services.items():
        assert service.process is not None and service.process.poll() is None, f"{name} exited:\n{fuzz.stack.tail(name)}"
        path = "/v1/models" if name == "upstream" else "/health"
        assert httpx.get(service.url + path, timeout=10).status_code == 200, name


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_spend_logs_hold_exactly_the_answered_calls(fuzz: Fuzz) -> None:
    """After the fuzz, the spend log rows are exactly the 2xx LLM calls: none for a rejected request."""
    assert fuzz.answered, "the fuzz tests above answered no LLM call; run the module, not this test alone"
    proxy = fuzz.stack.url("proxy")

    def emitted() -> float | None:
        text = httpx.get(proxy + "/metrics", timeout=10).text
        idle = _metric(text, "proxy_usage_queue_length") == 0 and _metric(text, "proxy_spool_pending") == 0
        return _metric(text, "proxy_usage_events_sent_total") if idle else None

    def rows() -> set[str]:
        with psycopg.connect(fuzz.stack.common.database_url) as conn:
            return {r[0] for r in conn.execute('SELECT request_id FROM "LiteLLM_SpendLogs"')}

    def settled() -> set[str] | None:
        sent = emitted()
        found = rows()
        return found if sent is not None and len(found) >= sent and set(fuzz.answered) <= found else None

    for op_id, counts in sorted(fuzz.statuses.items()):
        print(f"{op_id:32} {dict(sorted(counts.items()))}")  # shown with -s: how deep the requests reached
    found = eventually(settled, 120, "every emitted usage event to be a spend log row", interval=0.5)
    answered = set(fuzz.answered)
    assert len(answered) == len(fuzz.answered), "a call id was answered twice"
    extra = found - answered
    assert extra == set(), f"{len(extra)} spend log rows for requests that were not answered 2xx, e.g. {sorted(extra)[:5]}"
    assert len(found) == len(answered)
