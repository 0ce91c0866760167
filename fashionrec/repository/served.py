"""The version a repository serves, read back as its Triton models load it: so that evaluation scores
the published model exactly as it serves (the gate's change checks) and catalogue updates extend it,
neither with publishing code of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.contract import content, layout
from fashionrec.contract.context import CONTEXT_FILE, ContextTables, parse
from fashionrec.model.aggregation import Aggregation
from fashionrec.repository.manifest import read_manifest, serving_version


@dataclass(frozen=True)
class ServedVersion:
    """The served version: its catalogue (row i of ``embeddings`` is ``product_ids[i]``), popularity
    prior, history pooling, candidate sets, content tower, context tables and manifest entry."""

    version: int
    product_ids: list[str]
    embeddings: np.ndarray  # float32 [N, D]
    prior: np.ndarray | None = None  # float32 [N] added to each logit (read back: zeros if published without one)
    aggregation: Aggregation = Aggregation()
    candidate_sets: dict[str, list[str]] = field(default_factory=dict)
    tower: content.ContentTower | None = None  # None: published before embed_products existed
    entry: dict[str, Any] = field(default_factory=dict)  # its manifest entry (blessing, embeddings_path, ...)
    context: ContextTables | None = None  # customer_vector's context.json; None: no context adjustment


def served_version(model_repository: str, serving: ServingConfig, version: int | None = None) -> ServedVersion | None:
    """The version the ensembles are pinned to (after a rollback: the one rolled back to), or the published
    ``version`` asked for (an experiment's arm); None before the first publish."""
    manifest = read_manifest(str(model_repository))
    version = serving_version(manifest) if version is None else int(version)
    if version is None:
        return None
    entry = next((e for e in manifest.get("versions", []) if int(e["version"]) == version), {})
    with _version_folder(model_repository, serving.embed_model_name, version) as folder:
        tower = content.ContentTower.load(folder) if folder is not None and content.exists(folder) else None
    with _version_folder(model_repository, serving.ranking_model_name, version) as folder:
        embeddings, ids = layout.load_catalogue(Path(folder))
        prior = layout.load_prior(Path(folder), len(ids))
        sets_file = Path(folder) / layout.CANDIDATE_SETS_FILE
        sets = layout.load_json(sets_file) if sets_file.exists() else {}
    customer = storage.join(str(model_repository), serving.customer_model_name, str(version))
    aggregation = Aggregation.read(storage.join(customer, layout.AGGREGATION_FILE))
    return ServedVersion(int(version), [pid.decode("utf-8") for pid in ids], embeddings, prior, aggregation, sets,
                         tower, entry, _read_context(customer))


def _read_context(customer_folder: str) -> ContextTables | None:
    """A customer_vector version folder's context tables (local or gs://: only the file is read), if any;
    CorruptVersion naming the file when it does not load (as the model would refuse it)."""
    uri = storage.join(customer_folder, CONTEXT_FILE)
    if not storage.exists(uri):
        return None
    with storage.open_input(uri) as stream:
        return parse(stream.read(), uri)


@contextmanager
def _version_folder(repository: str, model: str, version: int) -> Iterator[str | None]:
    """A model's version folder as a local path (downloaded from gs://), or None when it is absent."""
    uri = storage.join(str(repository), model, str(version))
    if not storage.exists(uri):
        yield None
        return
    with storage.local_copy(uri) as local:
        yield local
