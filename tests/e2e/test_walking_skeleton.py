"""The pipe is real: a chat completion through the proxy becomes one priced spend log row in
Postgres, via Kafka, the pricer and the ledger, each running as its own process."""

from decimal import Decimal

import openai
import psycopg
import pytest

from shared.keys import hash_key
from tests.fixtures.stack import wait_for

pytestmark = pytest.mark.e2e

# groq/llama3-8b-8192 lists 5e-08 per input and 8e-08 per output token; the fake upstream reports
# 20 prompt and 80 completion tokens: 20 * 5e-08 + 80 * 8e-08 = 0.0000074.
EXPECTED_COST = Decimal("0.0000074")


def spend_log_row(database_url: str, request_id: str):
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            'SELECT spend, prompt_tokens, completion_tokens, total_tokens, api_key, end_user, model_group, request_tags'
            ' FROM "LiteLLM_SpendLogs" WHERE request_id = %s', (request_id,)).fetchone()


def test_seed_request_lands_as_one_priced_spend_log_row(tally_stack):
    """The seed page's openai-SDK call is answered with its cost and stored once with that cost."""
    client = openai.OpenAI(api_key="sk-1234", base_url=tally_stack.url("proxy"))
    raw = client.chat.completions.with_raw_response.create(
        model="llama3",
        messages=[{"role": "user", "content": "this is a test request, write a short poem"}],
        user="palantir",
        extra_body={"metadata": {"tags": ["jobID:214590dsff09fds", "taskName:run_page_classification"]}},
    )
    assert Decimal(raw.headers["x-litellm-response-cost"]) == EXPECTED_COST
    request_id = raw.headers["x-litellm-call-id"]

    row = wait_for(lambda: spend_log_row(tally_stack.common.database_url, request_id), 30, "the spend log row")
    assert row == (EXPECTED_COST, 20, 80, 100, hash_key("sk-1234"), "palantir", "llama3",
                   ["jobID:214590dsff09fds", "taskName:run_page_classification"])
