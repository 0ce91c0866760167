"""Readers for the transform stage's outputs: catalogue feature arrays and example datasets.

The catalogue is small enough (≤ ~100k products) to hold as dense arrays indexed by ``product_idx``;
the model keeps them as constants, so a training example only carries product indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from fashionrec import artifacts
from fashionrec import storage
from fashionrec.contract.context import CLOCK_SIZES, FEATURES as CONTEXT_FEATURES

PAD = -1  # history padding; never a valid product index
SHUFFLE_BUFFER = 200_000  # training examples shuffled together (all of them on ML-1M's 6k customer sequences)


@dataclass(frozen=True)
class PriceScaling:
    """The price analysers' results, as the transform graph applies them (float32 values).

    ``bucket = searchsorted(boundaries, max(price, 0), side="right")``;
    ``z = (log1p(max(price, 0)) - mean) / sqrt(var)`` (just centred when ``var`` is 0).
    """

    boundaries: np.ndarray  # float32 [price_buckets - 1], ascending
    mean: float
    var: float


@dataclass(frozen=True)
class CatalogueFeatures:
    """Content features of every product, row ``i`` = ``product_idx`` ``i``.

    Rows ``num_products .. num_rows-1`` are the OOV buckets: no content, and their id embedding is
    masked, so an unknown product contributes nothing.
    """

    product_ids: np.ndarray  # [num_products] str
    token_ids: np.ndarray  # [num_rows, max_tokens] int64, 0 = padding, token t stored as t + 1
    category_idx: np.ndarray  # [num_rows] int64
    colour_idx: np.ndarray
    brand_idx: np.ndarray
    price_bucket: np.ndarray
    price_z: np.ndarray  # [num_rows] float32
    vocabulary_sizes: dict[str, int]  # name → size including OOV buckets (tokens: + padding)
    price_scaling: PriceScaling | None = None  # None: a transform made before it was written out

    @property
    def num_products(self) -> int:
        return len(self.product_ids)

    @property
    def num_rows(self) -> int:
        return len(self.category_idx)


def load_catalogue_features(transformed_dir: str, max_tokens: int, product_oov_buckets: int) -> CatalogueFeatures:
    """Read the transformed catalogue TFRecords into dense arrays in product-index order."""
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(storage.join(transformed_dir, artifacts.TRANSFORM_FN_DIR))
    pattern = storage.join(transformed_dir, artifacts.TRANSFORMED_CATALOGUE_DIR, "part*")
    spec = output.transformed_feature_spec()
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).batch(100_000)
    parts = [tf.io.parse_example(batch, spec) for batch in records]
    product_idx = np.concatenate([p["product_idx"].numpy() for p in parts])
    num_products = output.vocabulary_size_by_name(artifacts.PRODUCT_VOCAB)
    num_rows = num_products + product_oov_buckets
    order = np.argsort(product_idx)
    if not np.array_equal(product_idx[order], np.arange(num_products)):
        raise ValueError("transformed catalogue does not cover the product vocabulary exactly once")

    def column(name: str, dtype: type) -> np.ndarray:
        values = np.concatenate([p[name].numpy() for p in parts])[order].astype(dtype)
        return np.concatenate([values, np.zeros(num_rows - num_products, dtype)])

    tokens = np.zeros((num_rows, max_tokens), np.int64)
    for start, part in zip(np.cumsum([0] + [len(p["product_idx"]) for p in parts[:-1]]), parts, strict=True):
        dense = tf.sparse.to_dense(part["token_ids"], default_value=-1).numpy()[:, :max_tokens] + 1
        rows = np.searchsorted(product_idx[order], product_idx[start : start + len(dense)])
        tokens[rows, : dense.shape[1]] = dense
    product_ids = _text(np.concatenate([p["product_id"].numpy() for p in parts])[order])
    return CatalogueFeatures(
        product_ids=product_ids,
        token_ids=tokens,
        category_idx=column("category_idx", np.int64),
        colour_idx=column("colour_idx", np.int64),
        brand_idx=column("brand_idx", np.int64),
        price_bucket=column("price_bucket", np.int64),
        price_z=column("price_z", np.float32),
        vocabulary_sizes={
            "product": num_rows,
            "tokens": output.vocabulary_size_by_name("tokens") + 2,  # + OOV bucket + padding
            "category": output.vocabulary_size_by_name("category") + 1,
            "colour": output.vocabulary_size_by_name("colour") + 1,
            "brand": output.vocabulary_size_by_name("brand") + 1,
            "price_bucket": int(column("price_bucket", np.int64).max()) + 1,
        },
        price_scaling=_price_scaling(parts[0]) if "price_boundaries" in spec else None,
    )


def load_price_scaling(transformed_dir: str) -> PriceScaling | None:
    """The price analysers' results from the transformed catalogue (None for a transform made before
    they were written out)."""
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(storage.join(transformed_dir, artifacts.TRANSFORM_FN_DIR))
    spec = output.transformed_feature_spec()
    if "price_boundaries" not in spec:
        return None
    pattern = storage.join(transformed_dir, artifacts.TRANSFORMED_CATALOGUE_DIR, "part*")
    for record in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))).take(1).batch(1):
        return _price_scaling(tf.io.parse_example(record, spec))
    raise ValueError(f"no transformed catalogue rows under {pattern}")


def _price_scaling(part: dict[str, tf.Tensor]) -> PriceScaling:
    """Every transformed row carries the same analyser results: read them from the first row."""
    return PriceScaling(
        boundaries=part["price_boundaries"].numpy()[0].astype(np.float32),
        mean=float(part["price_mean"].numpy()[0]),
        var=float(part["price_var"].numpy()[0]),
    )


def train_dataset(transformed_dir: str, history_length: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled batches of ``{"history_idx", "history_weight", "history_age_days", "target_idx",
    "target_examination", "target_<context feature>"}``.

    Histories are padded with PAD (weight 0, age 0) to ``history_length``.
    """
    pattern = storage.join(transformed_dir, artifacts.TRAIN_EXAMPLES_DIR, "part*")
    spec = {
        "history_idx": tf.io.VarLenFeature(tf.int64),
        "history_weight": tf.io.VarLenFeature(tf.float32),
        "history_age_days": tf.io.VarLenFeature(tf.float32),
        "target_idx": tf.io.FixedLenFeature([], tf.int64),
        "target_examination": tf.io.FixedLenFeature([], tf.float32, default_value=1.0),  # older transforms: 1
        **{f"target_{f}": tf.io.FixedLenFeature([], tf.int64, default_value=0) for f in CONTEXT_FEATURES},
    }
    return _shuffled_batches(tf.io.gfile.glob(pattern), batch_size, seed,
                             lambda records: _dense_history(tf.io.parse_example(records, spec), history_length))


