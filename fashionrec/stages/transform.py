"""Transform: Apache Beam + tensorflow-transform over the canonical dataset.

Two Beam pipelines, both runnable on any Beam runner chosen by pipeline options (the local default is
the DirectRunner family; Dataflow, Flink or Spark by ``TransformConfig.beam_runner``/``beam_options``):

1. **Catalogue features** with tensorflow-transform, fed Arrow record batches read from the catalogue
   Parquet (TFXIO's tensor adapter, so no tf.Example round trip before the analysers): product
   id vocabulary with OOV buckets, title+description tokens, category/colour/brand vocabularies, price
   quantile buckets and z-score. Writes the transform graph (reusable for new products at serving
   time) and the transformed catalogue, whose rows also carry the price analysers' results
   (``price_boundaries``, ``price_mean``, ``price_var``) for the numpy content tower.
2. **Interaction examples**: events mapped to product indices with that vocabulary, grouped by
   customer (sharded, so each element is a table, not a row) and turned into next-item training
   examples (recent history → target; ``TransformConfig.next_event_examples``), one sequence example per
   customer (their newest training events, for the future-set objective), holdout evaluation examples
   (history before the split → the products interacted with after it) and each product's count of
   training targets.
"""

from __future__ import annotations

import contextlib
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from fashionrec import artifacts
from fashionrec import progress
from fashionrec import storage
from fashionrec.config import LOCAL_BEAM_RUNNERS, TransformConfig
from fashionrec.contract import ops  # the ages-in-days contract shared with serving
from fashionrec.contract.context import FEATURES as CONTEXT_FEATURES, value_rows
from fashionrec.stages import context
from fashionrec.stages.tfrecords import WriteBatchesToTFRecord
from fashionrec.stages.ingest import EXAMINATION  # P(looked at) where the event's product was shown

TEXT_COLUMNS = ("product_id", "title", "description", "category", "colour", "brand")
EXAMPLE_SOURCE_COLUMNS = ("customer_id", "product_idx", "weight", "seconds", EXAMINATION)
NUM_SHARDS = 64


@dataclass(frozen=True)
class TransformSummary:
    products: int
    product_vocabulary_size: int
    train_examples: int
    eval_customers: int
    customer_sequences: int = 0  # customers with at least two training events (train.objective=future_set)


def transform(ingested_dir: str, output_dir: str, config: TransformConfig) -> TransformSummary:
    """Run both Beam pipelines; writes TFRecords and the transform graph under ``output_dir``.

    ``gs://`` inputs and outputs are staged through local folders (see ``storage.local_copy`` and
    ``local_output``), which suits the local runners; a distributed runner needs gs:// paths it can
    reach from its workers and TensorFlow's own GCS access.
    """
    if config.beam_runner not in LOCAL_BEAM_RUNNERS:  # workers read and write the (gs://) paths themselves
        return _transform(ingested_dir, output_dir, config)
    with storage.local_copy(ingested_dir) as local_in, storage.local_output(output_dir) as local_out:
        return _transform(local_in, local_out, config)


def _transform(ingested_dir: str, output_dir: str, config: TransformConfig) -> TransformSummary:
    with _tft_temp_dir(config) as temp_dir:
        with progress.step("Beam + tensorflow-transform: analyse and transform the catalogue"):
            transform_catalogue(ingested_dir, output_dir, config, temp_dir)
    vocabulary = load_product_vocabulary(output_dir)
    with progress.step("Beam: customer histories to training examples, sequences and holdout examples"):
        counts = _build_examples(ingested_dir, output_dir, vocabulary, config)
    return TransformSummary(
        products=len(vocabulary),
        product_vocabulary_size=len(vocabulary) + config.product_oov_buckets,
        train_examples=counts.get("train", 0),
        eval_customers=counts.get("eval", 0),
        customer_sequences=counts.get("sequences", 0),
    )


@contextlib.contextmanager
def _tft_temp_dir(config: TransformConfig) -> Iterator[str]:
    """TFT's scratch space: the runner's ``--temp_location`` when given (Dataflow needs gs://), else local."""
    configured = pipeline_options(config).get_all_options().get("temp_location")
    if configured:
        yield storage.join(configured, "tft")
        return
    with tempfile.TemporaryDirectory() as temp_dir:
        yield temp_dir


def pipeline_options(config: TransformConfig) -> PipelineOptions:
    return PipelineOptions([f"--runner={config.beam_runner}", *config.beam_options])


