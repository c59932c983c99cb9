"""The proxy's errors. Each maps to one OpenAI-style answer via shared.errors.openai_errors."""

from __future__ import annotations

from shared.errors import TallyError


class ProxyError(TallyError):
    """Base of every error the proxy answers itself."""


class InvalidRequest(ProxyError):
    status = 400


class AuthError(ProxyError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(f"Authentication Error, {message}", type="auth_error", code="401")


class KeyRefused(AuthError):
    """A virtual key this process's key table does not accept (unknown, blocked, expired): the
    table may be a few milliseconds behind a change made through another replica or worker."""


class PermissionDenied(ProxyError):
    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message, type="permission_error", code="403")


class UpstreamError(ProxyError):
    """The upstream answered with an error status, or could not be reached, or timed out."""

    def __init__(self, message: str, status: int, *, type: str | None = None, code: str | None = None) -> None:
        super().__init__(message, status=status, type=type, code=code)
        self.retry_after_s: float | None = None  # the upstream's Retry-After, read where a retry may follow


class ConfigurationError(ProxyError):
    """The proxy cannot start with this configuration (message says what to change)."""

    status = 500


class ServiceUnavailable(ProxyError):
    """The proxy cannot take the call now (shutting down, or the usage log cannot accept events):
    refused before the upstream is called, so nothing is paid for that cannot be recorded."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, type="service_unavailable", code="503")
