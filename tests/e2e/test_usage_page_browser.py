"""The Usage page in headless Chromium (Debian's package, driven by Playwright) over a seeded month:
every figure on the page equals what the spend API answers for the same range and filters, the
chart's axis runs over exactly the range's days, and filters, presets, the URL, the logs table, the
log detail, the budgets panel and both CSV downloads work. axe-core finds no serious violation.
Screenshots at 1280 px and a phone's width, light and dark, land in test-output/."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from services.reports.app import build_app
from tests.fixtures.reports_support import MASTER, PLAIN_KEY, READER_KEY, load_test_catalog, reports_settings_for, seed
from tests.fixtures.stack import serving
from tests.fixtures.usage_month import MONTH_END, MONTH_START, seed_month

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = ROOT / "test-output"
VENDOR = ROOT / "services" / "reports" / "static" / "vendor"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MONTH = {"start_date": MONTH_START, "end_date": MONTH_END}
ROWS = "rows => rows.map(r => [...r.cells].map(c => c.textContent))"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: run `make browser` "
                                                     "(apt-get install -y chromium)"),
]


@pytest.fixture
async def site(database_url: str, kafka_bootstrap: str) -> AsyncIterator[str]:
    """The reports service on a real port, on the seeded database."""
    seed(database_url)
    seed_month(database_url)
    async with serving(build_app(reports_settings_for(database_url, kafka_bootstrap), None, load_test_catalog())) as url:
        yield url


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()


# --- what the page should show, from the API ---------------------------------------------------------


async def api(base: str, path: str, **params: str) -> object:
    async with aiohttp.ClientSession() as session:
        async with session.get(base + path, params=params, headers={"Authorization": f"Bearer {MASTER}"}) as response:
            assert response.status == 200, await response.text()
            return json.loads(await response.text(), parse_float=Decimal)


def plain(value: object) -> str:
    text = format(Decimal(str(value)).normalize(), "f")
    return "0" if text in ("-0", "0") else text


def money(value: object) -> str:
    return "$" + plain(value)


def count(value: object) -> str:
    return f"{int(value):,}"


NONE_LABEL = {"team": "(no team)", "customer": "(no customer)", "tag": "(no tag)", "key": "(no key)", "model": "(no model)"}


def expected_daily(usage: dict) -> list[list[str]]:
    return [[d["date"], money(d["spend"]), *(money(s["daily"][i]) for s in usage["stacks"]), count(d["api_requests"]),
             count(d["successful_requests"]), count(d["failed_requests"]), count(d["prompt_tokens"]),
             count(d["completion_tokens"]), count(d["cache_read_input_tokens"])] for i, d in enumerate(usage["daily"])]


def expected_top(rows: list[dict], dimension: str) -> list[list[str]]:
    return [[r["label"] or NONE_LABEL[dimension], count(r["api_requests"]), count(r["failed_requests"]),
             count(r["prompt_tokens"] + r["completion_tokens"]), money(r["spend"])] for r in rows]


# --- driving the page ---------------------------------------------------------------------------------------


async def ready(page: object) -> None:
    await page.wait_for_function("window.tallyReady && window.tallyReady()")


async def open_page(browser: object, base: str, query: str = "start_date=2024-06-01&end_date=2024-06-30", *,
                    key: str = MASTER, width: int = 1280, scheme: str = "light") -> tuple[object, object, list[str]]:
    context = await browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, accept_downloads=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/ui?{query}")
    await page.fill("#key", key)
    await page.click("#signin-form button")
    await ready(page)
    return context, page, errors


def url_state(page: object) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def page_usage_equals_api(page: object, base: str, **params: str) -> dict:
    """Totals, every day's figures (chart data) and the five top tables equal /global/spend/usage."""
    usage = await api(base, "/global/spend/usage", **params)
    t = usage["totals"]
    assert await page.inner_text("#total-spend") == money(t["spend"])
    assert await page.inner_text("#total-requests") == count(t["api_requests"])
    assert await page.inner_text("#total-failed") == count(t["failed_requests"])
    assert await page.inner_text("#total-tokens") == \
        f"{count(t['prompt_tokens'])} / {count(t['completion_tokens'])} / {count(t['cache_read_input_tokens'])}"
    assert await page.eval_on_selector_all("#daily-table tbody tr", ROWS) == expected_daily(usage)
    for name, dimension in (("keys", "key"), ("teams", "team"), ("customers", "customer"), ("models", "model"), ("tags", "tag")):
        shown = await page.eval_on_selector_all(f"#top-{name} tbody tr", ROWS)
        assert shown == (expected_top(usage["top"][name], dimension) or [["No spend in this range"]]), name
    return usage


