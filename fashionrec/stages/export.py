"""Export: an embedding for every catalogue product, new (never interacted) products included, and the
content tower that embeds products launched later (``content_tower.npz`` + ``content_features.json``,
read by :mod:`fashionrec.contract.content`: the Triton model ``embed_products`` and ``catalogue add``)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec import artifacts
from fashionrec import storage
from fashionrec.model.aggregation import AGGREGATION_FILE, Aggregation, training_window
from fashionrec.contract.context import CONTEXT_FILE
from fashionrec.config import EventWeights, ExportConfig
from fashionrec.model.features import load_price_scaling
from fashionrec.model.two_tower import ItemTower
from fashionrec.embeddings_file import write_embeddings
from fashionrec.model.popularity import prior_from_events
from fashionrec.contract import content, layout
from fashionrec.stages.train import SavedConfigs, item_embeddings, load_item_tower, load_saved_configs



@dataclass(frozen=True)
class ExportSummary:
    products: int
    new_products: int
    dimension: int
    content_tower: bool = False  # written (False: a transform made before its price columns existed)


def export_embeddings(ingested_dir: str, transformed_dir: str, model_dir: str, output_dir: str,
                      event_weights: EventWeights = EventWeights(),
                      export_config: ExportConfig = ExportConfig()) -> ExportSummary:
    """Write ``embeddings.parquet`` (``product_id``, ``embedding``, ``is_new``, ``popularity_prior``) in
    product-index order, ``aggregation.json``: how serving must pool a history (the model's pooling,
    these event weights), and ``candidate_sets.json``: one set per category, which publishing serves. The prior (:mod:`fashionrec.model.popularity`) comes from the training events only,
    so the holdout evaluation of it is honest, each counted by its inverse examination where the model was
    trained position-debiased.

    A new product has no trained id embedding (it was zero-initialised and never updated, or it is
    out of vocabulary), so its vector comes from its content alone.
    """
    with storage.local_copy(transformed_dir) as local_transformed, storage.local_copy(model_dir) as local_model:
        configs = load_saved_configs(local_model)
        tower = load_item_tower(local_transformed, local_model, configs)
        embeddings = item_embeddings(tower)
        tower_files = content_tower_files(tower, local_transformed, configs)
    if tower_files is not None:
        write_content_tower(output_dir, *tower_files)
    product_ids = tower.product_ids
    catalogue = storage.read_table(storage.join(ingested_dir, artifacts.CATALOGUE_FILE))
    new = set(catalogue.loc[catalogue["is_new"], "product_id"])
    is_new = np.array([pid in new for pid in product_ids])
    train_events = storage.read_table(storage.join(ingested_dir, artifacts.TRAIN_EVENTS_FILE))
    prior = prior_from_events(train_events, product_ids, export_config,
                              max_inverse_examination=configs.train.inverse_examination_cap)
    write_embeddings(storage.join(output_dir, artifacts.EMBEDDINGS_FILE), product_ids, embeddings, is_new, prior)
    storage.write_json(storage.join(output_dir, layout.CANDIDATE_SETS_FILE), category_candidate_sets(catalogue,
                                                                                                    product_ids))
    Aggregation.from_training(configs.train, event_weights, training_window(configs.train, configs.transform)).write(
        storage.join(output_dir, AGGREGATION_FILE))
    context_tables = storage.join(model_dir, CONTEXT_FILE)
    if storage.exists(context_tables):  # a context model: its tables go beside the embeddings, to serving
        storage.write_json(storage.join(output_dir, CONTEXT_FILE), storage.read_json(context_tables))
    return ExportSummary(products=len(product_ids), new_products=int(is_new.sum()), dimension=embeddings.shape[1],
                         content_tower=tower_files is not None)


def category_candidate_sets(catalogue: pd.DataFrame, product_ids: Sequence[str]) -> dict[str, list[str]]:
    """One candidate set per catalogue category (``category:<name>``: its products among ``product_ids``, in
    their order), published with the version (``candidate_sets.json`` beside the embeddings), so a request
    for a category's carousel names the set instead of listing up to thousands of ids."""
    category = dict(zip(catalogue["product_id"], catalogue["category"], strict=True))
    sets: dict[str, list[str]] = {}
    for pid in product_ids:
        if pid in category:
            sets.setdefault(f"{layout.CATEGORY_SET_PREFIX}{category[pid]}", []).append(str(pid))
    return sets


KERAS_GELU = {"gelu": "erf"}  # Keras' activation name -> the numpy twin's gelu variant (approximate=False)


def content_tower_files(tower: ItemTower, transformed_dir: str, configs: SavedConfigs
                        ) -> tuple[dict[str, object], dict[str, np.ndarray]] | None:
    """The content tower as :mod:`fashionrec.contract.content` reads it: (features, weights).

    None when the transform predates the price columns (its quantile boundaries and z-score are
    then constants of the TFT graph that cannot be read back). Local folders only.
    """
    import tensorflow_transform as tft

    scaling = load_price_scaling(transformed_dir)
    if scaling is None:
        return None
    activation = tower.hidden.get_config()["activation"]
    if activation not in KERAS_GELU:
        raise ValueError(f"content tower activation {activation!r} has no numpy twin (known: {sorted(KERAS_GELU)})")
    output = tft.TFTransformOutput(storage.join(transformed_dir, artifacts.TRANSFORM_FN_DIR))
    features: dict[str, object] = {
        "format": content.FORMAT_VERSION,
        "max_tokens": int(configs.transform.max_title_tokens),
        "oov_buckets": int(configs.transform.vocab_oov_buckets),
        "temperature": float(configs.train.temperature),
        "normalize": bool(configs.train.normalize_embeddings),
        "gelu": KERAS_GELU[activation],
        "vocabularies": {name: [_text(v) for v in output.vocabulary_by_name(name)]
                         for name in ("tokens", *content.CATEGORICAL)},
        "price": {"boundaries": [float(b) for b in scaling.boundaries], "mean": scaling.mean, "var": scaling.var},
    }
    weights = {
        "tokens": tower.token_embedding.embeddings.numpy(),
        **{name: tower.feature_embeddings[name].embeddings.numpy() for name in (*content.CATEGORICAL, "price_bucket")},
        "hidden_kernel": tower.hidden.kernel.numpy(), "hidden_bias": tower.hidden.bias.numpy(),
        "output_kernel": tower.content_output.kernel.numpy(), "output_bias": tower.content_output.bias.numpy(),
    }
    return features, weights


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def write_content_tower(output_dir: str, features: dict[str, object], weights: dict[str, np.ndarray]) -> None:
    """Write the content tower's two files beside the embeddings (local or gs://)."""
    with tempfile.TemporaryDirectory(prefix="fashionrec-content-") as folder:
        content.write(Path(folder), features, weights)
        for name in (content.FEATURES_FILE, content.WEIGHTS_FILE):
            storage.upload_file(str(Path(folder) / name), storage.join(output_dir, name))
