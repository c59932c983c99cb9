"""OAuth access tokens for Vertex AI from a service account (google-auth), as LiteLLM gets them:
`vertex_credentials` (a service-account JSON file's path, or its JSON text), else
GOOGLE_APPLICATION_CREDENTIALS.

The token is fetched on the first call and refreshed five minutes before it expires, in a
thread (google-auth's refresh blocks), one refresh at a time; calls meanwhile use the token
still valid. google-auth posts to the account's `token_uri` through `UrllibRequest`, a transport
on the standard library (google-auth's own need `requests` or `urllib3`)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from google.auth import exceptions as google_exceptions
from google.auth import transport
from google.oauth2 import service_account

from services.proxy.errors import ConfigurationError, UpstreamError

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
REFRESH_BEFORE = timedelta(minutes=5)


class _Response(transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, dict(headers), data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class UrllibRequest(transport.Request):
    """google-auth's HTTP transport on urllib (used only to fetch tokens)."""

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None = None, **kwargs: Any) -> _Response:
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or 30) as answer:
                return _Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, exc.headers, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise google_exceptions.TransportError(str(exc)) from exc


def service_account_info(value: str | None, env: Mapping[str, str], where: str) -> dict[str, Any]:
    """The service account's JSON, from `vertex_credentials` (path or JSON text) or GOOGLE_APPLICATION_CREDENTIALS."""
    source = value or env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not source:
        raise ConfigurationError(f"{where}: Vertex AI needs vertex_credentials (a service-account JSON file or its text) "
                                 "or GOOGLE_APPLICATION_CREDENTIALS")
    text = source if source.lstrip().startswith("{") else None
    if text is None:
        try:
            with open(source, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise ConfigurationError(f"{where}: cannot read vertex_credentials {source!r}: {exc.strerror}") from exc
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where}: vertex_credentials is not JSON: {exc}") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigurationError(f"{where}: vertex_credentials must be a service account's key (\"type\": \"service_account\")")
    return info


class AccessTokens:
    def __init__(self, info: dict[str, Any], where: str) -> None:
        try:
            self.credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError) as exc:
            raise ConfigurationError(f"{where}: vertex_credentials: {exc}") from exc
        self.project_id: str | None = info.get("project_id")
        self._lock: asyncio.Lock | None = None
        self._refreshing: asyncio.Task[None] | None = None

    def _fresh_for(self, margin: timedelta) -> bool:
        expiry = self.credentials.expiry  # naive UTC, as google-auth keeps it
        if not self.credentials.token or expiry is None:
            return False
        return expiry.replace(tzinfo=timezone.utc) - margin > datetime.now(timezone.utc)

    async def _refresh(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._fresh_for(REFRESH_BEFORE):
                return
            try:
                await asyncio.to_thread(self.credentials.refresh, UrllibRequest())
            except google_exceptions.GoogleAuthError as exc:
                raise UpstreamError(f"could not get a Vertex AI access token: {exc}", 502, type="api_connection_error") from exc

    async def ready(self) -> None:
        """A valid token: fetched now if there is none; refreshed in the background when it nears expiry."""
        if self._fresh_for(REFRESH_BEFORE):
            return
        if not self._fresh_for(timedelta(seconds=30)):
            await self._refresh()
        elif self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            # A failed background refresh is retried by the next call; the token in hand is still valid.
            self._refreshing.add_done_callback(lambda task: task.cancelled() or task.exception())

    def header(self) -> bytes:
        return f"Authorization: Bearer {self.credentials.token}\r\n".encode("latin-1")