async def x_labels(page: object, chart: str = "chart-spend") -> list[str]:
    return json.loads(await page.get_attribute(f"#{chart}", "data-x-labels"))


async def serious_accessibility_violations(page: object) -> list[str]:
    await page.add_script_tag(path=str(VENDOR / "axe.min.js"))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['nodes'][0]['html'][:120]}" for v in result["violations"] if v["impact"] in ("serious", "critical")]


# --- the tests ---------------------------------------------------------------------------------------------------


async def test_a_month_on_the_page_equals_the_api(site, browser):
    """Every figure, the axis' first and last days, logs and budgets equal the API's; axe passes; screenshots."""
    context, page, errors = await open_page(browser, site)
    usage = await page_usage_equals_api(page, site, **MONTH)
    per_day = await api(site, "/global/spend/logs", **MONTH)  # LiteLLM's own per-day route agrees
    assert [(d["date"], d["spend"]) for d in usage["daily"] if d["spend"]] == [(d["date"], d["spend"]) for d in per_day]
    assert [d["date"] for d in usage["daily"] if not d["api_requests"]] == ["2024-06-07", "2024-06-14", "2024-06-21", "2024-06-28"]
    if (VENDOR / "uPlot.iife.min.js").exists():
        assert await page.locator("#chart-spend canvas").count() == 1
        for chart in ("chart-spend", "chart-requests", "chart-tokens"):
            labels = await x_labels(page, chart)
            assert (labels[0], labels[-1]) == (MONTH_START, MONTH_END), chart
        box = await page.locator("#chart-spend .u-over").bounding_box()  # hover 15 June: the legend shows its exact figures
        await page.mouse.move(box["x"] + box["width"] * 14.5 / 30, box["y"] + box["height"] / 2)
        legend = await page.eval_on_selector_all(
            "#chart-spend .u-legend .u-series", "rows => rows.map(r => [r.querySelector('.u-label').textContent, r.querySelector('.u-value').textContent])")
        assert sorted(legend) == sorted([["Day", "2024-06-15"], *([s["label"], money(s["daily"][14])] for s in usage["stacks"])])

    logs = await api(site, "/spend/logs/ui", **MONTH, page_size="25")
    shown = await page.eval_on_selector_all("#logs tbody tr", ROWS)
    assert [(r[1], r[7], r[9]) for r in shown] == [(r["request_id"], count(r["total_tokens"]), money(r["spend"])) for r in logs["data"]]
    assert await page.inner_text("#logs-page") == f"1–25 of {logs['total']} · page 1 of {logs['total_pages']}"

    budgets = await api(site, "/global/spend/budgets")
    shown = await page.eval_on_selector_all("#budgets-table tbody tr", ROWS)
    assert [r[:4] + [r[4].strip(), r[5], r[6]] for r in shown] == [
        ["team", "Research", "$0.3335473333333333333", "$0.5", "66.71 %", "—", "1d"],
        ["key", "one", "$0.10246", "$1", "10.25 %", "$0.1 (crossed)", "30d"],
        ["customer", "acme", "$0.1000825", "$10", "1 %", "—", "—"]]
    assert [r[1] for r in shown] == [b["name"] for b in budgets]

    if (VENDOR / "axe.min.js").exists():
        assert await serious_accessibility_violations(page) == []
    OUTPUT.mkdir(exist_ok=True)
    for width, scheme in ((1280, "light"), (390, "light"), (390, "dark"), (1280, "dark")):
        await page.set_viewport_size({"width": width, "height": 900})
        await page.emulate_media(color_scheme=scheme)
        await page.wait_for_function(f"document.querySelector('#chart-spend').scrollWidth <= {width}")  # redrawn to fit
        assert await page.evaluate("document.documentElement.scrollWidth") <= width  # nothing runs off a phone's screen
        assert await page.inner_text("#total-spend") == money(usage["totals"]["spend"])
        await page.screenshot(path=str(OUTPUT / f"usage_page_{width}_{scheme}.png"), full_page=True)
    if (VENDOR / "axe.min.js").exists():  # the dark scheme too
        assert await serious_accessibility_violations(page) == []
    assert errors == []
    await context.close()


