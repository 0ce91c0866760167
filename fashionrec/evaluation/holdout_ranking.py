"""Rank the holdout customers with every system and score them, a batch of customers at a time, in Beam.

Ranking is the part of an evaluation whose cost grows with customers × catalogue, so it is sharded by
customer: the same pipeline runs on the DirectRunner here and on Dataflow (``evaluate.beam_runner``) at a
retailer's scale. The systems are fitted once, by the driver, and travel to the workers as one pickled
file (:func:`save_systems`) that each worker loads once. What comes back is one Parquet row per customer
(:func:`ranked_schema`): the top of each system's ranking, each per-customer metric, the sampled AUC and
the report's metric-vs-K curves. The driver's summary (means, intervals, slices, the gate) then costs
O(customers), never O(customers × catalogue).

Each customer's AUC negatives are drawn from a generator seeded by ``evaluate.seed`` and the customer's
sampling key, so the figures do not depend on how the customers are batched or sharded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import apache_beam as beam
import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from fashionrec import storage
from fashionrec.artifacts import RANKED_CUSTOMERS_DIR
from fashionrec.config import LOCAL_BEAM_RUNNERS, EvaluateConfig
from fashionrec.contract.context import CLOCK_SIZES, FEATURES as CONTEXT_FEATURES, ContextTables
from fashionrec.evaluation import metrics
from fashionrec.evaluation.holdout import held_out, sampling_keys
from fashionrec.evaluation.systems import Histories, System
from fashionrec.model.aggregation import Aggregation
from fashionrec.model.features import EvalExamples, parse_eval_examples

SYSTEMS_FILE = "systems.pkl"  # the fitted systems, for the workers
InContext = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PooledSystem:
    """An embedding system as it is served: ``aggregation`` pools each history, ``context`` (when the model
    has context tables) moves each customer vector by the customer's request context, and ``build`` makes
    the :class:`System` for a batch given that move (None: no move)."""

    build: Callable[[InContext | None], System]
    aggregation: Aggregation
    context: ContextTables | None = None


@dataclass(frozen=True)
class HoldoutSystems:
    """Every system an evaluation compares: the baselines, fitted, which see each history's raw event
    weights, and the embedding systems (candidate, published), which pool as they are served."""

    baselines: dict[str, System]
    pooled: dict[str, PooledSystem]
    num_products: int

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.pooled, *self.baselines)

    def for_batch(self, batch: EvalExamples) -> dict[str, tuple[System, Histories]]:
        """Each system with the history weights it ranks ``batch`` by."""
        systems = {}
        for name, pooled in self.pooled.items():
            systems[name] = (pooled.build(moved_by(pooled.context, batch.context)),
                             pooled_weights(pooled.aggregation, batch))
        return {**systems, **{name: (system, batch.history_weight) for name, system in self.baselines.items()}}


def pooled_weights(aggregation: Aggregation, examples: EvalExamples) -> list[np.ndarray]:
    """Each holdout history's pooling weights under ``aggregation``."""
    return [aggregation.weights(w, a) for w, a in zip(examples.history_weight, examples.history_age_days, strict=True)]


def moved_by(tables: ContextTables | None, context: dict[str, np.ndarray]) -> InContext | None:
    """Customer vectors moved by ``tables`` at the customers' ``context`` (in order), as ``customer_vector``
    serves a request with that context; None (nothing to move) without tables or without a context."""
    if tables is None or not context:
        return None
    return lambda vectors: tables.adjust(vectors, context)


def save_systems(systems: HoldoutSystems, uri: str) -> None:
    with storage.open_output(uri) as stream:
        cloudpickle.dump(systems, stream)


def load_systems(uri: str) -> HoldoutSystems:
    with storage.open_input(uri) as stream:
        return cloudpickle.load(stream)


def score_batch(batch: EvalExamples, systems: HoldoutSystems, config: EvaluateConfig) -> pa.Table:
    """One row per customer of ``batch`` (:func:`ranked_schema`): each system's top ``max(top_k)``, its
    per-customer metrics (MRR is MRR@max(top_k)), its sampled AUC and its curve values at ``report_k``."""
    depth = max(config.top_k + config.report_k)
    negatives = _auc_negatives(batch, systems.num_products, config)
    columns: dict[str, object] = {
        "customer_id": batch.customer_ids.astype(str),
        "history_length": batch.history_lengths,
        "target_idxs": [t.astype(np.int64) for t in batch.target_idxs],
        **{f"context_{f}": batch.context.get(f, np.full(len(batch.customer_ids), -1 if f in CLOCK_SIZES else ""))
           for f in CONTEXT_FEATURES},
    }
    for name, (system, weights) in systems.for_batch(batch).items():
        ranked = system.rank(batch.history_idx, weights, depth)
        top = ranked[:, : max(config.top_k)]
        values = metrics.per_customer(top, batch.target_idxs, config.top_k)
        values["auc"] = metrics.sampled_auc(*_target_and_negative_scores(system, batch, weights, negatives))
        columns[f"{name}/top"] = list(top.astype(np.int64))
        columns.update({f"{name}/{metric}": v.astype(np.float64) for metric, v in values.items()})
        curves = metrics.per_customer(ranked, batch.target_idxs, config.report_k)
        columns.update({f"{name}/curve/{metric}": v.astype(np.float64) for metric, v in curves.items()})
    schema = ranked_schema(systems.names, config)
    return pa.table({field.name: pa.array(columns[field.name], field.type) for field in schema}, schema=schema)