def catalogue_feature_spec() -> dict[str, object]:
    import tensorflow as tf

    spec: dict[str, object] = {column: tf.io.FixedLenFeature([], tf.string) for column in TEXT_COLUMNS}
    spec["price"] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def make_preprocessing_fn(config: TransformConfig):
    """The tensorflow-transform preprocessing function for catalogue rows."""
    import tensorflow as tf
    import tensorflow_transform as tft

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        text = tf.strings.lower(tf.strings.join([inputs["title"], inputs["description"]], separator=" "))
        text = tf.strings.regex_replace(text, r"[^a-z0-9]+", " ")
        tokens = tf.strings.split(text)[:, : config.max_title_tokens].to_sparse()
        price = tf.maximum(inputs["price"], 0.0)
        log_price = tf.math.log1p(price)
        outputs = {
            "product_id": inputs["product_id"],
            "product_idx": tft.compute_and_apply_vocabulary(
                inputs["product_id"], num_oov_buckets=config.product_oov_buckets, vocab_filename=artifacts.PRODUCT_VOCAB
            ),
            "token_ids": tft.compute_and_apply_vocabulary(
                tokens, top_k=config.token_vocab_size, num_oov_buckets=config.vocab_oov_buckets,
                vocab_filename="tokens",
            ),
            **price_features(price, log_price, config.price_buckets),
        }
        for column in ("category", "colour", "brand"):
            outputs[f"{column}_idx"] = tft.compute_and_apply_vocabulary(
                inputs[column], num_oov_buckets=config.vocab_oov_buckets, vocab_filename=column
            )
        return outputs

    return preprocessing_fn


def price_features(price, log_price, num_buckets: int) -> dict:
    """Price bucket and z-score, plus the analysers' results as broadcast columns.

    Same semantics as ``tft.bucketize`` (quantile boundaries, same epsilon; ``apply_buckets``) and
    ``tft.scale_to_z_score`` (population variance; a zero variance only centres), spelled out so the
    boundaries, mean and variance can also be written into every transformed row
    (``price_boundaries``, ``price_mean``, ``price_var``): TFT bakes them into the graph as constants
    that cannot be read back, and the numpy content tower (:mod:`fashionrec.contract.content`) needs them.

    Why the buckets are quantiles of the clipped price and not of ``log1p(price)``: quantile buckets do
    not change under a monotone map, and comparing raw float32 prices is bit-exact outside
    TensorFlow, whereas TF's vectorised log1p differs from libm's by one ulp on ~15% of values
    (measured), enough to move a product whose log-price IS a boundary into the next bucket.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    boundaries = tft.quantiles(price, num_buckets, epsilon=min(1.0 / num_buckets, 0.01))  # [1, num_buckets - 1]
    mean = tft.mean(log_price)
    var = tft.var(log_price)
    std = tf.sqrt(var)
    centred = log_price - mean
    rows = tf.shape(price)[0]
    return {
        "price_bucket": tft.apply_buckets(price, boundaries),
        "price_z": tf.where(tf.not_equal(std, 0.0), tf.divide(centred, std), centred),
        "price_boundaries": tf.tile(boundaries, [rows, 1]),
        "price_mean": tf.fill([rows], mean),
        "price_var": tf.fill([rows], var),
    }


def _as_lists(table: pa.Table) -> pa.RecordBatch:
    """The tensor adapter reads a dense feature from a list column (as from tf.Examples): wrap each scalar
    column in a one-element list column (text as binary, price as float32)."""
    columns = {name: table.column(name).combine_chunks() for name in [*TEXT_COLUMNS, "price"]}
    columns = {name: array.cast(pa.binary()) for name, array in columns.items() if name != "price"}
    columns["price"] = table.column("price").combine_chunks().cast(pa.float32())
    wrapped = {name: _one_element_lists(array) for name, array in columns.items()}
    return pa.RecordBatch.from_pydict(wrapped)


def _one_element_lists(array: pa.Array) -> pa.ListArray:
    offsets = pa.array(np.arange(len(array) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, array)


def transform_catalogue(ingested_dir: str, output_dir: str, config: TransformConfig, temp_dir: str) -> None:
    """The catalogue Parquet through tensorflow-transform: the transformed catalogue and the transform graph
    under ``output_dir`` (``temp_dir``: TFT's scratch space)."""
    import tensorflow_transform.beam as tft_beam

    source = storage.join(ingested_dir, artifacts.CATALOGUE_FILE)
    with beam.Pipeline(options=pipeline_options(config)) as pipeline:
        with tft_beam.Context(temp_dir=temp_dir):
            batches = (
                pipeline
                | "ReadCatalogue" >> beam.io.ReadFromParquetBatched(source, columns=[*TEXT_COLUMNS, "price"])
                | "AsLists" >> beam.Map(_as_lists)
            )
            (transformed, _), transform_fn = (
                batches,
                _catalogue_adapter_config(),
            ) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                make_preprocessing_fn(config), output_record_batches=True
            )
            _ = (
                transformed
                | "ToExamples" >> beam.MapTuple(_encode_record_batch)
                | "Write" >> WriteBatchesToTFRecord(
                    storage.join(output_dir, artifacts.TRANSFORMED_CATALOGUE_DIR, "part"))
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(
                storage.join(output_dir, artifacts.TRANSFORM_FN_DIR)
            )


def _catalogue_adapter_config():
    """How TFT reads the :func:`_as_lists` batches as the tensors of :func:`catalogue_feature_spec`."""
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

    arrow_schema = pa.schema([*((name, pa.list_(pa.binary())) for name in TEXT_COLUMNS),
                              ("price", pa.list_(pa.float32()))])
    schema = schema_utils.schema_from_feature_spec(catalogue_feature_spec())
    return tensor_adapter.TensorAdapterConfig(
        arrow_schema, tensor_representation_util.InferTensorRepresentationsFromSchema(schema))


def _encode_record_batch(batch: pa.RecordBatch, _: object) -> list[bytes]:
    from tfx_bsl.public.tfxio import RecordBatchToExamplesEncoder

    return RecordBatchToExamplesEncoder().encode(batch)


def load_product_vocabulary(output_dir: str) -> list[str]:
    """Product ids in vocabulary order: index i is product_idx i; unknown ids map to OOV buckets."""
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(storage.join(output_dir, artifacts.TRANSFORM_FN_DIR))
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in output.vocabulary_by_name(artifacts.PRODUCT_VOCAB)]


