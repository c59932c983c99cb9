"""`bench_reports.py --retention`: the time to drop one day of spend logs (retention,
services/ledger/retention.py) and what it does to report routes running meanwhile.

A data set of --rows logs over --days days (about rows/days logs a full day) is generated in its
own database, the reports service started on it, and three routes called in turn without pause:
a 30-day team report (rollups), the Usage page filtered by a team and a customer (spend logs),
the first page of /spend/logs/ui (spend logs) and /spend/logs for a random request id (the spend
logs' primary key, never cached). Their latencies are taken for a few seconds before
a drop, then while the oldest full day is dropped. The database is dropped at the end (the data
set has lost a day). Results: bench/results/retention.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from datetime import date, timedelta
from typing import Any

import aiohttp
import psycopg

from bench.bench_reports import MASTER, ROOT, admin_url, log, percentile, prepare, reports_service, summary

RESULTS = ROOT / "bench" / "results" / "retention.json"
DATABASE = "tally_bench_retention"
ROUTES = (("report_30d_team", "/global/spend/report", {"group_by": "team"}),
          ("usage_30d_team_customer", "/global/spend/usage", {"team": "team-4", "customer": "customer-4"}),
          ("logs_ui_page_1", "/spend/logs/ui", {"page_size": "25"}),
          ("spend_logs_request_id", "/spend/logs", {}))  # a random request id each call: never cached


def _oldest_days(url: str) -> tuple[date, int]:
    """The first full day of logs (the span starts mid-day) and how many logs it holds."""
    with psycopg.connect(url) as conn:
        first = conn.execute('SELECT (min("startTime") AT TIME ZONE \'UTC\')::date FROM "LiteLLM_SpendLogs"').fetchone()[0]
        full = first + timedelta(days=1)
        logs = conn.execute(f'SELECT count(*) FROM "LiteLLM_SpendLogs_{full:%Y%m%d}"').fetchone()[0]
    return full, logs


def _drop(url: str, cutoff: date) -> tuple[float, float, list[str]]:
    """Drop every day before `cutoff` as the ledger does; returns (start, end) on perf_counter."""
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '1s'")
            dropped = [r[0] for r in conn.execute("SELECT tally_drop_spend_logs_before(%s)", (cutoff,)).fetchall()]
        return started, time.perf_counter(), dropped


async def _calls(base: str, window: dict[str, str], seconds: float, rows: int) -> list[tuple[str, float, float]]:
    """(route, start, end) of every call made, round robin, for `seconds`."""
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {MASTER}"}
    calls = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for name, path, extra in ROUTES:
                if name == "spend_logs_request_id":
                    extra = {"request_id": f"req-{rng.randint(1, rows)}"}
                started = time.perf_counter()
                async with session.get(base + path, params={**window, **extra}, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                calls.append((name, started, time.perf_counter()))
    return calls


def _by_route(calls: list[tuple[str, float, float]]) -> dict[str, Any]:
    return {name: summary([(e - s) * 1000 for n, s, e in calls if n == name]) for name, _, _ in ROUTES
            if any(n == name for n, _, _ in calls)}


def run(args: argparse.Namespace) -> int:
    url, generation = prepare(argparse.Namespace(**{**vars(args), "fresh": True}), DATABASE)
    full, logs = _oldest_days(url)
    _drop(url, full)  # the partial first day, not timed: the timed drop is one whole day
    with psycopg.connect(url) as conn:
        end = conn.execute('SELECT max(date) FROM "LiteLLM_DailyApiKeySpend"').fetchone()[0]
    window = {"start_date": (date.fromisoformat(end) - timedelta(days=29)).isoformat(), "end_date": end}
    with reports_service(url) as base:
        asyncio.run(_calls(base, window, 2.0, args.rows))  # warm-up
        before = asyncio.run(_calls(base, window, 8.0, args.rows))
        drop: dict[str, Any] = {}

        def dropper() -> None:
            time.sleep(1.0)
            drop["start"], drop["end"], drop["dropped"] = _drop(url, full + timedelta(days=1))

        thread = threading.Thread(target=dropper)
        thread.start()
        during = asyncio.run(_calls(base, window, 4.0, args.rows))
        thread.join()
    overlapping = [c for c in during if c[1] < drop["end"] and c[2] > drop["start"]]
    result = {
        "benchmark": "retention",
        "data_set": {"spend_logs": args.rows, "days": args.days, "dropped_day": full.isoformat(), "dropped_day_logs": logs},
        "generation_seconds": {k: round(v, 1) for k, v in generation.items()},
        "drop_ms": round((drop["end"] - drop["start"]) * 1000, 1),
        "partitions_dropped": drop["dropped"],
        "before": _by_route(before),
        "during_4s_around_drop": _by_route(during),
        "calls_overlapping_drop": [{"route": n, "ms": round((e - s) * 1000, 1)} for n, s, e in overlapping],
        "max_ms_before": round(max((e - s) * 1000 for _, s, e in before), 1),
        "p95_ms_before_all_routes": round(percentile([(e - s) * 1000 for _, s, e in before], 0.95), 1),
        "p95_ms_during_all_routes": round(percentile([(e - s) * 1000 for _, s, e in during], 0.95), 1),
    }
    log(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    log(f"wrote {RESULTS}; dropped database {DATABASE}")
    return 0