def _target_and_negative_scores(system: System, batch: EvalExamples, weights: Histories,
                                negatives: Histories) -> tuple[Histories, Histories]:
    """Each customer's target scores and negative scores, from one ``score`` call: a system like EASE
    computes every product's score per batch, so two calls would pay for it twice."""
    scores = system.score(batch.history_idx, weights,
                          [np.concatenate([t, n]) for t, n in zip(batch.target_idxs, negatives, strict=True)])
    targets = [s[: len(t)] for s, t in zip(scores, batch.target_idxs, strict=True)]
    return targets, [s[len(t):] for s, t in zip(scores, batch.target_idxs, strict=True)]


def _auc_negatives(batch: EvalExamples, num_products: int, config: EvaluateConfig) -> Histories:
    """Per customer, ``auc_negatives`` products they never touched, drawn by their own seeded generator."""
    negatives = []
    for key, history, targets in zip(sampling_keys(config.seed, batch.customer_ids), batch.history_idx,
                                     batch.target_idxs, strict=True):
        allowed = np.setdiff1d(np.arange(num_products), np.concatenate([history, targets]))
        rng = np.random.default_rng([config.seed, int(key)])
        negatives.append(rng.choice(allowed, size=min(config.auc_negatives, len(allowed)), replace=False))
    return negatives


def ranked_schema(names: tuple[str, ...], config: EvaluateConfig) -> pa.Schema:
    """The per-customer rows :func:`score_batch` writes for the systems ``names``."""
    fields = [pa.field("customer_id", pa.string()), pa.field("history_length", pa.int64()),
              pa.field("target_idxs", pa.list_(pa.int64()))]
    fields += [pa.field(f"context_{f}", pa.int64() if f in CLOCK_SIZES else pa.string()) for f in CONTEXT_FEATURES]
    for name in names:
        fields.append(pa.field(f"{name}/top", pa.list_(pa.int64())))
        fields += [pa.field(f"{name}/{metric}", pa.float64())
                   for metric in (*metrics.metric_names(config.top_k), "auc")]
        fields += [pa.field(f"{name}/curve/{metric}", pa.float64()) for metric in metrics.metric_names(config.report_k)]
    return pa.schema(fields)


@dataclass(frozen=True)
class RankedHoldout:
    """The ranking job's rows, read back in customer-id order (what the evaluation summarises)."""

    customer_ids: np.ndarray
    history_lengths: np.ndarray
    target_idxs: list[np.ndarray]
    context: dict[str, np.ndarray]
    top: dict[str, np.ndarray]  # system -> [customers, K] product rows, best first
    values: dict[str, dict[str, np.ndarray]]  # system -> metric (ranked metrics and "auc") -> per customer
    curves: dict[str, dict[str, np.ndarray]]  # system -> metric at each of report_k -> per customer


def read_ranked(directory: str, names: tuple[str, ...]) -> RankedHoldout:
    """Every Parquet part under ``directory`` (local), sorted by customer id."""
    table = pq.read_table(directory).sort_by("customer_id")
    data = {name: table.column(name) for name in table.column_names}
    context = {f: data[f"context_{f}"].to_numpy(zero_copy_only=False) for f in CONTEXT_FEATURES
               if f"context_{f}" in data}
    top, values, curves = {}, {}, {}
    for name in names:
        top[name] = _stacked(data[f"{name}/top"].to_pylist())
        prefix, curve_prefix = f"{name}/", f"{name}/curve/"
        values[name] = {c[len(prefix):]: data[c].to_numpy() for c in data
                        if c.startswith(prefix) and not c.startswith(curve_prefix) and c != f"{name}/top"}
        curves[name] = {c[len(curve_prefix):]: data[c].to_numpy() for c in data if c.startswith(curve_prefix)}
    return RankedHoldout(
        customer_ids=data["customer_id"].to_numpy(zero_copy_only=False).astype(str),
        history_lengths=data["history_length"].to_numpy(),
        target_idxs=[np.asarray(t, np.int64) for t in data["target_idxs"].to_pylist()],
        context=context, top=top, values=values, curves=curves)


