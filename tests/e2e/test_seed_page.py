"""Every example of the seed page (cost_tracking.md) works against a running Tally: the openai SDK,
curl, LangChain, the spend report calls and script, spend-route keys, reset, Azure base_model and
custom prices. Each service runs as its own process on real Kafka and Postgres."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import psycopg
import pytest
import requests

from shared.master_key import MASTER_KEY_ALIAS
from tests.fixtures.polling import eventually
from tests.fixtures.stack import DEFAULT_PLAN, TallyStack, running_stack

pytestmark = pytest.mark.e2e
TAGS = ["jobID:214590dsff09fds", "taskName:run_page_classification"]
# groq/llama3-8b-8192: 5e-08 per input and 8e-08 per output token; the fake upstream reports
# 20 prompt and 80 completion tokens: 20 * 5e-08 + 80 * 8e-08 = 0.0000074.
LLAMA3_COST = Decimal("0.0000074")
# The seed shows sha256("sk-1234") (88dc28..); master-key calls are logged under LiteLLM's label instead
# (docs/security.md): a guessable key's hash must not reach spend readers.
MASTER_LABEL = MASTER_KEY_ALIAS


@pytest.fixture(scope="module")
def seed_stack(kafka_bootstrap, postgres_admin_url, tmp_path_factory) -> Iterator[TallyStack]:
    config = Path(__file__).with_name("seed_config.yaml")
    with running_stack(kafka_bootstrap, postgres_admin_url, tmp_path_factory.mktemp("seed"), DEFAULT_PLAN, config) as stack:
        yield stack


def spend_row(stack: TallyStack, request_id: str):
    with psycopg.connect(stack.common.database_url) as conn:
        return conn.execute(
            'SELECT spend, prompt_tokens, completion_tokens, total_tokens, api_key, end_user, model_group, request_tags'
            ' FROM "LiteLLM_SpendLogs" WHERE request_id = %s', (request_id,)).fetchone()


def wait_for_row(stack: TallyStack, request_id: str):
    return eventually(lambda: spend_row(stack, request_id), 30, f"spend log row {request_id}")


def post(stack: TallyStack, path: str, body: dict | None, key: str = "sk-1234") -> tuple[int, dict, dict]:
    request = urllib.request.Request(stack.url("proxy") + path, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_openai_sdk_example_lands_as_one_priced_spend_log_row(seed_stack):
    """Step 2's openai-SDK call is answered with its cost and stored once with that cost."""
    client = openai.OpenAI(api_key="sk-1234", base_url=seed_stack.url("proxy"))
    raw = client.chat.completions.with_raw_response.create(
        model="llama3",
        messages=[{"role": "user", "content": "this is a test request, write a short poem"}],
        user="palantir",
        extra_body={"metadata": {"tags": TAGS}},
    )
    assert Decimal(raw.headers["x-litellm-response-cost"]) == LLAMA3_COST
    row = wait_for_row(seed_stack, raw.headers["x-litellm-call-id"])
    assert row == (LLAMA3_COST, 20, 80, 100, MASTER_LABEL, "palantir", "llama3", TAGS)


def test_curl_example_with_metadata_in_the_body(seed_stack):
    """The curl form (metadata at the top level of the body) records the tags and customer."""
    status, headers, body = post(seed_stack, "/chat/completions", {
        "model": "llama3", "messages": [{"role": "user", "content": "what llm are you"}],
        "user": "palantir", "metadata": {"tags": TAGS}})
    assert (status, headers["x-litellm-response-cost"], body["usage"]["total_tokens"]) == (200, "0.0000074", 100)
    assert wait_for_row(seed_stack, headers["x-litellm-call-id"])[5:] == ("palantir", "llama3", TAGS)


