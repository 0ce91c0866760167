"""Named datasets → canonical input files (see ``fashionrec.stages.ingest`` for the schema).

Adapters only reshape; validation and quarantine stay in ``ingest``, so every dataset gets the same
checks. Each adapter module is imported only when its dataset is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fashionrec import storage
from fashionrec.config import ShopConfig

DATASET_NAMES = ("synthetic", "canonical", "movielens-100k", "movielens-1m", "hm")


@dataclass(frozen=True)
class RawData:
    catalogue_uri: str
    events_uri: str


def prepare_dataset(name: str, data_dir: str | None, output_dir: str, shop: ShopConfig) -> RawData:
    """Produce canonical input files (catalogue + events) for a named dataset."""
    if name == "synthetic":
        return _synthetic(output_dir, shop)
    if name == "canonical":
        return canonical_files(_required(name, data_dir))
    if name in ("movielens-100k", "movielens-1m"):
        return importlib.import_module("fashionrec.datasets.movielens").prepare(name, data_dir, output_dir)
    if name == "hm":
        return importlib.import_module("fashionrec.datasets.hm").prepare(_required(name, data_dir), output_dir)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASET_NAMES}")


def _synthetic(output_dir: str, shop: ShopConfig) -> RawData:
    from fashionrec.datasets.synthetic import generate_shop, write_shop

    paths = write_shop(generate_shop(shop), output_dir)
    return RawData(paths["catalogue"], paths["events"])


def canonical_files(data_dir: str) -> RawData:
    """A retailer's own files: ``catalogue`` and ``events``, each ``.parquet`` or ``.csv``, used in place.

    Without an events file, an ``events/`` folder of Parquet parts (searched recursively, e.g. the shop
    service's log: ``events/date=YYYY-MM-DD/part-*.parquet``, :mod:`fashionrec.online.event_log`) is the
    events table; ingest reads all its parts as one. A folder without parts is a FileNotFoundError.
    """
    found = {}
    for role in ("catalogue", "events"):
        candidates = [storage.join(data_dir, f"{role}.{ext}") for ext in ("parquet", "csv")]
        present = [uri for uri in candidates if storage.exists(uri)]
        if present:
            found[role] = present[0]
            continue
        folder = storage.join(data_dir, role)
        if role == "events" and storage.exists(folder):
            storage.parquet_parts(folder)  # the clear error now, not a puzzling one in ingest
            found[role] = folder
            continue
        also = f", nor an {role}/ folder of Parquet parts" if role == "events" else ""
        raise FileNotFoundError(f"{data_dir} has neither {role}.parquet nor {role}.csv{also}")
    return RawData(found["catalogue"], found["events"])


def _required(name: str, data_dir: str | None) -> str:
    if not data_dir:
        raise ValueError(f"dataset {name!r} needs --data-dir (the folder holding its files)")
    return data_dir