def _stacked(rows: list[list[int]]) -> np.ndarray:
    """Rows of one width (the narrowest: a history can cover all but a few products of a catalogue)."""
    width = min((len(r) for r in rows), default=0)
    return np.array([r[:width] for r in rows], np.int64).reshape(len(rows), width)


def rank_and_read(eval_examples_dir: str, systems: HoldoutSystems, output_dir: str, config: EvaluateConfig,
                  window: int) -> RankedHoldout:
    """Run :func:`rank_holdout` and read its rows back; they stay under ``output_dir/RANKED_CUSTOMERS_DIR`` as the
    evaluation's per-customer record. A local runner works in a temporary folder (gs:// inputs staged
    through it); any other runner reads and writes the given URIs itself, with the systems file beside
    its output, removed afterwards (also when the job fails)."""
    ranked_uri = storage.join(output_dir, RANKED_CUSTOMERS_DIR)
    if config.beam_runner not in LOCAL_BEAM_RUNNERS:
        systems_uri = storage.join(output_dir, SYSTEMS_FILE)
        save_systems(systems, systems_uri)
        try:
            rank_holdout(eval_examples_dir, systems_uri, systems.names, ranked_uri, config, window)
        finally:
            storage.remove(systems_uri)
        with storage.local_copy(ranked_uri) as ranked:
            return read_ranked(ranked, systems.names)
    with storage.local_copy(eval_examples_dir) as local_examples, tempfile.TemporaryDirectory() as work:
        systems_uri, ranked = os.path.join(work, SYSTEMS_FILE), os.path.join(work, RANKED_CUSTOMERS_DIR)
        save_systems(systems, systems_uri)
        rank_holdout(local_examples, systems_uri, systems.names, ranked, config, window)
        storage.copy_tree(ranked, ranked_uri)
        return read_ranked(ranked, systems.names)


def rank_holdout(eval_examples_dir: str, systems_uri: str, names: tuple[str, ...], output_dir: str,
                 config: EvaluateConfig, window: int) -> None:
    """The Beam job: read the holdout examples, keep the :func:`held_out` customers, sample at most
    ``max_eval_customers`` of them by their sampling keys, score them in batches of
    ``ranking_batch_size`` with the systems saved at ``systems_uri`` (named ``names``) and write the rows
    as Parquet parts under ``output_dir``."""
    batch = dict(min_batch_size=1, max_batch_size=config.ranking_batch_size)
    options = PipelineOptions([f"--runner={config.beam_runner}", *config.beam_options])
    with beam.Pipeline(options=options) as pipeline:
        customers = (
            pipeline
            | "Read" >> beam.io.ReadFromTFRecord(storage.join(eval_examples_dir, "part*"))
            | "BatchRecords" >> beam.BatchElements(**batch)
            | "HeldOut" >> beam.FlatMap(_held_out_customers, config, window)
        )
        last_key = (
            customers
            | "Keys" >> beam.Map(lambda keyed: keyed[0])
            | "Sample" >> beam.combiners.Top.Smallest(config.max_eval_customers)
            | "LastKey" >> beam.Map(lambda keys: keys[-1] if keys else -1)
        )
        _ = (
            customers
            | "Sampled" >> beam.Filter(lambda keyed, last: keyed[0] <= last, beam.pvalue.AsSingleton(last_key))
            | "Customers" >> beam.Map(lambda keyed: keyed[1])
            | "BatchCustomers" >> beam.BatchElements(**batch)
            | "Score" >> beam.ParDo(_ScoreBatches(systems_uri, config))
            | "Write" >> beam.io.WriteToParquetBatched(storage.join(output_dir, "part"),
                                                      schema=ranked_schema(names, config),
                                                      file_name_suffix=".parquet")
        )


def _held_out_customers(records: list[bytes], config: EvaluateConfig,
                        window: int) -> Iterator[tuple[int, EvalExamples]]:
    held = held_out(parse_eval_examples(records), config, window)
    yield from zip(sampling_keys(config.seed, held.customer_ids).tolist(), held.customers(), strict=True)


class _ScoreBatches(beam.DoFn):
    """:func:`score_batch` on each batch of customers, the systems loaded once per worker."""

    def __init__(self, systems_uri: str, config: EvaluateConfig):
        self._systems_uri = systems_uri
        self._config = config
        self._systems: HoldoutSystems | None = None

    def setup(self) -> None:
        self._systems = load_systems(self._systems_uri)

    def process(self, customers: list[EvalExamples]) -> Iterator[pa.Table]:
        assert self._systems is not None
        yield score_batch(EvalExamples.concatenate(customers), self._systems, self._config)