def test_langchain_example(seed_stack):
    """LangChain's ChatOpenAI pointed at the proxy works and its call is tracked with tags and user."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(openai_api_base=seed_stack.url("proxy"), api_key="sk-1234", model="llama3",
                      model_kwargs={"user": "palantir"}, extra_body={"metadata": {"tags": TAGS}})
    before = count_rows(seed_stack)
    reply = chat.invoke([SystemMessage(content="You are a helpful assistant that im using to make a test request to."),
                         HumanMessage(content="test from litellm. tell me why it's amazing in 1 sentence")])
    assert reply.content == "This is a fake answer from Tally's demo upstream."
    eventually(lambda: count_rows(seed_stack) == before + 1, 30, "LangChain's spend log row")
    with psycopg.connect(seed_stack.common.database_url) as conn:
        latest = conn.execute('SELECT end_user, request_tags, spend FROM "LiteLLM_SpendLogs" ORDER BY "startTime" DESC LIMIT 1').fetchone()
    assert latest == ("palantir", TAGS, LLAMA3_COST)


def count_rows(stack: TallyStack) -> int:
    with psycopg.connect(stack.common.database_url) as conn:
        return conn.execute('SELECT count(*) FROM "LiteLLM_SpendLogs"').fetchone()[0]


def test_azure_base_model_prices_the_real_model(seed_stack):
    """Azure's "gpt-4" answer for a gpt-4-1106-preview deployment is priced by base_model: 0.0026, not gpt-4's 0.0054."""
    # gpt-4-1106-preview: 20 * 1e-05 + 80 * 3e-05 = 0.0026
    status, headers, body = post(seed_stack, "/chat/completions", {
        "model": "azure-gpt-3.5", "messages": [{"role": "user", "content": "hi"}], "x_fake": {"model": "gpt-4"}})
    assert (status, body["model"], Decimal(headers["x-litellm-response-cost"])) == (200, "gpt-4", Decimal("0.0026"))
    assert wait_for_row(seed_stack, headers["x-litellm-call-id"])[0] == Decimal("0.0026")


def test_azure_image_generation_priced_by_base_model(seed_stack):
    """One standard 1024x1024 image from the seed's Azure dall-e-3 deployment costs base_model's per-pixel rate."""
    # LiteLLM's current rate for Azure's standard 1024x1024 dall-e-3 (litellm 1.110.2,
    # azure/standard/1024-x-1024/dall-e-3): 4.19617e-08 * 1024 * 1024 = 0.0440000315392 (~$0.044)
    status, headers, body = post(seed_stack, "/images/generations", {"model": "dall-e-3", "prompt": "a cat", "n": 1, "size": "1024x1024"})
    assert (status, len(body["data"])) == (200, 1)
    assert Decimal(headers["x-litellm-response-cost"]) == Decimal("0.0440000315392")
    assert wait_for_row(seed_stack, headers["x-litellm-call-id"])[0] == Decimal("0.0440000315392")


def test_custom_per_token_prices(seed_stack):
    """A deployment's own input/output prices win: 20 * 1e-06 + 80 * 2e-06 = 0.00018."""
    status, headers, _ = post(seed_stack, "/v1/chat/completions", {"model": "my-custom-model", "messages": [{"role": "user", "content": "hi"}]})
    assert (status, Decimal(headers["x-litellm-response-cost"])) == (200, Decimal("0.00018"))
    assert wait_for_row(seed_stack, headers["x-litellm-call-id"])[0] == Decimal("0.00018")


def report(stack: TallyStack, key: str = "sk-1234", **params: str) -> requests.Response:
    return requests.get(stack.url("proxy") + "/global/spend/report", headers={"Authorization": f"Bearer {key}"},
                        params={"start_date": "2024-04-01", "end_date": "2099-06-30", **params}, timeout=30)


def test_spend_report_by_team_matches_the_seed_shape(seed_stack):
    """group_by=team: days, then teams with total_spend and per-key-and-model metadata rows."""
    test_openai_sdk_example_lands_as_one_priced_spend_log_row(seed_stack)
    rows = report(seed_stack, group_by="team").json()
    assert set(rows[0]) == {"group_by_day", "teams"}
    team = rows[0]["teams"][0]
    assert set(team) == {"team_name", "total_spend", "metadata"}
    assert set(team["metadata"][0]) == {"model", "spend", "total_tokens", "api_key"}


def test_spend_report_script_from_the_seed_runs(seed_stack, capsys):
    """The seed's requests script runs unchanged and prints a date, a team and a total per row."""
    url = seed_stack.url("proxy") + "/global/spend/report"
    params = {"start_date": "2023-04-01", "end_date": "2099-06-30"}
    headers = {"Authorization": "Bearer sk-1234"}
    response = requests.get(url, headers=headers, params=params)
    spend_report = response.json()
    for row in spend_report:
        date = row["group_by_day"]
        teams = row["teams"]
        for team in teams:
            print(f"Date: {date}")
            print(f"Team: {team['team_name']}")
            print(f"Total Spend: {team['total_spend']}")
            print("Metadata: ", team["metadata"])
    assert response.status_code == 200 and "Team: Unassigned Team" in capsys.readouterr().out


def test_spend_report_by_customer_and_by_api_key(seed_stack):
    """group_by=customer names "palantir"; api_key=sk-1234 answers per hashed key with model_details."""
    test_openai_sdk_example_lands_as_one_priced_spend_log_row(seed_stack)
    customers = {c["customer"] for day in report(seed_stack, group_by="customer").json() for c in day["customers"]}
    assert "palantir" in customers
    by_key = report(seed_stack, api_key="sk-1234").json()
    assert [row["api_key"] for row in by_key] == [MASTER_LABEL]
    assert set(by_key[0]) == {"api_key", "total_cost", "total_input_tokens", "total_output_tokens", "model_details"}


def test_key_with_get_spend_routes_reads_reports_and_a_plain_key_cannot(seed_stack):
    """permissions={"get_spend_routes": true} opens the spend routes; a plain key gets 403."""
    _, _, permitted = post(seed_stack, "/key/generate", {"permissions": {"get_spend_routes": True}})
    _, _, plain = post(seed_stack, "/key/generate", {})
    # A new key reaches the reports service through the entities topic and the ledger: poll.
    eventually(lambda: report(seed_stack, key=permitted["key"]).status_code == 200, 5, "the permitted key to work on reports")
    denied = report(seed_stack, key=plain["key"])
    assert denied.status_code == 403 and set(denied.json()["error"]) >= {"message", "type"}


def test_spend_reset_answers_as_the_seed_shows(seed_stack):
    """POST /global/spend/reset with the master key answers exactly the seed's message."""
    status, _, body = post(seed_stack, "/global/spend/reset", None)
    assert (status, body) == (200, {"message": "Spend for all API Keys and Teams reset successfully", "status": "success"})
