"""Builds the running service from its inputs: the catalogue, the model repository and the configuration.

The catalogue the shop shows is also written into the event log folder as ``catalogue.parquet``, so the
log is a canonical dataset: ``fashionrec pipeline run --dataset canonical --data-dir <event_log_dir>``
trains on what the shop saw. A past event log (e.g. the pipeline's ingested events) may seed the live
state of customers the store does not know yet.

Products added without retraining (``fashionrec catalogue add``) join the shop's catalogue without a restart
(:class:`CatalogueFollower`): at start, and whenever the background loop sees a new served version, the
products the catalogue updates leading to it added (:func:`fashionrec.repository.catalogue.added_products`)
that the shop does not know yet are appended, ``catalogue.parquet`` is rewritten with them, and only then
is the extended catalogue swapped in (one attribute assignment on the event loop: a page being built keeps
the catalogue it started with, a superset of which the next one gets), so the log's catalogue always
holds every product an accepted event can name. A step that fails is logged and tried again at the next
refresh. Products are never removed (after a rollback the shop keeps showing them; Triton no longer ranks
them, so they come after the ranked ones, in trending order); an experiment arm's own additions are not
followed (only the served version's).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import pandas as pd
from fastapi import FastAPI

from fashionrec import storage
from fashionrec.artifacts import CATALOGUE_FILE
from fashionrec.config import PipelineConfig
from fashionrec.online.app import Lifecycle, create_app
from fashionrec.online.catalogue import ShopCatalogue
from fashionrec.online.event_log import EventLog
from fashionrec.online.events import ShopEvent
from fashionrec.online.experiments import ExperimentRouter
from fashionrec.online.metrics import ShopMetrics
from fashionrec.online.pages import ShopService, store_key
from fashionrec.online.readiness import Readiness
from fashionrec.online.served import ServedView
from fashionrec.online.store import CustomerStore, open_store
from fashionrec.online.triton import Touchpoints
from fashionrec.repository.catalogue import added_products
from fashionrec.stages.ingest import validate_catalogue

LOG_CATALOGUE_FILE = CATALOGUE_FILE  # what the canonical dataset reader (and the experiment report) reads beside events/
IMPORT_BATCH = 256  # customers imported concurrently
BACKGROUND_PERIOD_S = 1.0  # how often impressions are flushed and the log's roll checked
LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


def build_app(config: PipelineConfig, catalogue_uri: str, model_repository: str,
              examples: Sequence[str] = (), history: pd.DataFrame | None = None) -> FastAPI:
    """The app over a new service: catalogue loaded, log recovered, served version read; ``history`` (past
    events) seeds the customers the store does not know before the first request."""
    online = config.online
    frame, _ = validate_catalogue(storage.read_table(catalogue_uri), catalogue_uri)
    served = ServedView.read(model_repository, config.serving)
    follower = CatalogueFollower(model_repository, storage.join(online.event_log_dir, LOG_CATALOGUE_FILE), frame)
    catalogue = follower.start(ShopCatalogue.from_frame(frame), served.version)
    log = EventLog(online.event_log_dir, online.journal_dir, online.log_roll_records, online.log_roll_seconds)
    metrics = ShopMetrics()
    touchpoints = Touchpoints(online, config.serving, observe_batch=metrics.triton_batch_rows.observe)
    router = ExperimentRouter(model_repository, config.serving, config.experiment)
    router.refresh()  # a broken experiment file stops the start, with its reason; later it is logged and kept
    shop = ShopService(catalogue, touchpoints, open_store(online), log, served, config, metrics, examples,
                       router=router)

    async def background() -> None:
        """Flush impressions, roll the event log when due and follow the served version and the experiment, for
        the app's life. A step that fails (the bucket unreachable, a manifest mid-write) is logged and tried
        again next second: the journal keeps every acknowledged event meanwhile."""
        loop = asyncio.get_running_loop()
        refreshed = experiment_read = loop.time()
        while True:
            await asyncio.sleep(BACKGROUND_PERIOD_S)
            await _logged("flushing impressions", shop.flush_impressions())
            await _logged("rolling the event log", asyncio.to_thread(log.roll_if_due))
            if loop.time() - refreshed >= online.served_refresh_s:
                view, catalogue = shop.served, shop.catalogue
                served = await _logged("reading the served version", asyncio.to_thread(
                    shop.served.refreshed, model_repository, config.serving))
                shop.served = served or shop.served
                if shop.served.version != follower.version:  # a new version, or its products not learnt yet
                    await _logged("adding the served version's new products to the catalogue",
                                  follower.follow(shop, shop.served.version))
                if shop.served is not view or shop.catalogue is not catalogue:
                    settle_heap()
                refreshed = loop.time()
            if loop.time() - experiment_read >= config.experiment.refresh_s:
                await _logged("reading the experiment", asyncio.to_thread(router.refresh))
                experiment_read = loop.time()

    async def shutdown() -> None:
        await shop.close()
        await touchpoints.close()
        await shop.store.close()
        await asyncio.to_thread(log.close)

    async def startup() -> None:
        if history is not None:
            await import_histories(shop.store, history, online.max_history_events)
        settle_heap()

    return create_app(shop, Readiness(shop, online.readiness_cache_s), online, Lifecycle(startup, background, shutdown))


class CatalogueFollower:
    """Keeps the shop's catalogue (and the log's ``catalogue.parquet``) abreast of the products added to the
    served version without retraining. ``version``: the served version whose added products the catalogue
    holds (None: none learnt yet)."""

    def __init__(self, model_repository: str, log_catalogue: str, frame: pd.DataFrame) -> None:
        self.model_repository, self.log_catalogue, self.frame = model_repository, log_catalogue, frame
        self.version: int | None = None

    def start(self, catalogue: ShopCatalogue, version: int | None) -> ShopCatalogue:
        """At start (no event loop yet): the catalogue with ``version``'s added products, the log's catalogue
        written. Reading them may fail (logged): the shop starts with ``catalogue`` and the loop tries again."""
        try:
            extended, frame = self._extended(catalogue, version)
        except Exception:  # noqa: BLE001 - the loop retries; the shop must still start
            LOGGER.exception("fashionrec shop: reading the products added to version %s failed; trying again at "
                             "the next refresh", version)
            write_catalogue(self.frame, self.log_catalogue)
            return catalogue
        write_catalogue(frame, self.log_catalogue)
        self.frame, self.version = frame, version
        return extended

    async def follow(self, shop: ShopService, version: int | None) -> None:
        """Learn ``version``'s added products: read, and the log's catalogue rewritten, off the event loop; then
        the extended catalogue swapped in (on the loop, the one place that assigns ``shop.catalogue``). A failure
        changes nothing (the next refresh tries again)."""
        current = shop.catalogue
        extended, frame = await asyncio.to_thread(self._extended, current, version)
        if extended is not current:
            await asyncio.to_thread(write_catalogue, frame, self.log_catalogue)
            shop.catalogue = extended
            LOGGER.info("fashionrec shop: %d products added to version %s are in the catalogue now",
                        len(extended.cards) - len(current.cards), version)
        self.frame, self.version = frame, version

    def _extended(self, catalogue: ShopCatalogue, version: int | None) -> tuple[ShopCatalogue, pd.DataFrame]:
        """``catalogue`` with ``version``'s added products it does not know (itself when there are none), and the
        log's catalogue frame extended likewise."""
        if version is None:
            return catalogue, self.frame
        added = added_products(self.model_repository, version)
        new, _ = validate_catalogue(added, f"the products added to version {version}")  # as ingest reads them
        new = new[[pid not in catalogue.cards for pid in new["product_id"]]]  # not isin: it copies the catalogue
        if new.empty:
            return catalogue, self.frame
        return catalogue.extended(new), pd.concat([self.frame, new], ignore_index=True)