# ----------------------------------------------------------------------------------------------------
# Interaction examples


def _build_examples(
    ingested_dir: str, output_dir: str, vocabulary: list[str], config: TransformConfig
) -> dict[str, int]:
    index = {product: i for i, product in enumerate(vocabulary)}
    num_rows = len(index) + config.product_oov_buckets  # product rows, the OOV buckets included
    train_source = storage.join(ingested_dir, artifacts.TRAIN_EVENTS_FILE)
    holdout_source = storage.join(ingested_dir, artifacts.HOLDOUT_EVENTS_FILE)
    columns = ["customer_id", "product_id", "weight", "timestamp"]
    present = _parquet_columns(train_source)
    columns += [c for c in (EXAMINATION, *context.SOURCE_COLUMNS) if c in present]
    context_columns = [c for c in context.SOURCE_COLUMNS if c in present]
    vocabulary = context.build_vocabulary(train_source, context_columns, config.max_context_values)
    vocabulary.write(output_dir)
    with beam.Pipeline(options=pipeline_options(config)) as pipeline:
        product_index = pipeline | "Vocabulary" >> beam.Create([index])
        train = (
            pipeline
            | "ReadTrain" >> beam.io.ReadFromParquetBatched(train_source, columns=columns)
            | "ShardTrain" >> beam.FlatMap(_shard_by_customer, "train", beam.pvalue.AsSingleton(product_index))
        )
        holdout = (
            pipeline
            | "ReadHoldout" >> beam.io.ReadFromParquetBatched(holdout_source, columns=columns)
            | "ShardHoldout" >> beam.FlatMap(_shard_by_customer, "holdout", beam.pvalue.AsSingleton(product_index))
        )
        grouped = (train, holdout) | beam.Flatten() | "GroupByShard" >> beam.GroupByKey()
        examples = grouped | "MakeExamples" >> beam.FlatMap(
            _shard_examples, config, _split_seconds(ingested_dir), vocabulary, num_rows)
        _ = (
            examples
            | "SelectCounts" >> beam.Filter(lambda item: item[0] == "counts")
            | "Counts" >> beam.Map(lambda item: item[1])
            | "SumCounts" >> beam.CombineGlobally(_sum_counts, num_rows)
            | "WriteCounts" >> beam.Map(
                lambda counts: storage.write_array(storage.join(output_dir, artifacts.TARGET_COUNTS_FILE), counts))
        )
        kinds = (("train", artifacts.TRAIN_EXAMPLES_DIR),) if config.next_event_examples else ()
        for kind, directory in (*kinds, ("eval", artifacts.EVAL_EXAMPLES_DIR),
                                ("sequences", artifacts.CUSTOMER_SEQUENCES_DIR)):
            _ = (
                examples
                | f"Select{kind}" >> beam.Filter(lambda item, k=kind: item[0] == k)
                | f"Encode{kind}" >> beam.Map(lambda item, k=kind: _encode_batch(item[1], k))
                | f"Write{kind}" >> WriteBatchesToTFRecord(storage.join(output_dir, directory, "part"))
            )
    counters = pipeline.result.metrics().query(beam.metrics.MetricsFilter().with_namespace(__name__))["counters"]
    return {counter.key.metric.name: counter.committed for counter in counters}


