"""Reports benchmark: a LiteLLM-sized data set generated in SQL in a scratch database (spend logs
and the daily rollups the ledger would hold for them), the reports service started as its own
process on it, and p50/p95 of the figures issue 7 asks for:

  /global/spend/report for 30 days grouped by team, customer and api_key   p95 < 100 ms each
  /spend/logs for one request id (and /spend/logs/ui over every day)        p95 < 10 ms
  the Usage page's first paint (headless Chromium, when installed)          < 1 s
  the Usage page's panels all filled                                         < 1.5 s
  a filter applied on the page (warm)                                        < 300 ms

    python bench/bench_reports.py [--rows 10000000] [--days 90] [--fresh] [--iterations 30]
    python bench/bench_reports.py --retention --rows 3000000 --days 3   # a day of 1 M logs dropped

The data set is kept between runs (database tally_bench_reports) and rebuilt only when its size
differs or --fresh is given. Results: bench/results/reports.json."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.migrations import migrate  # noqa: E402

MASTER = "sk-bench-master"
RESULTS = ROOT / "bench" / "results" / "reports.json"
MODELS = [("gpt-4o", "openai", "0.0000025", "0.00001"), ("gpt-4o-mini", "openai", "0.00000015", "0.0000006"),
          ("claude-3-5-sonnet", "anthropic", "0.000003", "0.000015"), ("llama3-8b-8192", "groq", "0.00000005", "0.00000008"),
          ("mistral-large", "mistral", "0.000002", "0.000006"), ("azure/gpt-4-1106-preview", "azure", "0.00001", "0.00003")]


def admin_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from stack.postgres import ensure_postgres

    return ensure_postgres()


def with_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def generate(url: str, rows: int, days: int, keys: int, teams: int, customers: int, tags: int) -> dict[str, float]:
    """Everything in SQL: entities, `rows` spend logs spread over `days` days up to now, then the
    rollups from the logs exactly as the ledger derives them (named entities only)."""
    timings: dict[str, float] = {}
    models = ", ".join(f"({i}, '{m}', '{p}', {a}::numeric, {b}::numeric)" for i, (m, p, a, b) in enumerate(MODELS))
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("CREATE TABLE bench_models (i int PRIMARY KEY, model text, provider text, input numeric, output numeric)")
        conn.execute(f"INSERT INTO bench_models VALUES {models}")
        conn.execute("CREATE TABLE bench_keys (k int PRIMARY KEY, token text, team_id text, user_id text)")
        conn.execute(
            "INSERT INTO bench_keys SELECT k, encode(sha256(('sk-bench-' || k)::bytea), 'hex'),"
            " CASE WHEN k %% 10 = 9 THEN NULL ELSE 'team-' || (k %% %s) END, 'user-' || (k %% 200)"
            " FROM generate_series(0, %s) k", (teams, keys - 1))
        conn.execute("""INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias) SELECT 'team-' || t, 'Team ' || t
                        FROM generate_series(0, %s) t""", (teams - 1,))
        conn.execute("""INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, user_id, team_id)
                        SELECT token, 'sk-...' || right(token, 4), 'key-' || k, user_id, team_id FROM bench_keys""")
        conn.execute("""INSERT INTO "LiteLLM_EndUserTable" (user_id) SELECT 'customer-' || c FROM generate_series(0, %s) c""",
                     (customers - 1,))
        # Spend logs are partitioned by UTC day (migration 0009): every day of the span gets its
        # partition first, as the ledger would make it.
        conn.execute("SELECT tally_ensure_spend_log_partition(d::date) FROM generate_series("
                     "((now() - make_interval(days => %s)) AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date,"
                     " interval '1 day') d", (days + 1,))
        for index in ("LiteLLM_SpendLogs_startTime_request_id_idx", "LiteLLM_SpendLogs_end_user_idx",
                      "LiteLLM_SpendLogs_session_id_idx", "LiteLLM_SpendLogs_api_key_startTime_idx"):
            conn.execute(f'DROP INDEX IF EXISTS "{index}"')
        conn.execute('ALTER TABLE "LiteLLM_SpendLogs" DROP CONSTRAINT "LiteLLM_SpendLogs_pkey"')
        # Each request id's day (migration 0013) is filled once after the load, not per chunk.
        conn.execute('ALTER TABLE "LiteLLM_SpendLogs" DISABLE TRIGGER tally_note_request_days')
        chunk = 1_000_000
        span_seconds = days * 86400
        for first in range(1, rows + 1, chunk):
            last = min(rows, first + chunk - 1)
            # Key k, model (k + i) % 2 of its two, customer of the key on even requests, one or two tags.
            conn.execute(
                """
                INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
                    completion_tokens, "startTime", "endTime", model, model_group, custom_llm_provider, "user", team_id,
                    end_user, request_tags, status, metadata)
                SELECT 'req-' || g.i, 'acompletion', k.token, p.pt * m.input + c.ct * m.output, p.pt + c.ct, p.pt, c.ct, t.ts,
                       t.ts + interval '800 milliseconds', m.model, m.model, m.provider, k.user_id, k.team_id,
                       CASE WHEN g.i %% 2 = 0 THEN 'customer-' || (g.k %% %(customers)s) END,
                       CASE WHEN g.i %% 3 = 0 THEN jsonb_build_array('tag-' || (g.k %% %(tags)s), 'tag-' || ((g.k + g.i) %% %(tags)s))
                            ELSE jsonb_build_array('tag-' || (g.k %% %(tags)s)) END,
                       CASE WHEN g.i %% 50 = 0 THEN 'failure' ELSE 'success' END, '{}'::jsonb
                FROM (SELECT i, (i * 7919) %% %(keys)s AS k FROM generate_series(%(first)s::bigint, %(last)s::bigint) i) g
                JOIN bench_keys k ON k.k = g.k
                JOIN bench_models m ON m.i = (g.k + g.i %% 2) %% 6
                CROSS JOIN LATERAL (SELECT (g.i %% 997) + 10 AS pt) p
                CROSS JOIN LATERAL (SELECT (g.i %% 389) + 5 AS ct) c
                CROSS JOIN LATERAL (SELECT now() - make_interval(secs => %(span)s::double precision * (%(rows)s - g.i) / %(rows)s) AS ts) t
                """,
                {"first": first, "last": last, "keys": keys, "customers": customers, "tags": tags, "span": span_seconds, "rows": rows},
            )
            log(f"  spend logs: {last:,} / {rows:,}")
        timings["logs_s"] = time.perf_counter() - started

        started = time.perf_counter()
        conn.execute('ALTER TABLE "LiteLLM_SpendLogs" ADD CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY (request_id, "startTime")')
        conn.execute('CREATE INDEX "LiteLLM_SpendLogs_startTime_request_id_idx" ON "LiteLLM_SpendLogs" ("startTime", request_id)')
        conn.execute('CREATE INDEX "LiteLLM_SpendLogs_api_key_startTime_idx" ON "LiteLLM_SpendLogs" (api_key, "startTime")')
        conn.execute('CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs" (end_user) WHERE end_user IS NOT NULL')
        conn.execute('CREATE INDEX "LiteLLM_SpendLogs_session_id_idx" ON "LiteLLM_SpendLogs" (session_id) WHERE session_id IS NOT NULL')
        conn.execute("SELECT tally_fill_request_days()")
        conn.execute('ALTER TABLE "LiteLLM_SpendLogs" ENABLE TRIGGER tally_note_request_days')
        timings["log_indexes_s"] = time.perf_counter() - started
        log("  spend log indexes and request days built")

        started = time.perf_counter()
        day = """to_char(l."startTime" AT TIME ZONE 'UTC', 'YYYY-MM-DD')"""
        columns = ("date, api_key, model, model_group, custom_llm_provider, endpoint, prompt_tokens, completion_tokens, spend,"
                   " api_requests, successful_requests, failed_requests")
        measures = """'/chat/completions', SUM(l.prompt_tokens), SUM(l.completion_tokens), SUM(l.spend), COUNT(*),
                      COUNT(*) FILTER (WHERE l.status = 'success'), COUNT(*) FILTER (WHERE l.status <> 'success')"""
        for table, entity, expression in (("LiteLLM_DailyUserSpend", "user_id", 'l."user"'),
                                          ("LiteLLM_DailyTeamSpend", "team_id", "l.team_id"),
                                          ("LiteLLM_DailyEndUserSpend", "end_user_id", "l.end_user"),
                                          ("LiteLLM_DailyApiKeySpend", "api_key_id", "l.api_key")):
            conn.execute(
                f'INSERT INTO "{table}" ({entity}, {columns}) SELECT {expression}, {day}, l.api_key, l.model, l.model_group,'
                f' l.custom_llm_provider, {measures} FROM "LiteLLM_SpendLogs" l WHERE {expression} IS NOT NULL'
                " GROUP BY 1, 2, 3, 4, 5, 6")
            log(f"  rollup {table}")
        conn.execute(
            f'INSERT INTO "LiteLLM_DailyTagSpend" (tag, {columns}) SELECT t.tag, {day}, l.api_key, l.model, l.model_group,'
            f' l.custom_llm_provider, {measures} FROM "LiteLLM_SpendLogs" l'
            " CROSS JOIN LATERAL jsonb_array_elements_text(l.request_tags) AS t(tag) GROUP BY 1, 2, 3, 4, 5, 6")
        log("  rollup LiteLLM_DailyTagSpend")
        conn.execute("VACUUM ANALYZE")
        timings["rollups_s"] = time.perf_counter() - started
        conn.execute("CREATE TABLE bench_info (rows bigint, days int, keys int, teams int, customers int, tags int)")
        conn.execute("INSERT INTO bench_info VALUES (%s, %s, %s, %s, %s, %s)", (rows, days, keys, teams, customers, tags))
    return timings


def prepare(args: argparse.Namespace, name: str = "tally_bench_reports") -> tuple[str, dict[str, float]]:
    admin = admin_url()
    url = with_database(admin, name)
    wanted = (args.rows, args.days, args.keys, args.teams, args.customers, args.tags)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    if exists and not args.fresh:
        try:
            with psycopg.connect(url) as conn:
                have = conn.execute("SELECT rows, days, keys, teams, customers, tags FROM bench_info").fetchone()
            if have == wanted:
                log(f"reusing the data set in {name} ({args.rows:,} spend logs)")
                applied = asyncio.run(migrate(url))  # migrations newer than the kept data set (indexes among them)
                if applied:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("VACUUM ANALYZE")
                    log(f"applied migrations {applied} to it")
                return url, {}
        except psycopg.Error:
            pass
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    asyncio.run(migrate(url))
    log(f"generating {args.rows:,} spend logs over {args.days} days in {name} ...")
    started = time.perf_counter()
    timings = generate(url, *wanted)
    timings["total_s"] = time.perf_counter() - started
    log(f"data set ready in {timings['total_s']:.0f} s")
    return url, timings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(samples: list[float]) -> dict[str, Any]:
    return {"p50_ms": round(statistics.median(samples), 2), "p95_ms": round(percentile(samples, 0.95), 2),
            "max_ms": round(max(samples), 2), "iterations": len(samples)}


async def measure(base: str, path: str, params: dict[str, str], iterations: int, session: aiohttp.ClientSession) -> dict[str, Any]:
    """cold_ms: the first call after the service started (nothing cached for this route and these
    parameters); then two more warm-up calls; then `iterations` warm calls."""
    headers = {"Authorization": f"Bearer {MASTER}"}
    size = 0
    cold_ms = 0.0
    for n in range(3):
        started = time.perf_counter()
        async with session.get(base + path, params=params, headers=headers) as response:
            assert response.status == 200, await response.text()
            size = len(await response.read())
        if n == 0:
            cold_ms = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        async with session.get(base + path, params=params, headers=headers) as response:
            await response.read()
        samples.append((time.perf_counter() - started) * 1000)
    return {"cold_ms": round(cold_ms, 2), **summary(samples), "response_bytes": size}


async def measure_live(base: str, url: str, path: str, params: dict[str, str], iterations: int,
                       session: aiohttp.ClientSession) -> dict[str, Any]:
    """As under live traffic: before every call one spend log lands on the last day (its api-key
    rollup row gets +1 request and +0.000001 spend, as the ledger would write it), so the day's
    signature changes and the answer must be recomputed for that day. Undone at the end."""
    headers = {"Authorization": f"Bearer {MASTER}"}
    samples = []
    landed = 0
    with psycopg.connect(url, autocommit=True) as conn:
        row_id = conn.execute('SELECT id FROM "LiteLLM_DailyApiKeySpend" WHERE date = %s ORDER BY id LIMIT 1',
                              (params["end_date"],)).fetchone()[0]
        bump = 'UPDATE "LiteLLM_DailyApiKeySpend" SET api_requests = api_requests + %s, spend = spend + %s WHERE id = %s'
        try:
            for _ in range(iterations):
                conn.execute(bump, (1, "0.000001", row_id))
                landed += 1
                started = time.perf_counter()
                async with session.get(base + path, params=params, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                samples.append((time.perf_counter() - started) * 1000)
        finally:
            conn.execute(bump, (-landed, -Decimal("0.000001") * landed, row_id))
    return summary(samples)


async def measure_request_ids(base: str, rows: int, iterations: int, session: aiohttp.ClientSession,
                              path: str = "/spend/logs", extra: dict[str, str] | None = None) -> dict[str, Any]:
    """A random request id each call (never cached); `path` /spend/logs/ui answers `{data, ...}`."""
    headers = {"Authorization": f"Bearer {MASTER}"}
    rng = random.Random(7)
    samples = []
    for n in range(iterations + 5):
        rid = f"req-{rng.randint(1, rows)}"
        started = time.perf_counter()
        async with session.get(base + path, params={**(extra or {}), "request_id": rid}, headers=headers) as response:
            body = await response.json()
        if n >= 5:
            samples.append((time.perf_counter() - started) * 1000)
        found = body["data"] if isinstance(body, dict) else body
        assert len(found) == 1 and found[0]["request_id"] == rid, body
    return summary(samples)


def lookup_plan_times(url: str, rows: int, samples: int = 30) -> dict[str, Any]:
    """Where a request-id lookup's time goes in Postgres, by EXPLAIN ANALYZE (medians, ms): by
    request id alone, planned afresh and with a reused generic plan (both probe every day's
    partition), against the two statements the reports run (the request's days from
    tally_request_days with a reused generic plan, then its day's partition, planned for it)."""
    rng = random.Random(11)
    by_id = 'SELECT * FROM "LiteLLM_SpendLogs" WHERE request_id = {rid}'
    through_day = ('SELECT * FROM "LiteLLM_SpendLogs" WHERE request_id = {rid}'
                   ' AND "startTime" >= {day}::timestamp AT TIME ZONE \'UTC\''
                   ' AND "startTime" < ({day} + 1)::timestamp AT TIME ZONE \'UTC\'')
    times: dict[str, list[float]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        partitions = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = '\"LiteLLM_SpendLogs\"'::regclass").fetchone()[0]
        conn.execute("PREPARE bench_by_id(text) AS SELECT * FROM \"LiteLLM_SpendLogs\" WHERE request_id = $1")
        conn.execute("PREPARE bench_days(text) AS SELECT min(day), max(day) FROM tally_request_days"
                     " WHERE request_key = hashtextextended($1, 0)")
        conn.execute("SET plan_cache_mode = force_generic_plan")

        def explain(name: str, statement: str, **values: Any) -> None:
            query = sql.SQL("EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + statement).format(
                **{k: sql.Literal(v) for k, v in values.items()})
            plan = conn.execute(query).fetchone()[0][0]
            times.setdefault(f"{name}_planning_ms", []).append(plan["Planning Time"])
            times.setdefault(f"{name}_execution_ms", []).append(plan["Execution Time"])

        for _ in range(samples + 3):
            rid = f"req-{rng.randint(1, rows)}"
            day = conn.execute("SELECT min(day) FROM tally_request_days WHERE request_key = hashtextextended(%s, 0)",
                               (rid,)).fetchone()[0]
            explain("by_id_fresh", by_id, rid=rid)
            explain("by_id_generic", "EXECUTE bench_by_id({rid})", rid=rid)
            explain("days_generic", "EXECUTE bench_days({rid})", rid=rid)
            explain("day_partition", through_day, rid=rid, day=day)
    return {"partitions": partitions, **{k: round(statistics.median(v[3:]), 3) for k, v in times.items()}}


def first_paint(base: str, runs_wanted: int = 5) -> dict[str, Any] | None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        log("no /usr/bin/chromium: first paint not measured (make browser installs it)")
        return None
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    runs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=args)
        try:
            for _ in range(runs_wanted):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(f"sessionStorage.setItem('tally.key', {json.dumps(MASTER)})")
                page = context.new_page()
                started = time.perf_counter()
                page.goto(base + "/ui")
                page.wait_for_function("window.tallyReady && window.tallyReady()", timeout=60_000)
                loaded_ms = (time.perf_counter() - started) * 1000
                fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
                # A top-table click, timed in the page from the click to every panel redrawn under the filter.
                filter_ms = page.evaluate("""() => new Promise((resolve) => {
                    const started = performance.now();
                    document.querySelector('#top-teams button[data-filter^="team="]').click();
                    const check = () => (window.tallyReady() ? resolve(performance.now() - started) : requestAnimationFrame(check));
                    check();
                })""")
                runs.append({"first_contentful_paint_ms": round(fcp, 1) if fcp else None, "data_shown_ms": round(loaded_ms, 1),
                             "filter_ms": round(filter_ms, 1)})
                context.close()
        finally:
            browser.close()
    fcps = [r["first_contentful_paint_ms"] for r in runs if r["first_contentful_paint_ms"]]
    return {"runs": runs, "first_contentful_paint_p50_ms": statistics.median(fcps) if fcps else None,
            "data_shown_p50_ms": statistics.median(r["data_shown_ms"] for r in runs),
            "data_shown_max_ms": max(r["data_shown_ms"] for r in runs),
            "filter_p50_ms": statistics.median(r["filter_ms"] for r in runs), "filter_max_ms": max(r["filter_ms"] for r in runs)}


@contextlib.contextmanager
def reports_service(url: str) -> Iterator[str]:
    """The reports service as its own process on the data set; yields its base URL once healthy,
    which is after it has warmed its caches (services/reports/warmup.py)."""
    port = free_port()
    started = time.monotonic()
    env = {**os.environ, "DATABASE_URL": url, "REPORTS_PORT": str(port), "LITELLM_MASTER_KEY": MASTER,
           "TALLY_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "services.reports"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as response:
                    if response.status == 200:
                        log(f"reports healthy {time.monotonic() - started:.2f} s after its start (cache warm-up included, unless REPORTS_WARM_DAYS=0)")
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the reports service did not become healthy")
            time.sleep(0.2)  # polling the health route until it answers
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_REPORTS_ROWS", 10_000_000)))
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--fresh", action="store_true", help="rebuild the data set even if one of this size exists")
    parser.add_argument("--retention", action="store_true",
                        help="instead: time dropping one day of spend logs and the report routes meanwhile (retention_bench.py)")
    args, _ = parser.parse_known_args()
    if args.retention:
        from bench.retention_bench import run as run_retention

        return run_retention(args)

    url, generation = prepare(args)
    load_before = os.getloadavg()
    with psycopg.connect(url) as conn:
        end = conn.execute('SELECT max(date) FROM "LiteLLM_DailyApiKeySpend"').fetchone()[0]

    def days_before(n: int) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(time.mktime(time.strptime(end, "%Y-%m-%d")) - n * 86400))

    window = {"start_date": days_before(29), "end_date": end}
    plan_times = lookup_plan_times(url, args.rows)
    log(f"a request-id lookup in Postgres (EXPLAIN ANALYZE, median): {plan_times}")

    async def routes(base: str) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            out: dict[str, Any] = {"window": window}
            for group_by in ("team", "customer", "api_key"):
                out[f"report_30d_{group_by}"] = await measure(base, "/global/spend/report", {**window, "group_by": group_by},
                                                              args.iterations, session)
                log(f"/global/spend/report group_by={group_by}: {out[f'report_30d_{group_by}']}")
            for group_by in ("team", "customer", "api_key"):
                out[f"report_30d_{group_by}_live"] = await measure_live(
                    base, url, "/global/spend/report", {**window, "group_by": group_by}, args.iterations, session)
                log(f"/global/spend/report group_by={group_by}, a new spend log before every call: "
                    f"{out[f'report_30d_{group_by}_live']}")
            out["spend_logs_request_id"] = await measure_request_ids(base, args.rows, max(100, args.iterations), session)
            log(f"/spend/logs?request_id=: {out['spend_logs_request_id']}")
            out["logs_ui_request_id"] = await measure_request_ids(
                base, args.rows, max(100, args.iterations), session, "/spend/logs/ui",
                {"start_date": days_before(args.days), "end_date": end})
            log(f"/spend/logs/ui?request_id= over {args.days + 1} days: {out['logs_ui_request_id']}")
            for name, path, extra in (("global_spend_logs_30d", "/global/spend/logs", {}),
                                      ("global_spend_keys_30d", "/global/spend/keys", {"limit": "10"}),
                                      ("global_spend_models_30d", "/global/spend/models", {"limit": "10"}),
                                      ("global_spend_teams_30d", "/global/spend/teams", {}),
                                      ("global_spend_tags_30d", "/global/spend/tags", {}),
                                      ("spend_logs_recent_50", "/spend/logs", {"summarize": "false", "limit": "50"}),
                                      ("report_90d_team", "/global/spend/report", {"group_by": "team", "start_date": days_before(89)})):
                out[name] = await measure(base, path, {**window, **extra}, max(10, args.iterations // 3), session)
                log(f"{path} {extra}: {out[name]}")
            # The Usage page's own reads: unfiltered, one team (its rollup), a team and a customer
            # (two entities: the spend logs), budgets, and the first logs page and a deep one.
            for name, path, extra in (("usage_30d", "/global/spend/usage", {}),
                                      ("usage_30d_team", "/global/spend/usage", {"team": "team-3"}),
                                      ("usage_30d_team_customer", "/global/spend/usage", {"team": "team-4", "customer": "customer-4"}),
                                      ("usage_30d_team_tag", "/global/spend/usage", {"team": "team-4", "tag": "tag-4"}),
                                      ("budgets", "/global/spend/budgets", {}),
                                      ("logs_ui_page_1", "/spend/logs/ui", {"page_size": "25"}),
                                      ("logs_ui_page_1_team", "/spend/logs/ui", {"page_size": "25", "team_id": "team-3"}),
                                      ("logs_ui_page_400", "/spend/logs/ui", {"page_size": "25", "page": "400"})):
                out[name] = await measure(base, path, {**window, **extra}, max(10, args.iterations // 3), session)
                log(f"{path} {extra}: {out[name]}")
            return out

    with reports_service(url) as base:
        figures = asyncio.run(routes(base))
    figures["request_id_lookup_in_postgres"] = plan_times
    with reports_service(url) as base:  # a fresh process: the page's first load finds nothing cached
        cold = first_paint(base, runs_wanted=1)
        warm = first_paint(base)
    if cold and warm:
        figures["usage_page_cold"] = cold
        figures["usage_page"] = warm
        log(f"Usage page, first load after a start: {cold}")
        log(f"Usage page, later loads: {warm}")
    figures["load_average"] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    log(f"load average before {figures['load_average']['before']}, after {figures['load_average']['after']}")
    result = {
        "benchmark": "reports",
        "data_set": {"spend_logs": args.rows, "days": args.days, "keys": args.keys, "teams": args.teams,
                     "customers": args.customers, "tags": args.tags},
        "generation_seconds": {k: round(v, 1) for k, v in generation.items()} or "reused",
        "machine": {"cpus": os.cpu_count()},
        "targets": {"report_30d_p95_ms": 100, "spend_logs_request_id_p95_ms": 10, "usage_page_first_paint_ms": 1000,
                    "usage_page_panels_ms": 1500, "usage_page_filter_warm_ms": 300},
        **figures,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
