"""Train the two-tower model on the transform stage's examples and save it for export."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from fashionrec import artifacts
from fashionrec import storage
from fashionrec.config import TrainConfig, TransformConfig
from fashionrec.model.features import (CatalogueFeatures, count_records, load_catalogue_features,
                                       sequence_dataset, train_dataset)
from fashionrec.model.averaging import WeightAveraging
from fashionrec.model.two_tower import ItemTower, TwoTowerModel, embeds_every_row
from fashionrec.contract.context import CLOCK_SIZES, CONTEXT_FILE
from fashionrec.stages.context import ContextVocabulary, chosen



@dataclass(frozen=True)
class TrainSummary:
    examples: int
    epochs: int
    final_loss: float  # the last epoch's mean in-batch softmax loss per training example
    seconds: float  # the whole fit(), shuffle-buffer fills and graph tracing included
    examples_per_second: float
    epoch_seconds: tuple[float, ...] = ()  # each epoch, as Keras times it


class _EpochTimer(tf_keras.callbacks.Callback):
    """Records how long each epoch took."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def train(transformed_dir: str, model_dir: str, config: TrainConfig, transform_config: TransformConfig) -> TrainSummary:
    """Fit the model and write its item tower checkpoint plus the config that rebuilds it (local or gs://),
    and, for a model with context features, its learned context tables (``context.json``)."""
    with storage.local_copy(transformed_dir) as local_in, storage.local_output(model_dir) as local_out:
        return _train(local_in, local_out, config, transform_config)


def _train(transformed_dir: str, model_dir: str, config: TrainConfig, transform_config: TransformConfig) -> TrainSummary:
    tf.keras.utils.set_random_seed(config.seed)
    catalogue = _catalogue(transformed_dir, transform_config)
    counts = target_counts(transformed_dir, catalogue.num_rows)
    probability = (counts + 1.0) / (counts.sum() + len(counts))  # in-batch sampling probability, for logQ
    vocabulary = ContextVocabulary.read(transformed_dir)
    features = chosen(vocabulary, config.context_features)
    every_row = config.objective == "next_event" and config.negatives == "in_batch" and embeds_every_row(
        counts, config.batch_size * (transform_config.history_length + 1))
    model = TwoTowerModel(catalogue, config, probability, counts,
                          {f: CLOCK_SIZES.get(f) or len(vocabulary.values[f]) for f in features}, every_row)
    model.build_variables()
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate), jit_compile=_compiles(config, every_row))
    examples, batches, steps = _training_data(transformed_dir, config, transform_config, counts, features)
    started = time.perf_counter()
    timer = _EpochTimer()
    averaging = [WeightAveraging(config.weight_averaging)] if config.weight_averaging else []
    history = model.fit(batches, epochs=config.epochs, steps_per_epoch=steps, verbose=2, callbacks=[timer, *averaging])
    seconds = time.perf_counter() - started
    tf.train.Checkpoint(item_tower=model.item_tower).write(storage.join(model_dir, artifacts.CHECKPOINT_PREFIX))
    write_target_counts(model_dir, counts)
    if model.context is not None:
        storage.write_json(storage.join(model_dir, CONTEXT_FILE), model.context.tables_for_serving(vocabulary.values).to_json())
    storage.write_json(storage.join(model_dir, artifacts.TRAIN_CONFIG_FILE), {"train": asdict(config), "transform": asdict(transform_config)})
    trained = examples * config.epochs
    return TrainSummary(
        examples=examples,
        epochs=config.epochs,
        final_loss=float(history.history["loss"][-1]),
        seconds=seconds,
        examples_per_second=trained / seconds if seconds else 0.0,
        epoch_seconds=tuple(timer.seconds),
    )


def _compiles(config: TrainConfig, every_row: bool) -> bool:
    """Whether XLA compiles the training step: where its shapes are fixed, which about halves it on two CPU
    cores. A future-set step's are (``sequence_dataset``; 36 against 19-24 ms on MovieLens-1M), and a
    next-event step's where it embeds every product row (``every_row``; 105-155 against 51-77 ms). A
    next-event step over its batch's distinct products (``tf.unique``) has a shape XLA cannot fix."""
    return config.objective == "future_set" or every_row


def _training_data(transformed_dir: str, config: TrainConfig, transform_config: TransformConfig, counts: np.ndarray,
                   features: tuple[str, ...]) -> tuple[int, tf.data.Dataset, int]:
    """(examples per epoch, the batches of every epoch, steps per epoch) for the configured objective: one
    example per training event (next event) or per customer sequence (future set)."""
    if config.objective == "future_set":
        examples = count_records(transformed_dir, artifacts.CUSTOMER_SEQUENCES_DIR)
        batches = sequence_dataset(transformed_dir, features, config.customers_per_batch, config.seed,
                                   transform_config.sequence_length)
        return examples, _epochs(batches), steps_per_epoch(examples, config.customers_per_batch)
    examples = int(counts.sum())
    batches = train_dataset(transformed_dir, transform_config.history_length, config.batch_size, config.seed)
    return examples, _epochs(batches), steps_per_epoch(examples, config.batch_size)


