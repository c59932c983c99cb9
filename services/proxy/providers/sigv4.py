"""AWS Signature Version 4 for Bedrock calls, by botocore's own signer; credentials found as
LiteLLM finds them (litellm_params first, then the environment, then a named profile).

Credentials are resolved once at start-up; botocore refreshes temporary ones (a profile's
assumed role, SSO) itself when they near expiry. Each request is signed over its method, URL,
Content-Type, Host, X-Amz-Date (and X-Amz-Security-Token) and the SHA-256 of its body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from services.proxy.errors import ConfigurationError

SERVICE = "bedrock"
_SIGNED = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


def _param(params: Any, name: str, env: Mapping[str, str], *env_names: str) -> str | None:
    value = (params.model_extra or {}).get(name)
    if value:
        return str(value)
    return next((env[n] for n in env_names if env.get(n)), None)


def region_of(params: Any, env: Mapping[str, str]) -> str:
    """aws_region_name, else AWS_REGION_NAME / AWS_REGION / AWS_DEFAULT_REGION, else us-west-2 (LiteLLM's default)."""
    return _param(params, "aws_region_name", env, "AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION") or "us-west-2"


def credentials_of(params: Any, env: Mapping[str, str], where: str) -> Any:
    """Static keys (with a session token when given), or the named profile's (refreshable) credentials."""
    key_id = _param(params, "aws_access_key_id", env, "AWS_ACCESS_KEY_ID")
    secret = _param(params, "aws_secret_access_key", env, "AWS_SECRET_ACCESS_KEY")
    token = _param(params, "aws_session_token", env, "AWS_SESSION_TOKEN")
    profile = (params.model_extra or {}).get("aws_profile_name")
    if key_id and secret and not profile:
        return Credentials(key_id, secret, token)
    profile = profile or env.get("AWS_PROFILE")
    try:
        found = Session(profile=profile).get_credentials() if profile else None
    except BotoCoreError as exc:
        raise ConfigurationError(f"{where}: AWS profile {profile!r}: {exc}") from exc
    if found is None:
        raise ConfigurationError(f"{where}: no AWS credentials: set aws_access_key_id and aws_secret_access_key "
                                 "(and aws_session_token for temporary keys), or aws_profile_name, or api_key for a Bedrock API key")
    return found


class Signer:
    def __init__(self, credentials: Any, region: str) -> None:
        self.credentials = credentials
        self.region = region

    def headers(self, url: str, payload: bytes, content_type: str = "application/json") -> bytes:
        """The signature's header lines for a POST of `payload` to `url`."""
        frozen = self.credentials.get_frozen_credentials()
        request = AWSRequest(method="POST", url=url, data=payload, headers={"Content-Type": content_type})
        SigV4Auth(Credentials(frozen.access_key, frozen.secret_key, frozen.token), SERVICE, self.region).add_auth(request)
        return "".join(f"{name}: {request.headers[name]}\r\n" for name in _SIGNED if name in request.headers).encode("latin-1")
