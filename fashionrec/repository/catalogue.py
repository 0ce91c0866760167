"""Change the served catalogue without retraining or downtime: add new products, refresh the prior.

:func:`add_products` takes the SERVED version ``v`` of a model repository, embeds the new products
with that version's content tower (:mod:`fashionrec.contract.content`, the very code and files its
``embed_products`` model runs in Triton), appends them to ``v``'s catalogue, adds them to the
``new_in`` candidate set, and publishes the result as the next version through the ordinary
publisher (:func:`fashionrec.repository.publish.publish_model_repository`): same aggregation, context
tables, other candidate sets, content tower and blessing as ``v``; the manifest entry records it as
``catalogue_update: {"base_version": v, ...}``. Given a server URL, the new version is loaded into the
running Triton with explicit model control (the switch :mod:`fashionrec.repository.versions` makes
without dropping requests), and ``model rollback`` returns to ``v``'s catalogue. The new products
themselves (their validated catalogue rows) are kept in the repository, written before the version is
published, as ``catalogue-addition-<uuid>.parquet`` at its root (a file: Triton ignores files there, while
it would take any folder for a model), named by ``catalogue_update.products_file`` relative to the
repository; :func:`added_products` reads back every product the catalogue updates leading to a version
added, so a shop that shows the served version's catalogue learns them (:mod:`fashionrec.online.service`).

:func:`refresh_prior` republishes the served version the same way with its popularity prior
recomputed from recent events (``fashionrec catalogue refresh-prior``, e.g. daily between weekly
retrainings).

Contract: products are validated as ingest validates a catalogue (required ``product_id``, ``title``,
``category``, ``price``; optional fields get ingest's defaults; a bad row fails the whole call with
its reasons). Ids already in the served catalogue are refused (ValueError naming them): changing an
existing product's embedding is a retraining matter, not a catalogue addition. On a local repository
each addition or refresh holds the repository's lock (:func:`fashionrec.repository.manifest.repository_lock`)
from reading the served version to recording the new one, so concurrent ones queue and each builds on
the one before. ``gs://`` has no lock: the version numbers and the manifest stay consistent there (the
publisher's claims and conditional writes), but two concurrent additions would both build on ``v``, so
run one writer per bucket at a time (as the pipeline's publish step does). A publish that fails after
the products file is written leaves that file behind, unnamed by any version (harmless). The chain
:func:`added_products` follows runs through prior refreshes and ends at a retrained version (its
catalogue is the training data's: the shop is started with that catalogue), or at an addition published
before products files existed (its products' content was not kept).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.stages import ingest
from fashionrec import storage
from fashionrec.config import ExportConfig, IngestConfig, ServingConfig
from fashionrec.embeddings_file import write_embeddings
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.model.popularity import prior_from_events
from fashionrec.contract import content, layout
from fashionrec.contract.context import CONTEXT_FILE
from fashionrec.repository.manifest import locked, read_manifest
from fashionrec.repository.served import ServedVersion, served_version

MAX_IDS_IN_ERROR = 5
BLESSING_FILE = "blessing.json"
NEW_IN_SET = "new_in"
ADDITIONS_PREFIX = "catalogue-addition-"  # + uuid + .parquet, at the repository root: one file per addition
PRODUCT_COLUMNS = ("product_id", "title", "description", "category", "colour", "brand", "price", "launch_date")


@dataclass(frozen=True)
class PriorRefresh:
    """What :func:`refresh_prior` published."""

    version: int  # the new served version
    base_version: int  # the version whose catalogue it kept
    events_used: int
    events_dropped: int  # invalid, or of products outside the catalogue
    as_of: str  # the moment the events' ages were measured from


@dataclass(frozen=True)
class CatalogueUpdate:
    """What :func:`add_products` published."""

    version: int  # the new served version
    base_version: int  # the version it extends
    added: list[str]  # the new products' ids, in the order given
    num_products: int  # catalogue size after the addition


def read_products(products: str | pd.DataFrame) -> pd.DataFrame:
    """New products from a CSV/Parquet file (local or gs://) or a frame, validated as ingest does."""
    source = products if isinstance(products, str) else "products"
    raw = storage.read_table(products) if isinstance(products, str) else products.reset_index(drop=True)
    valid, quarantined = ingest.validate_catalogue(raw, source)
    if len(quarantined):
        reasons = quarantined.head(MAX_IDS_IN_ERROR).to_dict("records")
        raise ValueError(f"{len(quarantined)} of {len(raw)} products in {source} are invalid: {reasons}")
    if valid.empty:
        raise ValueError(f"{source} holds no products")
    return valid


def _served(model_repository: str, serving: ServingConfig) -> ServedVersion:
    """The served version an update extends; ValueError when nothing is published yet."""
    base = served_version(model_repository, serving)
    if base is None:
        raise ValueError(f"nothing is published in {model_repository}: publish a trained model first")
    return base


def embed(tower: content.ContentTower, products: pd.DataFrame) -> np.ndarray:
    """float32 [N, D]: the validated products' content embeddings."""
    return tower.embed_columns(list(products["title"]), list(products["description"]), list(products["category"]),
                               list(products["colour"]), list(products["brand"]), products["price"].to_numpy())


@locked
def add_products(model_repository: str, products: str | pd.DataFrame, serving: ServingConfig,
                 server_url: str | None = None, protocol: str = "grpc") -> CatalogueUpdate:
    """Embed ``products``, append them to the served catalogue and serve the result as the next version.

    Raises ValueError (repository untouched) when nothing is published, the served version has no
    content tower, a product is invalid or already in the catalogue. Holds the repository's lock
    throughout (local repositories), so ``v`` is still the served version when the result is recorded.
    """
    new = read_products(products)
    base = _served(model_repository, serving)
    if base.tower is None:
        raise ValueError(f"version {base.version} of {model_repository} has no content tower (exported before "
                         f"embed_products existed): re-export and publish before adding products")
    _refuse_duplicates(base.product_ids, list(new["product_id"]))
    added = list(new["product_id"])
    embeddings = np.concatenate([base.embeddings, embed(base.tower, new)]).astype(np.float32)
    prior = np.concatenate([base.prior, np.zeros(len(added), np.float32)])  # no interactions yet: no popularity
    sets = sets_with_new_products(base.candidate_sets, added, list(new["category"]))
    products_file = f"{ADDITIONS_PREFIX}{uuid.uuid4().hex}.parquet"  # before publishing: a version names it
    storage.write_parquet(new, storage.join(str(model_repository), products_file))
    update = {"base_version": base.version, "added_product_ids": added,
              "products": products if isinstance(products, str) else "DataFrame", "products_file": products_file,
              "embeddings_path": base.entry.get("embeddings_path")}
    version, size = _republish(model_repository, serving, base, [*base.product_ids, *added], embeddings, prior, sets,
                               update, server_url, protocol)
    return CatalogueUpdate(version, base.version, added, size)


def added_products(model_repository: str, version: int) -> pd.DataFrame:
    """Every product the catalogue updates leading to published ``version`` added (the canonical catalogue
    columns, as :func:`read_products` returns them), oldest first; an empty frame when there are none.

    The chain is followed through ``catalogue_update.base_version`` from ``version`` while a version is a
    catalogue update (an addition or a prior refresh); it ends at a retrained version, an unknown one, or
    an addition without a products file (published before they were kept).
    """
    entries = {int(e["version"]): e for e in read_manifest(str(model_repository)).get("versions", [])}
    files: list[str] = []
    current: int | None = int(version)
    seen: set[int] = set()
    while current is not None and current in entries and current not in seen:
        seen.add(current)
        update = entries[current].get("catalogue_update") or {}
        if not update:
            break  # a retrained version: its catalogue is its training data's
        if "added_product_ids" in update and not update.get("products_file"):
            break  # an addition from before products files were kept
        if update.get("products_file"):
            files.append(str(update["products_file"]))
        current = None if update.get("base_version") is None else int(update["base_version"])
    frames = [storage.read_table(storage.join(str(model_repository), name)) for name in reversed(files)]
    if not frames:
        return _no_products()
    products = pd.concat([frame[list(PRODUCT_COLUMNS)] for frame in frames], ignore_index=True)
    return products.drop_duplicates("product_id", keep="first").reset_index(drop=True)


def _no_products() -> pd.DataFrame:
    """An empty frame of the canonical catalogue columns and types."""
    return pd.DataFrame({column: pd.Series(dtype="float64" if column == "price" else "datetime64[ns, UTC]"
                                           if column == "launch_date" else object) for column in PRODUCT_COLUMNS})


def sets_with_new_products(sets: Mapping[str, Sequence[str]], added: Sequence[str],
                           categories: Sequence[str]) -> dict[str, list[str]]:
    """The served candidate sets with new products added: all of them to ``new_in``, and each to its
    category's set (``category:<name>``, created if need be) when the version was published with category
    sets (an export since they exist), so a category carousel finds a product added without retraining."""
    updated = {name: list(members) for name, members in sets.items()}
    updated[NEW_IN_SET] = [*updated.get(NEW_IN_SET, []), *added]
    if any(name.startswith(layout.CATEGORY_SET_PREFIX) for name in sets):
        for pid, category in zip(added, categories, strict=True):
            updated.setdefault(f"{layout.CATEGORY_SET_PREFIX}{category}", []).append(pid)
    return updated


@locked
def refresh_prior(model_repository: str, events: str | pd.DataFrame, serving: ServingConfig, export: ExportConfig,
                  server_url: str | None = None, protocol: str = "grpc", now: pd.Timestamp | None = None,
                  ingest_config: IngestConfig = IngestConfig(),
                  max_inverse_examination: float | None = None) -> PriorRefresh:
    """Recompute the served version's popularity prior from recent ``events`` (ingest's event columns,
    validated as ingest does; events of products outside the catalogue are dropped and counted) as of
    ``now`` (default: the latest event; with ``max_inverse_examination``, each event counted by its inverse
    examination, as a position-debiased export counts it), and serve it as the next version: same
    embeddings, pooling, context tables, candidate sets, content tower and blessing. Why: the prior is what is in demand
    *now*; retraining weekly should not freeze it for a week. Raises ValueError (repository untouched)
    when nothing is published or no event is usable. Holds the repository's lock throughout, as
    :func:`add_products` does.
    """
    base = _served(model_repository, serving)
    source = events if isinstance(events, str) else "events"
    raw = storage.read_table(events) if isinstance(events, str) else events.reset_index(drop=True)
    valid, quarantined = ingest.validate_events(raw, source, set(base.product_ids), ingest_config)
    if valid.empty:
        reasons = quarantined["reason"].value_counts().to_dict() if len(quarantined) else {}
        raise ValueError(f"{source} holds no usable events for the served catalogue (quarantined: {reasons})")
    as_of = valid["timestamp"].max() if now is None else now
    prior = prior_from_events(valid, np.asarray(base.product_ids), export, as_of, max_inverse_examination)
    update = {"base_version": base.version, "popularity_prior": {
        "events": source, "events_used": len(valid), "events_dropped": len(quarantined), "as_of": str(as_of),
        "weight": export.popularity_prior_weight, "half_life_days": export.popularity_half_life_days}}
    version, _ = _republish(model_repository, serving, base, base.product_ids, base.embeddings, prior,
                            base.candidate_sets, update, server_url, protocol)
    return PriorRefresh(version, base.version, len(valid), len(quarantined), str(as_of))


def _republish(model_repository: str, serving: ServingConfig, base: ServedVersion, ids: list[str],
               embeddings: np.ndarray, prior: np.ndarray, sets: dict[str, list[str]], update: dict[str, Any],
               server_url: str | None, protocol: str) -> tuple[int, int]:
    """Publish a changed copy of ``base`` as the next version (loaded into ``server_url`` if given);
    (version, number of products)."""
    from fashionrec.repository.publish import publish_model_repository, serving_as_published

    serving = serving_as_published(base.entry, serving)  # served as the base was: GPU instances stay on GPUs
    new_in = set(sets.get(NEW_IN_SET, []))
    with tempfile.TemporaryDirectory(prefix="fashionrec-catalogue-") as staging:
        folder = Path(staging)
        _write_export(folder, ids, embeddings, prior, np.array([pid in new_in for pid in ids]), base)
        published = publish_model_repository(
            str(folder / EMBEDDINGS_FILE), str(folder / BLESSING_FILE), model_repository, serving,
            metadata=base.entry.get("metadata") or {}, candidate_sets=sets, server_url=server_url, protocol=protocol,
            catalogue_update=update)
    return published.version, published.num_products


def _refuse_duplicates(existing: Sequence[str], new: Sequence[str]) -> None:
    known = set(existing)
    clashes = [pid for pid in new if pid in known]
    if clashes:
        shown = ", ".join(clashes[:MAX_IDS_IN_ERROR]) + (", ..." if len(clashes) > MAX_IDS_IN_ERROR else "")
        raise ValueError(f"{len(clashes)} products are already in the served catalogue: {shown} "
                         f"(catalogue add only adds new products; retrain to change existing ones)")


def _write_export(folder: Path, ids: list[str], embeddings: np.ndarray, prior: np.ndarray, is_new: np.ndarray,
                  base: ServedVersion) -> None:
    """The files publish reads, as the export stage would write them, plus the base's blessing."""
    write_embeddings(str(folder / EMBEDDINGS_FILE), np.asarray(ids), embeddings, is_new, prior)
    base.aggregation.write(str(folder / layout.AGGREGATION_FILE))
    if base.context is not None:
        (folder / CONTEXT_FILE).write_text(json.dumps(base.context.to_json()), encoding="utf-8")
    (folder / BLESSING_FILE).write_text(json.dumps(base.entry["blessing"]), encoding="utf-8")
    if base.tower is not None:
        base.tower.save(folder)