def sequence_dataset(transformed_dir: str, features: tuple[str, ...], batch_size: int, seed: int,
                     length: int) -> tf.data.Dataset:
    """Shuffled batches of customer sequences (the transform's ``customer_sequences``), for the future-set
    objective: ``{"sequence_idx", "sequence_weight", "sequence_seconds", "sequence_<feature>"}``, each
    [batch_size, length], oldest event first, padded with PAD (weight, seconds and context row 0).
    ``features``: the context features the model learns (each sequence carries their rows); ``length``: the
    transform's ``sequence_length``, which no sequence exceeds. An epoch's last batch is filled up with
    empty sequences (no event, so no target: they add nothing to the loss).

    One shape for every batch lets XLA compile the training step once. The padding costs the step little:
    its work grows with the catalogue, not with the slots (:func:`fashionrec.model.two_tower.pooled_rows`)."""
    pattern = storage.join(transformed_dir, artifacts.CUSTOMER_SEQUENCES_DIR, "part*")
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no customer sequences at {pattern}: transform with this version of fashionrec "
                                "before training with train.objective=future_set")
    spec = {"sequence_idx": tf.io.VarLenFeature(tf.int64), "sequence_weight": tf.io.VarLenFeature(tf.float32),
            "sequence_seconds": tf.io.VarLenFeature(tf.int64),
            **{f"sequence_{f}": tf.io.VarLenFeature(tf.int64) for f in features}}

    def dense(records: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(records, spec)
        return {name: tf.sparse.to_dense(tf.sparse.reset_shape(value, [batch_size, length]),
                                         default_value=PAD if name == "sequence_idx" else 0)
                for name, value in parsed.items()}

    return _shuffled_batches(files, batch_size, seed, dense)


def _shuffled_batches(files: list[str], batch_size: int, seed: int,
                      parse: Callable[[tf.Tensor], dict[str, tf.Tensor]]) -> tf.data.Dataset:
    """The TFRecords of ``files`` shuffled (reshuffled each pass), batched, and each batch ``parse``d."""
    return (
        tf.data.TFRecordDataset(files)
        .shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(parse)
        .prefetch(tf.data.AUTOTUNE)
    )


def count_records(transformed_dir: str, directory: str) -> int:
    """How many examples the transform wrote under ``directory`` (one pass over its TFRecords)."""
    files = tf.io.gfile.glob(storage.join(transformed_dir, directory, "part*"))
    return int(tf.data.TFRecordDataset(files).reduce(np.int64(0), lambda count, _: count + 1)) if files else 0


def _dense_history(batch: dict[str, tf.Tensor], history_length: int) -> dict[str, tf.Tensor]:
    shape = [tf.shape(batch["target_idx"])[0], history_length]
    return {
        "history_idx": _pad(tf.sparse.to_dense(batch["history_idx"], default_value=PAD), shape, PAD),
        "history_weight": _pad(tf.sparse.to_dense(batch["history_weight"]), shape, 0.0),
        "history_age_days": _pad(tf.sparse.to_dense(batch["history_age_days"]), shape, 0.0),
        "target_idx": batch["target_idx"],
        "target_examination": batch["target_examination"],
        **{f"target_{f}": batch[f"target_{f}"] for f in CONTEXT_FEATURES},  # context table rows, 0: unknown
    }


def _pad(dense: tf.Tensor, shape: list[tf.Tensor], value: float) -> tf.Tensor:
    width = tf.shape(dense)[1]
    padded = tf.pad(dense, [[0, 0], [0, tf.maximum(shape[1] - width, 0)]], constant_values=value)
    return padded[:, : shape[1]]


@dataclass(frozen=True)
class EvalExamples:
    """Holdout customers: their history before the split and the products they interacted with after."""

    customer_ids: np.ndarray
    history_idx: list[np.ndarray]
    history_weight: list[np.ndarray]
    history_age_days: list[np.ndarray]  # at the split time
    target_idxs: list[np.ndarray]
    # The context of each customer's first holdout event, per feature (text "" / clock -1: unknown); empty
    # for a transform made before context existed.
    context: dict[str, np.ndarray] = field(default_factory=dict)

    def subset(self, rows: np.ndarray | list[int]) -> dict[str, np.ndarray]:
        """The context of the customers at ``rows`` (for the samplers that keep some customers)."""
        return {f: values[rows] for f, values in self.context.items()}

    @property
    def history_lengths(self) -> np.ndarray:
        return np.array([len(h) for h in self.history_idx], np.int64)

    def rows(self, rows: np.ndarray | list[int]) -> EvalExamples:
        """The customers at ``rows``, in that order."""
        return EvalExamples(
            customer_ids=self.customer_ids[rows],
            history_idx=[self.history_idx[i] for i in rows],
            history_weight=[self.history_weight[i] for i in rows],
            history_age_days=[self.history_age_days[i] for i in rows],
            target_idxs=[self.target_idxs[i] for i in rows],
            context=self.subset(rows),
        )

    def customers(self) -> list[EvalExamples]:
        """One single-customer ``EvalExamples`` per customer (what a Beam pipeline shuffles and re-batches)."""
        return [self.rows([i]) for i in range(len(self.customer_ids))]

    @staticmethod
    def concatenate(parts: list[EvalExamples]) -> EvalExamples:
        """The customers of ``parts``, in order (every part has the same context features)."""
        features = parts[0].context.keys() if parts else ()
        return EvalExamples(
            customer_ids=np.concatenate([p.customer_ids for p in parts]) if parts else np.array([], str),
            history_idx=[h for p in parts for h in p.history_idx],
            history_weight=[w for p in parts for w in p.history_weight],
            history_age_days=[a for p in parts for a in p.history_age_days],
            target_idxs=[t for p in parts for t in p.target_idxs],
            context={f: np.concatenate([p.context[f] for p in parts]) for f in features},
        )


def eval_feature_spec() -> dict[str, object]:
    """How the transform stage writes a holdout customer (``eval_examples/part*``, tf.Example)."""
    return {
        "customer_id": tf.io.FixedLenFeature([], tf.string),
        "history_idx": tf.io.RaggedFeature(tf.int64),
        "history_weight": tf.io.RaggedFeature(tf.float32),
        "history_age_days": tf.io.RaggedFeature(tf.float32),
        "target_idxs": tf.io.RaggedFeature(tf.int64),
        **{f"context_{f}": tf.io.FixedLenFeature([], tf.int64 if f in CLOCK_SIZES else tf.string,
                                                 default_value=-1 if f in CLOCK_SIZES else b"")
           for f in CONTEXT_FEATURES},
    }


def parse_eval_examples(records: list[bytes] | tf.Tensor) -> EvalExamples:
    """Serialized holdout tf.Examples → ``EvalExamples``, in the records' order (one parse for the batch)."""
    batch = tf.io.parse_example(tf.convert_to_tensor(records, tf.string), eval_feature_spec())
    return EvalExamples(
        customer_ids=_text(batch["customer_id"].numpy()),
        history_idx=_rows(batch["history_idx"]),
        history_weight=_rows(batch["history_weight"]),
        history_age_days=_rows(batch["history_age_days"]),
        target_idxs=_rows(batch["target_idxs"]),
        context={f: _context_values(f, [batch[f"context_{f}"].numpy()]) for f in CONTEXT_FEATURES},
    )


def load_eval_examples(transformed_dir: str) -> EvalExamples:
    """Every holdout customer in memory, in customer-id order (benchmarks; the evaluate stage streams them
    through Beam, :mod:`fashionrec.evaluation.holdout_ranking`)."""
    pattern = storage.join(transformed_dir, artifacts.EVAL_EXAMPLES_DIR, "part*")
    parts = [parse_eval_examples(records)
             for records in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).batch(50_000)]
    examples = EvalExamples.concatenate(parts or [parse_eval_examples([])])
    order = np.argsort(examples.customer_ids, kind="stable")  # deterministic order whatever the file sharding
    return examples.rows(order)


def _context_values(feature: str, parts: list[np.ndarray]) -> np.ndarray:
    """One context feature's values over the batches: ints for the clock, str for text."""
    values = np.concatenate(parts) if parts else np.array([], np.int64 if feature in CLOCK_SIZES else object)
    return values.astype(np.int64) if feature in CLOCK_SIZES else _text(values) if len(values) else values


def _rows(ragged: tf.RaggedTensor) -> list[np.ndarray]:
    """A ragged batch as one numpy array per row (split once, not row by row in eager mode)."""
    splits = ragged.row_splits.numpy()
    if len(splits) == 1:
        return []
    return np.split(ragged.flat_values.numpy(), splits[1:-1])


def _text(values: np.ndarray) -> np.ndarray:
    """UTF-8 bytes from TensorFlow → str (product ids may be any text, e.g. accented titles)."""
    return np.char.decode(values.astype(np.bytes_), "utf-8")
