"""Catalog versions: a publication carries a catalog exactly, the newest publication is current,
older versions stay available by id, and the pricer prices an event under the version it names."""

from __future__ import annotations

from decimal import Decimal as D

import orjson
import pytest

from services.pricer.pricing_step import Priced, VersionUnknown, price_message
from shared.events import TokenUsage, encode
from shared.pricing import Catalog, CatalogError, load_catalog
from shared.pricing.versions import CatalogVersions, publication, unpack
from tests.fixtures.events import usage_event

PRICED_AT = "2026-01-01T00:00:00+00:00"


def catalog_with(input_rate: str) -> Catalog:
    return Catalog.from_entries({"my-model": {"litellm_provider": "openai", "mode": "chat", "max_tokens": D("8192"),
                                              "input_cost_per_token": D(input_rate), "output_cost_per_token": D("2E-6")}})


def test_publication_round_trips_the_default_catalog_digit_for_digit() -> None:
    """The whole default catalog, published and read back, has the same entries and version."""
    catalog = load_catalog()
    event = publication(catalog, "startup")
    back = unpack(event.version, event.prices)
    assert (back.version, dict(back.entries), event.models) == (catalog.version, dict(catalog.entries), len(catalog))


def test_publication_keeps_non_price_numbers_and_exponents() -> None:
    """max_tokens stays a number and 1.5e-07 stays exactly 0.00000015 through a publication."""
    catalog = catalog_with("1.5e-07")
    back = unpack(catalog.version, publication(catalog, "reload").prices)
    assert (back.get("my-model")["max_tokens"], back.get("my-model")["input_cost_per_token"]) == (D("8192"), D("0.00000015"))


def test_prices_that_do_not_hash_to_the_version_are_refused() -> None:
    """A publication whose prices were altered is not taken for the version it claims."""
    event = publication(catalog_with("1e-06"), "reload")
    with pytest.raises(CatalogError, match="hash to"):
        unpack("0" * 16, event.prices)


def test_newest_publication_is_current_and_older_versions_stay_by_id() -> None:
    """After v1 then v2 are published, v2 prices new calls and v1 is still there by its id."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    versions = CatalogVersions(load_catalog())
    versions.apply(publication(v1, "startup"))
    versions.apply(publication(v2, "reload"))
    assert (versions.current.version, versions.get(v1.version).get("my-model")["input_cost_per_token"]) == (v2.version, D("0.000001"))


def test_publishing_an_older_version_again_rolls_back_to_it() -> None:
    """The newest publication wins, even when it repeats an earlier version."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    versions = CatalogVersions(v1)
    for catalog in (v2, v1):
        versions.apply(publication(catalog, "reload"))
    assert versions.current.version == v1.version


def test_listeners_hear_each_switch_once() -> None:
    """A listener is told of a new current version, not of a repeated publication of it."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    versions, heard = CatalogVersions(v1), []
    versions.listeners.append(lambda c: heard.append(c.version))
    for catalog in (v2, v2, v1):
        versions.apply(publication(catalog, "reload"))
    assert heard == [v2.version, v1.version]


def test_old_versions_are_parsed_again_when_evicted() -> None:
    """More versions than are kept parsed: the oldest is rebuilt from its publication, exactly."""
    catalogs = [catalog_with(f"{n}e-06") for n in range(1, 13)]
    versions = CatalogVersions(catalogs[0])
    for catalog in catalogs:
        versions.apply(publication(catalog, "reload"))
    assert versions.get(catalogs[1].version).get("my-model")["input_cost_per_token"] == D("0.000002")


def priced(outcome: object) -> tuple[D, str]:
    assert isinstance(outcome, Priced)
    data = orjson.loads(outcome.value)
    return D(data["cost"]["total"]), data["catalog_version"]


def test_pricer_prices_an_event_under_the_version_the_proxy_quoted() -> None:
    """An event quoted under v1 is priced at v1's rate after v2 became current: 20 × 1e-06 + 80 × 2e-06."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    versions = CatalogVersions(v1)
    versions.apply(publication(v2, "reload"))
    event = usage_event(model="openai/my-model", usage=TokenUsage(prompt_tokens=20, completion_tokens=80),
                        quoted_catalog_version=v1.version)
    assert priced(price_message(versions, encode(event), PRICED_AT)) == (D("0.00018"), v1.version)


def test_event_without_a_quoted_version_is_priced_under_the_current_one() -> None:
    """No quoted version: the current catalog prices it: 20 × 3e-06 + 80 × 2e-06."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    versions = CatalogVersions(v1)
    versions.apply(publication(v2, "reload"))
    event = usage_event(model="openai/my-model", usage=TokenUsage(prompt_tokens=20, completion_tokens=80))
    assert priced(price_message(versions, encode(event), PRICED_AT)) == (D("0.00022"), v2.version)


def test_unseen_version_is_asked_about_then_priced_as_current() -> None:
    """A version not read yet is reported first; with unknown_ok it is priced under the current one."""
    versions = CatalogVersions(catalog_with("1e-06"))
    event = encode(usage_event(model="openai/my-model", usage=TokenUsage(prompt_tokens=20, completion_tokens=80),
                               quoted_catalog_version="feedfacefeedface"))
    assert price_message(versions, event, PRICED_AT) == VersionUnknown("feedfacefeedface")
    assert priced(price_message(versions, event, PRICED_AT, unknown_ok=True)) == (D("0.00018"), versions.current.version)


def test_reading_a_publication_again_changes_nothing() -> None:
    """A reconnected reader re-reads the topic from its start: old publications do not switch back."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    first, second = publication(v1, "startup"), publication(v2, "reload")
    versions = CatalogVersions(v1)
    for event in (first, second, first):
        versions.apply(event)
    assert versions.current.version == v2.version


def test_while_catching_up_only_the_newest_version_becomes_current() -> None:
    """Deferred: publications are kept compressed, and the newest is made current once caught up."""
    catalogs = [catalog_with(f"{n}e-06") for n in range(1, 4)]
    versions, heard = CatalogVersions(load_catalog()), []
    versions.listeners.append(lambda c: heard.append(c.version))
    versions.deferred = True
    for catalog in catalogs:
        versions.apply(publication(catalog, "reload"))
    versions.switch_to_newest()
    assert (heard, versions.current.version) == ([catalogs[-1].version], catalogs[-1].version)


def test_a_tampered_publication_is_dropped_and_the_current_catalog_stays() -> None:
    """Prices that do not hash to their version never become current, and say why."""
    v1, v2 = catalog_with("1e-06"), catalog_with("3e-06")
    forged = publication(v2, "reload").model_copy(update={"prices": publication(v1, "reload").prices})
    versions = CatalogVersions(v1)
    versions.apply(forged)
    assert (versions.current.version, versions.get(v2.version), "hash to" in versions.unusable[v2.version]) == (
        v1.version, None, True)
