"""Price catalog versions: the current one, and every older one by its id.

Pure: the catalog topic's adapter (feed.py) feeds it. A priced event names the version that
priced it; an event the proxy quoted under a version is priced by the pricer under that same
version, so the cost header and the spend log agree, and a replay prices every event as the
original run did, whatever has been published since."""

from __future__ import annotations

import base64
import gzip
from collections import OrderedDict
from collections.abc import Callable

from shared.events import CatalogPublished
from shared.pricing.catalog import Catalog, CatalogError, catalog_from_text, entries_json

PARSED_KEPT = 8  # parsed catalogs held besides the current one; the rest stay compressed


class CatalogVersions:
    """The current catalog plus every version seen, parsed on first use (a few kept parsed)."""

    def __init__(self, current: Catalog) -> None:
        self.current = current
        self._compressed: dict[str, str] = {}  # version -> CatalogPublished.prices
        self._parsed: OrderedDict[str, Catalog] = OrderedDict({current.version: current})
        self._sources: dict[str, tuple[str, ...]] = {current.version: current.sources}
        self.listeners: list[Callable[[Catalog], None]] = []
        self.unusable: dict[str, str] = {}  # version -> why its publication could not be used
        self._seen: set[str] = set()  # publications applied (event ids): a re-read changes nothing
        self._newest: str | None = None
        # While a reader catches up with the topic, only the newest publication is made current
        # (and parsed): the versions before it are kept compressed until asked for.
        self.deferred = False

    def __contains__(self, version: object) -> bool:
        return version in self._parsed or version in self._compressed

    def known(self) -> list[str]:
        return list(dict.fromkeys([*self._compressed, *self._parsed]))

    def get(self, version: str | None) -> Catalog | None:
        """The catalog of `version`, or None when it was never seen."""
        if version is None:
            return None
        catalog = self._parsed.get(version)
        if catalog is not None:
            self._parsed.move_to_end(version)
            return catalog
        prices = self._compressed.get(version)
        if prices is None:
            return None
        try:
            catalog = unpack(version, prices, self._sources.get(version, ()))
        except CatalogError as exc:
            del self._compressed[version]
            self.unusable[version] = str(exc)
            return None
        self._keep_parsed(catalog)
        return catalog

    def add(self, catalog: Catalog) -> None:
        """A catalog known locally (loaded from files): usable by version, not made current."""
        self._keep_parsed(catalog)

    def apply(self, event: CatalogPublished) -> None:
        """A published version becomes the current one. The newest publication wins, so publishing
        an older version again rolls back to it; a publication read again (a reconnected reader
        starts from the topic's beginning) changes nothing. A publication whose prices cannot be
        used (they do not hash to their version) is dropped, and the current catalog stays."""
        if event.event_id in self._seen:
            return
        self._seen.add(event.event_id)
        self._compressed[event.version] = event.prices
        self._sources[event.version] = tuple(event.sources)
        self._newest = event.version
        if not self.deferred:
            self.switch_to_newest()

    def switch_to_newest(self) -> None:
        """Make the newest publication applied current (once a reader has caught up)."""
        self.deferred = False
        if self._newest is None or self._newest == self.current.version:
            return
        catalog = self.get(self._newest)
        if catalog is None:
            return  # unusable: `unusable` names it
        self.current = catalog
        for listener in self.listeners:
            listener(catalog)

    def _keep_parsed(self, catalog: Catalog) -> None:
        self._parsed[catalog.version] = catalog
        self._parsed.move_to_end(catalog.version)
        while len(self._parsed) > PARSED_KEPT + 1:
            oldest = next(v for v in self._parsed if v != self.current.version)
            del self._parsed[oldest]


def publication(catalog: Catalog, reason: str) -> CatalogPublished:
    """The event that publishes `catalog`."""
    prices = base64.b64encode(gzip.compress(entries_json(catalog.entries).encode(), mtime=0)).decode("ascii")
    return CatalogPublished(version=catalog.version, models=len(catalog), prices=prices,
                            sources=[str(s) for s in catalog.sources], reason=reason)  # type: ignore[arg-type]


def unpack(version: str, prices: str, sources: tuple[str, ...] = ()) -> Catalog:
    """The catalog a publication carries, checked against the version it claims."""
    try:
        text = gzip.decompress(base64.b64decode(prices, validate=True)).decode("utf-8")
    except (ValueError, OSError, EOFError) as exc:
        raise CatalogError(f"catalog version {version}: unreadable prices: {exc}") from exc
    catalog = catalog_from_text(text, f"catalog.v1 version {version}")
    if catalog.version != version:
        raise CatalogError(f"catalog version {version}: its prices hash to {catalog.version}")
    return Catalog(entries=catalog.entries, version=version, sources=sources or catalog.sources)
