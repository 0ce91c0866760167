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
    """A retailer's own files: ``catalogue`` and ``events``, each ``.parquet`` or ``.csv``, used in place."""
    found = {}
    for role in ("catalogue", "events"):
        candidates = [storage.join(data_dir, f"{role}.{ext}") for ext in ("parquet", "csv")]
        present = [uri for uri in candidates if storage.exists(uri)]
        if not present:
            raise FileNotFoundError(f"{data_dir} has neither {role}.parquet nor {role}.csv")
        found[role] = present[0]
    return RawData(found["catalogue"], found["events"])


def _required(name: str, data_dir: str | None) -> str:
    if not data_dir:
        raise ValueError(f"dataset {name!r} needs --data-dir (the folder holding its files)")
    return data_dir