async def test_filters_click_to_filter_url_and_presets(site, browser):
    """A top-table row (by keyboard), typed filters, chips, reload, back, stacking and presets keep page and API equal."""
    context, page, errors = await open_page(browser, site)
    await page.focus('#top-teams button[data-filter="team=team-b"]')  # by keyboard
    await page.keyboard.press("Enter")
    await ready(page)
    assert url_state(page)["team"] == ["team-b"]
    await page_usage_equals_api(page, site, **MONTH, team="team-b")
    logs = await api(site, "/spend/logs/ui", **MONTH, team_id="team-b", page_size="25")
    assert (await page.inner_text("#logs-page")).endswith(f"of {logs['total']} · page 1 of {logs['total_pages']}")
    assert await page.eval_on_selector_all("#budgets-table tbody tr", "rows => rows.map(r => r.cells[1].textContent)") == ["Research"]

    await page.fill("#f-customer", "acme")
    await page.click("#controls button[type=submit]")
    await ready(page)
    await page_usage_equals_api(page, site, **MONTH, team="team-b", customer="acme")  # two entities: from the logs

    await page.reload()
    await ready(page)
    assert (await page.input_value("#f-team"), await page.input_value("#f-customer")) == ("team-b", "acme")
    await page_usage_equals_api(page, site, **MONTH, team="team-b", customer="acme")

    await page.click('button[aria-label="Remove the team filter"]')
    await ready(page)
    assert "team" not in url_state(page)
    await page_usage_equals_api(page, site, **MONTH, customer="acme")
    await page.go_back()
    await ready(page)
    await page_usage_equals_api(page, site, **MONTH, team="team-b", customer="acme")

    await page.click("#clear-filters")
    await ready(page)
    await page.select_option("#stack-by", "tag")
    await ready(page)
    await page_usage_equals_api(page, site, **MONTH, stack_by="tag")

    today = datetime.now(timezone.utc).date()
    last_month_end = today.replace(day=1) - timedelta(days=1)
    for preset, (start, end) in (("7d", (today - timedelta(days=6), today)), ("last-month", (last_month_end.replace(day=1), last_month_end)),
                                 ("this-month", (today.replace(day=1), today)), ("today", (today, today))):
        await page.click(f'[data-preset="{preset}"]')
        await ready(page)
        assert (url_state(page)["start_date"], url_state(page)["end_date"]) == ([start.isoformat()], [end.isoformat()]), preset
        assert (await page.input_value("#start"), await page.input_value("#end")) == (start.isoformat(), end.isoformat())
        if (VENDOR / "uPlot.iife.min.js").exists():
            labels = await x_labels(page)
            assert (labels[0], labels[-1]) == (start.isoformat(), end.isoformat()), preset
        assert await page.inner_text("#total-spend") == "$0"
    assert errors == []
    await context.close()


async def test_logs_paged_sorted_filtered_and_opened(site, browser):
    """Next page, sorting, the status filter and a log's detail (every column, opened by keyboard) equal the API's."""
    context, page, errors = await open_page(browser, site)

    async def shown_ids() -> list[str]:
        return [r[1] for r in await page.eval_on_selector_all("#logs tbody tr", ROWS)]

    async def api_ids(**params: str) -> list[str]:
        return [r["request_id"] for r in (await api(site, "/spend/logs/ui", **MONTH, page_size="25", **params))["data"]]

    await page.click("#logs-next")
    await ready(page)
    assert await shown_ids() == await api_ids(page="2")
    await page.click('#logs button.sort:has-text("Spend")')
    await ready(page)
    assert url_state(page)["logs_sort"] == ["spend"]
    assert await shown_ids() == await api_ids(sort_by="spend", sort_order="desc")
    await page.click('#logs button.sort:has-text("Spend")')
    await ready(page)
    assert await shown_ids() == await api_ids(sort_by="spend", sort_order="asc")
    await page.select_option("#logs-status", "failure")
    await ready(page)
    failed = await api_ids(sort_by="spend", sort_order="asc", status_filter="failure")
    assert await shown_ids() == failed and len(failed) == 11

    await page.focus(f'#logs button.link:text-is("{failed[0]}")')  # by keyboard
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#log-detail[open]")
    assert url_state(page)["request_id"] == [failed[0]]
    row = (await api(site, "/spend/logs", request_id=failed[0]))[0]
    fields = dict(await page.eval_on_selector_all("#detail-fields dd", "dds => dds.map(d => [d.dataset.field, d.textContent])"))
    assert set(row) <= set(fields)
    assert fields["spend"] == money(row["spend"])
    assert (fields["request_duration_ms"], fields["catalog_version"], fields["api_base"]) == \
        (str(row["request_duration_ms"]), "catalog-2024-06", "https://api.openai.com/v1")
    assert json.loads(fields["error"]) == {"error_code": "429", "error_message": "rate limited"}
    assert json.loads(fields["metadata"]) == numbers_as_text(row["metadata"])  # the page keeps every number's digits as text
    await page.reload()
    await page.wait_for_selector("#log-detail[open]")
    await page.keyboard.press("Escape")
    await page.wait_for_function("!location.search.includes('request_id')")
    assert errors == []
    await context.close()


