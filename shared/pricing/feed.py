"""The catalog topic's adapter: every pricing process (the pricer, each proxy worker) follows
catalog.v1 into its CatalogVersions and publishes what its price files say.

Publishing happens at start-up (when the files differ from the topic's newest version), on
`POST /reload/model_cost_map`, and when a price file changes on disk (polled). Every process
reads the same files (TALLY_PRICE_MAP beside the default), so every publication of one change
carries the same version, and a duplicate changes nothing: the newest publication is current."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from aiokafka.errors import KafkaError

from shared.background import background_task
from shared.events import CatalogPublished, decode_as, encode
from shared.kafka import idempotent_producer, stop_clients
from shared.pricing.catalog import DEFAULT_CATALOG_PATH, Catalog, CatalogError, load_catalog
from shared.pricing.versions import CatalogVersions, publication
from shared.record_limits import MAX_RECORD_BYTES
from shared.settings import CommonSettings
from shared.supervise import supervise
from shared.topic_follower import TopicFollower
from shared.topics import CATALOG

log = structlog.get_logger(__name__)

CATALOG_KEY = b"catalog"
SWITCH_WAIT_S = 5.0  # a publisher waits this long to read its own publication back


class CatalogFeed(TopicFollower):
    retry_event = "catalog_follow_retry"

    def __init__(self, common: CommonSettings, versions: CatalogVersions, price_files: Sequence[Path],
                 default: Path | None = DEFAULT_CATALOG_PATH) -> None:
        super().__init__(common, CATALOG, fetch_max_wait_ms=200, poll_max_records=50)
        self.versions = versions
        self.price_files = tuple(price_files)
        self.default = default
        self.newest_published: str | None = None  # the topic's newest version, as read
        self.files_published: str | None = None  # the files' version, once on the topic
        versions.deferred = True  # until caught up: only the newest version is parsed

    def on_caught_up(self) -> None:
        before = self.versions.current.version
        self.versions.switch_to_newest()
        if self.newest_published is not None:
            self._report(before, self.newest_published)

    def apply(self, raw: bytes | None) -> None:
        try:
            event = decode_as(CatalogPublished, raw or b"")
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            # One unusable record must not stop the follower: the current catalog stays.
            log.error("catalog_record_unusable", error=str(exc)[:500])
            return
        before = self.versions.current.version
        self.versions.apply(event)
        self.newest_published = event.version
        self._report(before, event.version)

    def _report(self, before: str, newest: str) -> None:
        current = self.versions.current.version
        if newest in self.versions.unusable:
            log.error("catalog_record_unusable", version=newest, error=self.versions.unusable[newest][:500])
        elif current != before:
            log.info("catalog_version_current", version=current, models=len(self.versions.current))

    def load_files(self) -> Catalog:
        return load_catalog(*self.price_files, default=self.default)

    def file_paths(self) -> list[Path]:
        return ([self.default] if self.default is not None else []) + list(self.price_files)

    async def publish_files(self, reason: str) -> Catalog:
        """Read the price files; publish them when they differ from the topic's newest version.
        Returns the files' catalog. CatalogError: a file cannot be used (nothing is published)."""
        catalog = self.load_files()
        self.versions.add(catalog)
        if catalog.version != self.newest_published:
            await self.publish(catalog, reason)
        self.files_published = catalog.version
        return catalog

    async def publish(self, catalog: Catalog, reason: str) -> None:
        """Publish `catalog` (acks=all), then read the topic up to it, so this process has switched."""
        value = encode(publication(catalog, reason))
        if len(value) > MAX_RECORD_BYTES:
            raise CatalogError(f"the catalog is {len(value)} bytes compressed, over the record limit of {MAX_RECORD_BYTES}")
        producer = idempotent_producer(self.common)
        try:
            await producer.start()
            await producer.send_and_wait(self.topic, value, key=CATALOG_KEY)
        finally:
            await stop_clients(producer)
        log.info("catalog_published", version=catalog.version, models=len(catalog), reason=reason)
        if not await self.read_to_end(SWITCH_WAIT_S):
            log.warning("catalog_switch_slow", version=catalog.version, waited_s=SWITCH_WAIT_S)

    async def watch_files(self, poll_s: float) -> None:
        """Publish the files again whenever one of them changes (size or modification time), and
        once the topic answers if start-up could not publish them."""
        seen = file_signature(self.file_paths())
        while True:
            await asyncio.sleep(poll_s)
            now = file_signature(self.file_paths())
            pending = self.files_published is None and self.caught_up.is_set()
            if now == seen and not pending:
                continue
            try:
                await self.publish_files("file_change" if now != seen else "startup")
            except CatalogError as exc:  # a file half-written or wrong: keep the current prices
                log.error("price_file_unusable", error=str(exc))
                seen, self.files_published = now, self.files_published or ""
            except (KafkaError, OSError) as exc:
                log.warning("catalog_publish_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=poll_s)
            else:
                seen = now


def file_signature(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    signature = []
    for path in paths:
        try:
            stat = path.stat()
            signature.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            signature.append((str(path), -1, -1))
    return tuple(signature)


@asynccontextmanager
async def following_catalog(feed: CatalogFeed, start_wait_s: float, poll_s: float) -> AsyncIterator[CatalogFeed]:
    """Follow the catalog topic for as long as the context lasts. At start, wait (at most
    `start_wait_s`) to read it to its end, then publish the files if they differ from it; with
    Kafka away, the files' catalog stays current. `poll_s` > 0 watches the files."""
    async with background_task(supervise("catalog_feed", feed.run), name="catalog-feed"):
        try:
            await asyncio.wait_for(feed.caught_up.wait(), start_wait_s)
            await asyncio.wait_for(feed.publish_files("startup"), start_wait_s)
        except (TimeoutError, OSError, KafkaError, CatalogError) as exc:
            log.warning("catalog_not_synced", waited_s=start_wait_s, error=f"{type(exc).__name__}: {exc}",
                        hint="pricing uses the price files until the catalog topic answers")
        if poll_s > 0:
            async with background_task(supervise("price_file_watch", lambda: feed.watch_files(poll_s)),
                                       name="price-file-watch"):
                yield feed
        else:
            yield feed
