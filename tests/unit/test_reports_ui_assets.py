"""The Usage page's files: served when present, an OpenAI-shaped 404 otherwise (never a file
outside static/)."""

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.reports.app import build_app
from services.reports.settings import ReportsSettings

STATIC = Path(__file__).resolve().parents[2] / "services" / "reports" / "static"


@pytest.mark.parametrize("path", ["/ui/assets/nope.js", "/ui/assets/../app.py", "/ui/assets/%2E%2E/app.py"])
async def test_a_missing_or_outside_asset_is_an_openai_shaped_404(path: str) -> None:
    """A missing asset, or a path that climbs out of static/, is a 404 in OpenAI's error shape."""
    app = build_app(ReportsSettings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    async with TestClient(TestServer(app)) as client:
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["error"]["type"] == "not_found_error"


async def test_an_asset_is_served_as_it_is_on_disk() -> None:
    """An existing asset is served byte for byte as it is on disk."""
    app = build_app(ReportsSettings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/ui/assets/usage.js")
        assert response.status == 200
        assert await response.read() == (STATIC / "usage.js").read_bytes()
