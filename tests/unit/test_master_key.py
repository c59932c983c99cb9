"""The master-key rule every service applies alike (shared/master_key.py): a guessable key is
refused off loopback with the same message, accepted on loopback; master-key calls carry a label."""

import pytest

from services.proxy.app import build_app as build_proxy
from services.proxy.auth.keys import Authenticator, KeyTable
from services.proxy.settings import ProxySettings
from services.reports.app import build_app as build_reports
from services.reports.params import key_hash
from services.reports.settings import ReportsSettings
from shared.master_key import MASTER_KEY_ALIAS, WeakMasterKey, check_master_key, is_loopback, weak_key_reason
from shared.pricing import load_catalog
from shared.settings import CommonSettings

STRONG = "sk-Zq8v0Lr2Xc9Tn4Wb7Hd1"
NOWHERE = "postgresql://nobody@127.0.0.1:1/none"
WEAK_ON_ANY = ("the master key is weak (it is a well-known example key) and the {service} would listen on 0.0.0.0: "
               "set LITELLM_MASTER_KEY to a long random value (e.g. sk- followed by 32 random characters), "
               "or listen on 127.0.0.1 only (TALLY_HOST)")


@pytest.mark.parametrize("key, reason", [
    ("sk-1234", "it is a well-known example key"),
    ("SK-MASTER", "it is a well-known example key"),
    ("sk-short-key", "it is shorter than 16 characters"),
    ("sk-aaaaabbbbbcccccddddd", "it repeats too few distinct characters"),
    (STRONG, None),
])
def test_weak_key_reason_names_why(key: str, reason: str | None) -> None:
    """Well-known, short and repetitive keys are weak, each with its own reason; a random key is not."""
    assert weak_key_reason(key) == reason


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
                                            ("tally.internal", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only loopback addresses and `localhost` count as this machine only; a name or wildcard does not."""
    assert is_loopback(host) is loopback


def test_weak_key_off_loopback_is_refused_with_the_shared_message() -> None:
    """check_master_key raises WeakMasterKey naming the service, the reason and what to do."""
    with pytest.raises(WeakMasterKey) as raised:
        check_master_key("sk-1234", "0.0.0.0", "pricer")
    assert str(raised.value) == WEAK_ON_ANY.format(service="pricer")


@pytest.mark.parametrize("key", ["sk-1234", STRONG, None])
def test_loopback_accepts_any_key(key: str | None) -> None:
    """On loopback a weak key (the development stack's sk-1234), a strong one or none all start."""
    assert check_master_key(key, "127.0.0.1", "proxy") is None


def test_reports_refuses_sk_1234_on_every_address() -> None:
    """The reports service will not start with sk-1234 on 0.0.0.0, with the proxy's message."""
    with pytest.raises(WeakMasterKey) as raised:
        build_reports(ReportsSettings(database_url=NOWHERE, host="0.0.0.0", master_key="sk-1234"))
    assert str(raised.value) == WEAK_ON_ANY.format(service="reports service")


def test_reports_accepts_sk_1234_on_loopback_and_a_strong_key_anywhere() -> None:
    """sk-1234 on 127.0.0.1 and a strong key on 0.0.0.0 both build the reports app."""
    assert build_reports(ReportsSettings(database_url=NOWHERE, host="127.0.0.1", master_key="sk-1234")) is not None
    assert build_reports(ReportsSettings(database_url=NOWHERE, host="0.0.0.0", master_key=STRONG)) is not None


def test_proxy_refuses_sk_1234_on_every_address_with_the_same_message() -> None:
    """The proxy applies the same rule and message as the reports service."""
    settings = ProxySettings(common=CommonSettings(host="0.0.0.0"), master_key="sk-1234")
    with pytest.raises(WeakMasterKey) as raised:
        build_proxy(settings, load_catalog())
    assert str(raised.value) == WEAK_ON_ANY.format(service="proxy")


def test_master_key_calls_carry_the_label_not_the_hash() -> None:
    """The master key authenticates as LiteLLM's label `litellm_proxy_master_key`, never its SHA-256."""
    caller = Authenticator("sk-1234", KeyTable()).authenticate({"Authorization": "Bearer sk-1234"})
    assert (caller.api_key_hash, caller.is_master, caller.user_id) == (MASTER_KEY_ALIAS, True, "default_user_id")
    assert MASTER_KEY_ALIAS == "litellm_proxy_master_key"


@pytest.mark.parametrize("given, wanted", [
    ("sk-1234", MASTER_KEY_ALIAS),
    (MASTER_KEY_ALIAS, MASTER_KEY_ALIAS),
    ("sk-other-key", "cac422eee4bd6113bfaae9f21c4f0e7c733aa46e9d4e135b6f8e590164d5baee"),
    ("", None),
])
def test_reports_key_filter_maps_the_master_key_to_its_label(given: str, wanted: str | None) -> None:
    """`api_key=<master key>` filters on the label its calls carry; other sk- keys on their hash."""
    assert key_hash(given, "sk-1234") == wanted