def _epochs(batches: tf.data.Dataset) -> tf.data.Dataset:
    """The shuffled batches, repeated, so that ``fit`` keeps one iterator for every epoch, with tf.data's
    autotuning off.

    Each repetition is one whole epoch (its last, partial batch included): the repeat comes after the
    batching. Why both: dropping a tf.data iterator waits for its autotuning thread to wake from its
    current sleep, which grows to 60 s, and nothing wakes it early. Given a finite dataset Keras drops an
    iterator at every epoch boundary, and ``fit`` drops its last one on return: on MovieLens-1M these
    drops stalled training for 0 to 60 s each (a stack taken in one showed the destructor waiting on
    ``Model::OptimizeLoop``). Without autotuning there is no such thread. What it tuned here was one
    prefetch buffer: the epochs take as long without it.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.repeat().with_options(options)


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches in one pass over ``examples`` (the last one partial), at least 1."""
    return max(1, -(-examples // batch_size))


@dataclass(frozen=True)
class SavedConfigs:
    """The settings a saved model was trained with (``train_config.json`` beside its checkpoint)."""

    train: TrainConfig
    transform: TransformConfig


def load_saved_configs(model_dir: str) -> SavedConfigs:
    """Parse a saved model's settings; train settings added since it was saved read as off."""
    saved = storage.read_json(storage.join(model_dir, artifacts.TRAIN_CONFIG_FILE))
    train_config = TrainConfig(**{"id_fade_in_events": 0.0, **saved["train"]})
    transform_config = TransformConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["transform"].items()})
    return SavedConfigs(train_config, transform_config)


def load_item_tower(transformed_dir: str, model_dir: str, configs: SavedConfigs | None = None) -> ItemTower:
    """Rebuild the trained item tower from its checkpoint and the transformed catalogue
    (``configs``: the model's, when the caller has parsed them already)."""
    configs = configs or load_saved_configs(model_dir)
    catalogue = _catalogue(transformed_dir, configs.transform)
    tower = ItemTower(catalogue, configs.train, saved_target_counts(transformed_dir, model_dir, catalogue.num_rows))
    tower(tf.constant([0], tf.int64))  # create the variables before restoring
    tf.train.Checkpoint(item_tower=tower).read(storage.join(model_dir, artifacts.CHECKPOINT_PREFIX)).expect_partial()
    return tower


def item_embeddings(tower: ItemTower, batch_size: int = 8192) -> np.ndarray:
    """Embeddings of every catalogue product (OOV rows excluded), in product-index order."""
    rows = len(tower.product_ids)
    parts = [
        tower(tf.range(start, min(start + batch_size, rows), dtype=tf.int64)).numpy()
        for start in range(0, rows, batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def write_target_counts(model_dir: str, counts: np.ndarray) -> None:
    """Save the training's :func:`target_counts` beside its checkpoint (``TARGET_COUNTS_FILE``)."""
    storage.write_array(storage.join(model_dir, artifacts.TARGET_COUNTS_FILE), np.asarray(counts, np.float64))


def saved_target_counts(transformed_dir: str, model_dir: str, num_rows: int) -> np.ndarray:
    """The target counts the model was trained with: read from beside its checkpoint, or, for a model saved
    before they were, counted again from the training examples (the same numbers, read from every example).

    Counts for another number of product rows mean the model was trained on other transform outputs:
    ValueError."""
    uri = storage.join(model_dir, artifacts.TARGET_COUNTS_FILE)
    if not storage.exists(uri):
        return target_counts(transformed_dir, num_rows)
    return _counts_for(uri, num_rows, "the model was trained on other transform outputs")


def _counts_for(uri: str, num_rows: int, otherwise: str) -> np.ndarray:
    """The target counts saved at ``uri``, which must cover ``num_rows`` product rows (ValueError saying
    ``otherwise``)."""
    counts = storage.read_array(uri)
    if counts.shape != (num_rows,):
        raise ValueError(f"{uri} holds target counts of shape {counts.shape}, the transformed catalogue has "
                         f"{num_rows} product rows: {otherwise}")
    return counts


def target_counts(transformed_dir: str, num_rows: int) -> np.ndarray:
    """How often each product row is a training target: as the transform counted them, or, for a transform
    made before it did, counted from its next-event examples."""
    uri = storage.join(transformed_dir, artifacts.TARGET_COUNTS_FILE)
    if storage.exists(uri):
        return _counts_for(uri, num_rows, "the transform's outputs do not belong together")
    return count_example_targets(transformed_dir, num_rows)


def count_example_targets(transformed_dir: str, num_rows: int) -> np.ndarray:
    """Each product row's count among the next-event examples' targets (one pass over them)."""
    pattern = storage.join(transformed_dir, artifacts.TRAIN_EXAMPLES_DIR, "part*")
    spec = {"target_idx": tf.io.FixedLenFeature([], tf.int64)}
    counts = np.zeros(num_rows, np.float64)
    for records in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).batch(100_000):
        targets = tf.io.parse_example(records, spec)["target_idx"].numpy()
        counts += np.bincount(targets, minlength=len(counts))
    return counts


def _catalogue(transformed_dir: str, transform_config: TransformConfig) -> CatalogueFeatures:
    return load_catalogue_features(
        transformed_dir, transform_config.max_title_tokens, transform_config.product_oov_buckets
    )