def _shard_by_customer(
    table: pa.Table, split: str, index: dict[str, int]
) -> Iterator[tuple[int, tuple[str, pd.DataFrame]]]:
    frame = table.to_pandas()
    oov = len(index)
    frame["product_idx"] = frame["product_id"].map(index).fillna(oov).astype("int64")
    frame["seconds"] = epoch_seconds(frame["timestamp"])
    if EXAMINATION not in frame:
        frame[EXAMINATION] = np.nan  # unknown: the event weighs as a target like any other
    frame[list(CONTEXT_FEATURES)] = context.event_values(frame)
    shard = frame["customer_id"].map(lambda c: zlib.crc32(c.encode()) % NUM_SHARDS)
    for key, part in frame.groupby(shard, sort=False):
        yield int(key), (split, part[[*EXAMPLE_SOURCE_COLUMNS, *CONTEXT_FEATURES]])


def _parquet_columns(uri: str) -> list[str]:
    with storage.open_input(uri) as stream:
        return pq.read_schema(stream).names


def _split_seconds(ingested_dir: str) -> int:
    """The ingest split time in epoch seconds: holdout histories are aged as of that moment."""
    summary = storage.read_json(storage.join(ingested_dir, artifacts.INGEST_SUMMARY_FILE))
    return int(epoch_seconds(pd.Series([summary["split_time"]])).iloc[0])