async def test_budgets_and_usage_csv(site, browser):
    """The budgets CSV holds the API's budget rows; the page's CSV holds its days to the digit."""
    context, page, errors = await open_page(browser, site)
    async with page.expect_download() as download_info:
        await page.click("#budgets-csv")
    lines = list(csv.reader(io.StringIO(Path(await (await download_info.value).path()).read_text())))
    budgets = await api(site, "/global/spend/budgets")
    assert lines[0][:5] == ["kind", "id", "name", "spend_usd", "max_budget_usd"]
    assert [(r[0], r[2], Decimal(r[3]), Decimal(r[4]), r[8]) for r in lines[1:]] == \
        [(b["kind"], b["name"], b["spend"], Decimal(b["max_budget"]), str(b["soft_budget_crossed"]).lower()) for b in budgets]

    async with page.expect_download() as download_info:
        await page.click("#export")
    lines = list(csv.reader(io.StringIO(Path(await (await download_info.value).path()).read_text())))
    usage = await api(site, "/global/spend/usage", **MONTH)
    assert [r[:4] for r in lines if r[0] == "day"] == \
        [["day", d["date"], plain(d["spend"]), str(d["api_requests"])] for d in usage["daily"]]
    assert errors == []
    await context.close()


async def test_empty_and_error_states_are_said_in_words(site, browser):
    """A filter matching nothing empties every table with a sentence; a read the API refuses shows its reason."""
    context, page, errors = await open_page(browser, site, "start_date=2024-06-01&end_date=2024-06-30&key=nobody")
    assert await page.inner_text("#total-spend") == "$0"
    assert await page.eval_on_selector_all("#top-keys tbody tr", ROWS) == [["No spend in this range"]]
    assert await page.eval_on_selector_all("#logs tbody tr", ROWS) == [["No spend logs match"]]
    assert await page.inner_text("#logs-page") == "No logs"
    await page.goto(f"{site}/ui?start_date=2024-06-01&end_date=2024-06-30&logs_sort=api_key")
    await ready(page)
    assert await page.inner_text("#status") == \
        "Could not load spend logs: sort_by must be one of startTime, spend, total_tokens, request_duration_ms, model; got 'api_key'"
    assert await page.get_attribute("#logs-card", "class") == "card failed"
    assert errors == []
    await context.close()


async def test_plain_key_cannot_sign_in(site, browser):
    """A key without get_spend_routes is told why and sees no data."""
    page = await browser.new_page()
    await page.goto(site + "/ui")
    await page.fill("#key", PLAIN_KEY)
    await page.click("#signin-form button")
    await page.wait_for_function("document.getElementById('signin-error').textContent.length > 0")
    assert "get_spend_routes" in await page.inner_text("#signin-error")
    assert await page.locator("#usage").is_hidden()
    await page.close()


async def test_spend_reader_key_sees_what_the_api_shows_it(site, browser):
    """A key with get_spend_routes signs in and sees the same figures as the API gives it."""
    context, page, errors = await open_page(browser, site, key=READER_KEY)
    await page_usage_equals_api(page, site, **MONTH)
    assert errors == []
    await context.close()


def numbers_as_text(value: Any) -> Any:
    """A JSON value with every number as its text, as the page's exact-digit parser shows it."""
    if isinstance(value, dict):
        return {k: numbers_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_as_text(v) for v in value]
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return str(value)
    return value
