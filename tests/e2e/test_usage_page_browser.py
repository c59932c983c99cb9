"""The Usage page in headless Chromium (Debian's package, driven by Playwright): sign in, pick a
date range, and the numbers on the page equal the API's to the last digit; CSV export carries
them too. A screenshot lands in test-output/usage_page.png."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from services.reports.app import build_app
from tests.fixtures.stack import serving
from tests.fixtures.reports_support import (
    MASTER, PLAIN_KEY, READER_KEY, load_test_catalog, reports_settings_for, seed,
)

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
VENDOR = Path(__file__).resolve().parents[2] / "services" / "reports" / "static" / "vendor" / "uPlot.iife.min.js"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
START, END = "2024-04-30", "2024-05-02"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: run `make browser` "
                                                     "(apt-get install -y chromium)"),
]


@pytest.fixture
async def site(database_url: str, kafka_bootstrap: str) -> AsyncIterator[str]:
    """The reports service on a real port, on the seeded database."""
    seed(database_url)
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


async def api(base: str, path: str, **params: str) -> object:
    async with aiohttp.ClientSession() as session:
        async with session.get(base + path, params=params, headers={"Authorization": f"Bearer {MASTER}"}) as response:
            assert response.status == 200
            return json.loads(await response.text(), parse_float=Decimal)


def dollars(text: str) -> Decimal:
    assert text.startswith("$"), text
    return Decimal(text[1:])


async def sign_in_and_show(page: object, base: str, key: str) -> None:
    await page.goto(base + "/ui")
    await page.fill("#key", key)
    await page.click("#signin-form button")
    await page.wait_for_selector("#range:not([hidden])")
    await page.fill("#start", START)
    await page.fill("#end", END)
    await page.click("#range button[type=submit]")
    await page.wait_for_function(f"document.body.dataset.loaded === '{START}..{END}'")


async def test_usage_page_shows_the_apis_numbers(site, browser):
    """Signed in with the master key, the page's totals, top keys, models, tags and logs equal the API's."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in_and_show(page, site, MASTER)

    daily = await api(site, "/global/spend/logs", start_date=START, end_date=END)
    assert dollars(await page.inner_text("#total-spend")) == sum((d["spend"] for d in daily), Decimal(0)) == Decimal("0.4360898333333333333")

    keys = await api(site, "/global/spend/keys", limit="10", start_date=START, end_date=END)
    shown_keys = await page.eval_on_selector_all("#top-keys tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [(name, dollars(spend)) for name, spend in shown_keys] == [(k["key_alias"], k["total_spend"]) for k in keys]

    models = await api(site, "/global/spend/models", limit="10", start_date=START, end_date=END)
    shown_models = await page.eval_on_selector_all("#top-models tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [(m, int(t), dollars(s)) for m, t, s in shown_models] == [(m["model"], m["total_tokens"], m["total_spend"]) for m in models]

    teams = await page.eval_on_selector_all("#top-teams tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [(t, dollars(s)) for t, s in teams] == [("Research", Decimal("0.3335473333333333333")), ("Prod Team", Decimal("0.10246")),
                                                  ("Unassigned", Decimal("0.0000825"))]

    tags = await page.eval_on_selector_all("#top-tags tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [(t, int(n), dollars(s)) for t, n, s in tags] == [("env:prod", 2, Decimal("0.10123")), ("jobA", 3, Decimal("0.002674"))]

    logs = await page.eval_on_selector_all("#logs tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [(row[1], dollars(row[7])) for row in logs][:2] == [("r6", Decimal("0.3333333333333333333")), ("r5", Decimal("0.1"))]
    r1 = next(row for row in logs if row[1] == "r1")
    assert await page.eval_on_selector_all("#logs tbody tr:last-child .tag", "tags => tags.map(t => t.textContent)") == ["jobA", "env:prod"]
    assert r1[5] == "jobAenv:prod"

    if VENDOR.exists():
        assert await page.locator("#chart canvas").count() == 1  # the chart library drew it
    else:
        assert await page.locator("#daily-table").is_visible()

    async with page.expect_download() as download_info:
        await page.click("#export")
    download = await download_info.value
    csv_text = Path(await download.path()).read_text()
    assert "day,2024-05-02,0.3333333333333333333,," in csv_text.splitlines()
    assert "tag,jobA,0.002674,3," in csv_text.splitlines()

    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / "usage_page.png"), full_page=True)
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


async def test_spend_reader_key_signs_in(site, browser):
    """A key with get_spend_routes signs in and sees the same total."""
    page = await browser.new_page()
    await sign_in_and_show(page, site, READER_KEY)
    assert dollars(await page.inner_text("#total-spend")) == Decimal("0.4360898333333333333")
    await page.close()