def epoch_seconds(timestamps: pd.Series) -> pd.Series:
    """UTC timestamps → integer seconds since the epoch, whatever the stored resolution."""
    return (pd.to_datetime(timestamps, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _shard_examples(
    element: tuple[int, Iterable[tuple[str, pd.DataFrame]]], config: TransformConfig, split_seconds: int,
    vocabulary: context.ContextVocabulary, num_rows: int,
) -> Iterator[tuple[str, pa.RecordBatch | np.ndarray]]:
    """All events of a shard's customers → train examples (with ``config.next_event_examples``), customer
    sequences, eval examples and the shard's target counts over ``num_rows`` product rows."""
    _, parts = element
    parts = list(parts)
    train = _concat([p for s, p in parts if s == "train"])
    holdout = _concat([p for s, p in parts if s == "holdout"])
    train = train.sort_values(["customer_id", "seconds"], kind="stable")
    holdout = holdout.sort_values(["customer_id", "seconds"], kind="stable")
    if config.next_event_examples:
        yield "train", next_item_examples(train, config.history_length, config.target_horizon_events, vocabulary)
    yield "counts", target_counts(train, num_rows)
    yield "sequences", customer_sequences(train, config.sequence_length, vocabulary)
    yield "eval", holdout_examples(train, holdout, split_seconds)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({name: [] for name in (*EXAMPLE_SOURCE_COLUMNS, *CONTEXT_FEATURES)}).astype(
            {"product_idx": "int64", "weight": "float32", "seconds": "int64", EXAMINATION: "float32",
             **context.feature_dtypes()}
        )
    return pd.concat(frames, ignore_index=True)


def next_item_examples(train: pd.DataFrame, history_length: int, target_horizon: int = 1,
                       vocabulary: context.ContextVocabulary | None = None) -> pa.RecordBatch:
    """For each customer event after the first: up to ``history_length`` earlier events → this product.

    With ``target_horizon`` 1 the history is the events just before the target. With H > 1 the history
    ends 0 to H - 1 events (drawn at random, at least one event kept) before the target, so the model
    learns to predict the customer's next H events, not only the next one: what a holdout period asks.
    The draw is seeded by the shard's own events, so a rerun writes the same examples.
    Each history event carries its age in days at the target event's time (recency pooling), and each
    example its target event's ``examination`` (1 where unknown or absent), which position-debiased
    training divides by, and, with a ``vocabulary``, its target event's context as table rows
    (``target_device``, ``target_region``, ``target_hour``, ``target_weekday``; 0: unknown).
    ``train`` must be sorted by customer then time. Vectorised: each history is a slice of the sorted
    event arrays, gathered with one index array.
    """
    customers = train["customer_id"].to_numpy()
    products = train["product_idx"].to_numpy(dtype=np.int64)
    weights = train["weight"].to_numpy(dtype=np.float32)
    seconds = train["seconds"].to_numpy(dtype=np.int64)
    first_of_customer = _first_of_customer(customers)
    customer_start = np.maximum.accumulate(np.where(first_of_customer, np.arange(len(customers)), 0))
    targets = np.flatnonzero(~first_of_customer)
    stops = _history_stops(targets, customer_start[targets], target_horizon, seconds)
    starts = np.maximum(customer_start[targets], stops - history_length)
    gather, offsets = _ranges(starts, stops)
    columns = {f"target_{f}": _one_element_lists(pa.array(rows)) for f, rows in
               _context_rows(train, targets, vocabulary).items()}
    return pa.RecordBatch.from_pydict(
        {
            **columns,
            "customer_id": _one_element_lists(pa.array(customers[targets].astype(str), type=pa.binary())),
            "history_idx": pa.ListArray.from_arrays(offsets, pa.array(products[gather])),
            "history_weight": pa.ListArray.from_arrays(offsets, pa.array(weights[gather])),
            "history_age_days": pa.ListArray.from_arrays(
                offsets, pa.array(_days(np.repeat(seconds[targets], np.diff(offsets.to_numpy())) - seconds[gather]))),
            "target_idx": _one_element_lists(pa.array(products[targets])),
            "target_examination": _one_element_lists(pa.array(_examinations(train)[targets])),
        }
    )


def customer_sequences(train: pd.DataFrame, sequence_length: int,
                       vocabulary: context.ContextVocabulary | None = None) -> pa.RecordBatch:
    """For each customer with at least two training events: their newest ``sequence_length`` events, oldest
    first: ``sequence_idx`` (product rows), ``sequence_weight``, ``sequence_seconds`` (epoch seconds) and, with
    a ``vocabulary``, each event's context table rows (``sequence_device``, ..., 0: unknown).

    The future-set objective cuts each sequence at a random event in every epoch, so the examples carry
    whole sequences and the cut is made in training. ``train`` must be sorted by customer then time.
    """
    customers = train["customer_id"].to_numpy()
    starts = np.flatnonzero(_first_of_customer(customers))
    stops = np.r_[starts[1:], len(customers)].astype(np.int64)
    kept = stops - starts >= 2
    starts, stops = np.maximum(starts[kept], stops[kept] - sequence_length), stops[kept]
    gather, offsets = _ranges(starts, stops)
    columns = {"idx": train["product_idx"].to_numpy(np.int64), "weight": train["weight"].to_numpy(np.float32),
               "seconds": train["seconds"].to_numpy(np.int64)}
    columns |= {f: rows.astype(np.int64) for f, rows in _context_rows(train, np.arange(len(train)), vocabulary).items()}
    return pa.RecordBatch.from_pydict(
        {"customer_id": _one_element_lists(pa.array(customers[starts].astype(str), type=pa.binary())),
         **{f"sequence_{name}": pa.ListArray.from_arrays(offsets, pa.array(values[gather]))
            for name, values in columns.items()}})


def target_counts(train: pd.DataFrame, num_rows: int) -> np.ndarray:
    """How often each of ``num_rows`` product rows is a training target: every event of ``train`` (sorted by
    customer) but each customer's first, as :func:`next_item_examples` makes examples of them."""
    targets = train["product_idx"].to_numpy(np.int64)[~_first_of_customer(train["customer_id"].to_numpy())]
    return np.bincount(targets, minlength=num_rows).astype(np.float64)


def _sum_counts(counts: Iterable[np.ndarray], num_rows: int) -> np.ndarray:
    """The shards' target counts summed (zeros when there are none): Beam combines partial sums with it too."""
    return sum(counts, np.zeros(num_rows, np.float64))


def _first_of_customer(customers: np.ndarray) -> np.ndarray:
    """Which events (sorted by customer) are their customer's first."""
    return np.r_[True, customers[1:] != customers[:-1]] if len(customers) else np.array([], bool)


def _context_rows(train: pd.DataFrame, targets: np.ndarray, vocabulary: context.ContextVocabulary | None,
                  ) -> dict[str, np.ndarray]:
    """Each target event's context table row per feature (the serving contract's mapping); none without a
    vocabulary or context columns."""
    if vocabulary is None or not set(CONTEXT_FEATURES) <= set(train.columns):
        return {}
    return {f: value_rows(f, train[f].to_numpy()[targets], vocabulary.values.get(f, ())) for f in CONTEXT_FEATURES}


def _examinations(train: pd.DataFrame) -> np.ndarray:
    """Each event's examination probability as float32, 1 where unknown (blank) or not given at all."""
    if EXAMINATION not in train:
        return np.ones(len(train), np.float32)
    return train[EXAMINATION].fillna(1.0).to_numpy(dtype=np.float32)


def _history_stops(targets: np.ndarray, customer_starts: np.ndarray, horizon: int, seconds: np.ndarray) -> np.ndarray:
    """Where each target's history ends (exclusive): 0 to ``horizon`` - 1 events before the target, never
    before the customer's first event."""
    if horizon < 1:
        raise ValueError(f"target_horizon_events must be at least 1, got {horizon}")
    if horizon == 1 or not len(targets):
        return targets
    skipped = np.random.default_rng([len(seconds), int(seconds.sum()) % 2**32]).integers(0, horizon, len(targets))
    return np.maximum(targets - skipped, customer_starts + 1)


def holdout_examples(train: pd.DataFrame, holdout: pd.DataFrame, split_seconds: int) -> pa.RecordBatch:
    """For each holdout customer: their WHOLE train history (aged at the split time) → their holdout products.

    The whole history, not the model's window: under the standard protocol every product a customer
    interacted with in training is excluded from every system's ranking, and the baselines are given
    every event. The model pools only the last ``history_length`` of them (``Aggregation.window``).
    With context columns, each customer's ``context_*`` is that of their first holdout event (``holdout``
    sorted by customer, then time): the context a request would carry when they come back.
    """
    history = dict(tuple(train.groupby("customer_id", sort=False)))
    empty = train.iloc[:0]
    ids, past_idx, past_weight, past_age, targets = [], [], [], [], []
    first = holdout.drop_duplicates("customer_id") if set(CONTEXT_FEATURES) <= set(holdout.columns) else None
    for customer, events in holdout.groupby("customer_id", sort=False):
        past = history.get(customer, empty)
        ids.append(customer)
        past_idx.append(past["product_idx"].to_numpy(np.int64))
        past_weight.append(past["weight"].to_numpy(np.float32))
        past_age.append(_days(split_seconds - past["seconds"].to_numpy(np.int64)))
        targets.append(pd.unique(events["product_idx"].to_numpy(np.int64)))
    return pa.RecordBatch.from_pydict(
        {
            "customer_id": _one_element_lists(pa.array(ids, type=pa.binary())),
            "history_idx": _list_array(past_idx, pa.int64()),
            "history_weight": _list_array(past_weight, pa.float32()),
            "history_age_days": _list_array(past_age, pa.float32()),
            "target_idxs": _list_array(targets, pa.int64()),
            **_first_context(first, ids),
        }
    )


def _first_context(first: pd.DataFrame | None, customers: list[str]) -> dict[str, pa.Array]:
    """``context_<feature>`` of each customer's first holdout event, in ``customers`` order (none without)."""
    if first is None:
        return {}
    values = first.set_index("customer_id").loc[customers]
    return {f"context_{f}": _one_element_lists(pa.array(values[f].to_numpy(), type=pa.binary() if f in
                                                         context.TEXT_FEATURES else pa.int64()))
            for f in CONTEXT_FEATURES}


def _days(seconds: np.ndarray) -> np.ndarray:
    """Ages in seconds → float32 days."""
    return (np.asarray(seconds, dtype=np.float64) / ops.SECONDS_PER_DAY).astype(np.float32)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Indices of the concatenated ranges [start, stop) and the list offsets that delimit them."""
    lengths = stops - starts
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    gather = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths) + np.repeat(starts, lengths)
    return gather.astype(np.int64), pa.array(offsets)


def _list_array(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    offsets = pa.array(np.r_[0, np.cumsum([len(a) for a in arrays])].astype(np.int32))
    values = np.concatenate(arrays) if arrays else np.array([])
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=value_type))


def _encode_batch(batch: pa.RecordBatch, kind: str) -> list[bytes]:
    from tfx_bsl.public.tfxio import RecordBatchToExamplesEncoder

    beam.metrics.Metrics.counter(__name__, kind).inc(batch.num_rows)
    return RecordBatchToExamplesEncoder().encode(batch) if batch.num_rows else []