def write_catalogue(frame: pd.DataFrame, uri: str) -> None:
    """The log's catalogue replaced whole: a reader (a training run) never sees half a file (locally: a temporary
    file renamed over it; on GCS an object appears whole)."""
    if storage.is_gcs(uri):
        storage.write_parquet(frame, uri)
        return
    folder, name = uri.rsplit("/", 1) if "/" in uri else (".", uri)
    temporary = storage.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    storage.write_parquet(frame, temporary)
    storage.rename(temporary, uri)


def settle_heap() -> None:
    """Move everything the service holds so far (catalogue, cards, trending lists, the served view) out of the
    cyclic garbage collector's sight (``gc.freeze``), at start and after a new version or catalogue is swapped
    in. Those objects live until the next swap; left in the collector's oldest generation, each full collection
    walked them all while every request in flight waited: pauses of 35-100 ms, measured on the shop benchmark
    (20k products), the bulk of its p99. Frozen objects are still freed when no longer referenced (a replaced
    view, once no page holds it); only reference cycles among them would stay. One full collection, tens of
    milliseconds, runs first, so garbage is not frozen."""
    gc.collect()
    gc.freeze()


async def _logged(what: str, step: Awaitable[T]) -> T | None:
    """The step's result, or None (logged with its traceback) when it failed."""
    try:
        return await step
    except Exception:  # noqa: BLE001 - a background step must never end the loop that retries it
        LOGGER.exception("fashionrec shop: %s failed; trying again in %s s", what, BACKGROUND_PERIOD_S)
        return None


async def import_histories(store: CustomerStore, events: pd.DataFrame, max_events: int) -> int:
    """Seed the live state from past events (canonical columns): each customer the store does not know gets
    their last ``max_events``; customers it knows are left alone, so a restart never doubles a history.
    Returns how many customers were imported."""
    ordered = events.sort_values("timestamp", kind="stable")
    groups = [(str(customer), rows.tail(max_events)) for customer, rows in ordered.groupby("customer_id", sort=True)]
    imported = 0
    for start in range(0, len(groups), IMPORT_BATCH):
        done = await asyncio.gather(*(_import_one(store, customer, rows) for customer, rows in
                                      groups[start: start + IMPORT_BATCH]))
        imported += sum(done)
    return imported


async def _import_one(store: CustomerStore, customer: str, rows: pd.DataFrame) -> bool:
    key = store_key(customer)
    if await store.history(key):
        return False
    seconds = rows["timestamp"].map(pd.Timestamp.timestamp)
    await store.append(key, [ShopEvent(customer, str(p), str(t), float(s), float(w)) for p, t, s, w in
                             zip(rows["product_id"], rows["event_type"], seconds, rows["weight"], strict=True)])
    return True
