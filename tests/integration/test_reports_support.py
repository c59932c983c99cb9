"""Shared set-up for the reports service's integration tests: a small, hand-checkable data set
written straight into Postgres (spend logs with exact NUMERIC spend, and the daily rollups the
ledger would derive from them), and a client for the reports app on that database.
(No tests here; the test_reports_* modules import these fixtures.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg.types.json import Jsonb

from services.reports.app import build_app
from services.reports.settings import ReportsSettings
from shared.config import parse_config
from shared.keys import hash_key

MASTER = "sk-master-for-tests"
PLAIN_KEY = "sk-key-one"  # team-a, user ishaan, no permissions
KEY_TWO = "sk-key-two"  # team-b, user krrish
KEY_THREE = "sk-key-three"  # no team, user ishaan
READER_KEY = "sk-reader"  # permissions {"get_spend_routes": true}, no logs of its own
EXPIRED_KEY = "sk-expired"
BLOCKED_KEY = "sk-blocked"

K1, K2, K3 = hash_key(PLAIN_KEY), hash_key(KEY_TWO), hash_key(KEY_THREE)

# request_id, startTime, key, model, spend, prompt, completion, team, user, end_user, tags, provider, status
LOGS = [
    ("r1", "2024-04-30 10:00:00+00", K1, "gpt-4", "0.00123", 20, 8, "team-a", "ishaan", "palantir", ["jobA", "env:prod"], "openai", "success"),
    ("r2", "2024-04-30 11:00:00+00", K1, "gpt-4", "0.00123", 20, 8, "team-a", "ishaan", "palantir", ["jobA"], "openai", "success"),
    ("r3", "2024-04-30 12:00:00+00", K2, "chatgpt-v-2", "0.000214", 100, 22, "team-b", "krrish", "palantir", ["jobA"], "azure", "success"),
    ("r4", "2024-04-30 13:00:00+00", K3, "gpt-3.5-turbo", "0.0000825", 60, 25, None, "ishaan", "acme", [], "openai", "success"),
    ("r5", "2024-05-01 09:00:00+00", K1, "gpt-3.5-turbo", "0.1", 1000, 500, "team-a", "ishaan", "acme", ["env:prod"], "openai", "success"),
    ("r6", "2024-05-02 23:59:59.999+00", K2, "gpt-4", "0.3333333333333333333", 10, 10, "team-b", "krrish", None, [], "openai", "failure"),
    ("r7", "2024-05-03 00:00:00+00", K1, "gpt-4", "5", 1, 1, "team-a", "ishaan", "palantir", ["jobA"], "openai", "success"),
]

# table → (entity column, expression over the spend logs giving the entity). As the ledger does, a
# log with no user, team or customer is not rolled into that table (only into the api-key one).
ROLLUPS = {
    "LiteLLM_DailyUserSpend": ("user_id", 'COALESCE(l."user", \'\')'),
    "LiteLLM_DailyTeamSpend": ("team_id", "COALESCE(l.team_id, '')"),
    "LiteLLM_DailyEndUserSpend": ("end_user_id", "COALESCE(l.end_user, '')"),
    "LiteLLM_DailyApiKeySpend": ("api_key_id", "l.api_key"),
}


def seed(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            'INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias) VALUES (%s, %s), (%s, %s)',
            ("team-a", "Prod Team", "team-b", "Research"),
        )
        keys = [
            (K1, "sk-...-one", "one", "ishaan", "team-a", {}, None, False),
            (K2, "sk-...-two", "two", "krrish", "team-b", {}, None, False),
            (K3, "sk-...hree", "three", "ishaan", None, {}, None, False),
            (hash_key(READER_KEY), "sk-...ader", "reader", None, None, {"get_spend_routes": True}, None, False),
            (hash_key(EXPIRED_KEY), "sk-...ired", "expired", None, None, {"get_spend_routes": True}, "2020-01-01 00:00:00+00", False),
            (hash_key(BLOCKED_KEY), "sk-...cked", "blocked", None, None, {"get_spend_routes": True}, None, True),
        ]
        for token, name, alias, user, team, perms, expires, blocked in keys:
            conn.execute(
                'INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, user_id, team_id, permissions, expires, blocked)'
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (token, name, alias, user, team, Jsonb(perms), expires, blocked),
            )
        conn.execute(
            'INSERT INTO "LiteLLM_UserTable" (user_id, spend) VALUES (%s, %s), (%s, %s)',
            ("ishaan", Decimal("0.1015425"), "krrish", Decimal("0.3335473333333333333")),
        )
        for rid, start, key, model, spend, prompt, completion, team, user, end_user, tags, provider, status in LOGS:
            conn.execute(
                'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens,'
                ' completion_tokens, "startTime", "endTime", model, model_group, custom_llm_provider, "user", team_id,'
                " end_user, request_tags, status, metadata)"
                " VALUES (%s, 'acompletion', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{}')",
                (rid, key, Decimal(spend), prompt + completion, prompt, completion, start, start, model, model, provider, user,
                 team, end_user, Jsonb(tags), status),
            )
        measures = """SUM(l.prompt_tokens), SUM(l.completion_tokens), SUM(l.spend), COUNT(*),
                      COUNT(*) FILTER (WHERE l.status = 'success'), COUNT(*) FILTER (WHERE l.status <> 'success')"""
        day = """to_char(l."startTime" AT TIME ZONE 'UTC', 'YYYY-MM-DD')"""
        columns = "date, api_key, model, model_group, custom_llm_provider, prompt_tokens, completion_tokens, spend, api_requests, successful_requests, failed_requests"
        for table, (entity, expression) in ROLLUPS.items():
            conn.execute(
                f'INSERT INTO "{table}" ({entity}, {columns})'
                f" SELECT {expression}, {day}, l.api_key, l.model, l.model_group, l.custom_llm_provider, {measures}"
                f' FROM "LiteLLM_SpendLogs" l WHERE {expression} <> \'\' GROUP BY 1, 2, 3, 4, 5, 6'
            )
        conn.execute(
            f'INSERT INTO "LiteLLM_DailyTagSpend" (tag, {columns})'
            f" SELECT t.tag, {day}, l.api_key, l.model, l.model_group, l.custom_llm_provider, {measures}"
            ' FROM "LiteLLM_SpendLogs" l CROSS JOIN LATERAL jsonb_array_elements_text(l.request_tags) AS t(tag)'
            " GROUP BY 1, 2, 3, 4, 5, 6"
        )


CONFIG = {
    "model_list": [
        {"model_name": "llama3", "litellm_params": {"model": "groq/llama3-8b-8192"}},
        {"model_name": "custom-priced", "litellm_params": {"model": "openai/my-model", "input_cost_per_token": 0.000001,
                                                           "output_cost_per_token": 0.000002}},
    ],
}


def reports_settings_for(database_url: str, kafka_bootstrap: str, topic_prefix: str = "") -> ReportsSettings:
    return ReportsSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                           master_key=MASTER, auth_cache_seconds=0.0)


def load_test_catalog() -> object | None:
    try:
        from shared.pricing import load_catalog
    except ImportError:
        return None
    return load_catalog()


@pytest.fixture
async def seeded_database(database_url: str) -> str:
    seed(database_url)
    return database_url


@pytest.fixture
async def reports(seeded_database: str, kafka_bootstrap: str) -> AsyncIterator[TestClient]:
    """A client for the reports app on the seeded database."""
    app = build_app(reports_settings_for(seeded_database, kafka_bootstrap), parse_config(CONFIG, {}), load_test_catalog())
    async with TestClient(TestServer(app)) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
