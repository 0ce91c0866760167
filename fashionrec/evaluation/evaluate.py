"""Evaluate exported embeddings on the time-based holdout against the baselines and the published model,
then gate. The driver fits the systems; Beam ranks the holdout customers (:mod:`.holdout_ranking`); the
summary, slices, intervals and the gate read its per-customer rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fashionrec import artifacts
from fashionrec import progress
from fashionrec import storage
from fashionrec.artifacts import EMBEDDINGS_FILE, EVAL_EXAMPLES_DIR
from fashionrec.config import EvaluateConfig, ServingConfig
from fashionrec.contract.context import CONTEXT_FILE, ContextTables
from fashionrec.embeddings_file import ExportedEmbeddings, read_exported
from fashionrec.evaluation import gate, metrics
from fashionrec.evaluation.bootstrap import mean_intervals
from fashionrec.evaluation.holdout_ranking import (
    HoldoutSystems,
    PooledSystem,
    RankedHoldout,
    moved_by,
    rank_and_read,
)
from fashionrec.evaluation.report import ReportInputs, render_report
from fashionrec.evaluation.slices import holdout_slices
from fashionrec.evaluation.systems import (
    BASELINES,
    baseline_systems,
    embedding_system,
    popularity_scores,
    published_system,
)
from fashionrec.model.aggregation import AGGREGATION_FILE, Aggregation
from fashionrec.model.features import EvalExamples
from fashionrec.repository.served import ServedVersion, served_version


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, dict[str, float]]
    blessing: dict[str, object]
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # each system's per-customer metric values, same customers in the same order (for paired intervals)
    per_customer: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def blessed(self) -> bool:
        return bool(self.blessing["blessed"])


def evaluate(
    ingested_dir: str,
    transformed_dir: str,
    embeddings_dir: str,
    output_dir: str,
    config: EvaluateConfig,
    model_repository: str | None = None,
    serving: ServingConfig = ServingConfig(),
) -> Evaluation:
    """Score the candidate, the baselines and the published model on the same customers; gate; report.

    The protocol is ``config.exclude`` (default: the standard one, every product a customer interacted
    with in training is excluded from every ranking and from the relevant set). The embedding systems
    pool each history as the candidate will be served (its ``aggregation.json``: the last ``window``
    events) and add its popularity prior; the baselines see every event of the history, raw weights.
    """
    exported = read_exported(storage.join(embeddings_dir, EMBEDDINGS_FILE))
    product_ids, is_new = exported.product_ids, exported.is_new
    aggregation = Aggregation.read(storage.join(embeddings_dir, AGGREGATION_FILE))
    train_events = storage.read_table(storage.join(ingested_dir, artifacts.TRAIN_EVENTS_FILE))
    popularity = popularity_scores(train_events, product_ids)
    published = served_version(model_repository, serving) if model_repository else None
    with progress.step("fitting the baselines"):
        systems = holdout_systems(exported, aggregation, train_events, published, embeddings_dir, config, serving)
    with progress.step(f"Beam ({config.beam_runner}): ranking the full catalogue for the holdout customers"):
        ranked = rank_and_read(storage.join(transformed_dir, EVAL_EXAMPLES_DIR), systems, output_dir, config,
                               aggregation.window)
    per_customer = ranked.values
    results = {name: _summary(ranked.top[name], per_customer[name], popularity, config) for name in systems.names}
    categories = _categories(ingested_dir, product_ids)
    found = holdout_slices(ranked, is_new, categories, popularity, config)
    slice_values = {s.name: {name: metrics.per_customer(top[s.customers], s.targets, config.top_k)
                             for name, top in ranked.top.items()} for s in found}
    checks = (
        gate.gate_checks(results["model"], {name: results[name] for name in BASELINES if name in results}, config)
        + gate.change_checks(per_customer["model"], per_customer.get("published"), _version(published), config)
        + _slice_checks(slice_values, _version(published), config)
    )
    blessing = gate.blessing(checks, results)
    slice_summary = _slice_summary(slice_values, config)
    storage.write_json(storage.join(output_dir, artifacts.METRICS_FILE), results)
    storage.write_json(storage.join(output_dir, artifacts.SLICES_FILE), slice_summary)
    storage.write_json(storage.join(output_dir, artifacts.BLESSING_FILE), blessing)
    html = render_report(ReportInputs(results, slice_summary, blessing, _curves(ranked, config),
                                      ranked.top, popularity,
                                      exported.embeddings, categories, config))
    with storage.open_output(storage.join(output_dir, artifacts.REPORT_FILE)) as stream:
        stream.write(html.encode("utf-8"))
    return Evaluation(metrics=results, blessing=blessing, slices=slice_summary, per_customer=per_customer)


def holdout_systems(exported: ExportedEmbeddings, aggregation: Aggregation, train_events: pd.DataFrame,
                    published: ServedVersion | None, embeddings_dir: str, config: EvaluateConfig,
                    serving: ServingConfig) -> HoldoutSystems:
    """The candidate (pooled by its ``aggregation``, moved by its context tables when it has them), the
    published version as it serves, and every baseline fitted on the training events."""
    table, prior, product_ids = exported.embeddings, exported.prior, exported.product_ids
    pooled = {"model": PooledSystem(lambda moved: embedding_system(table, prior, serving.table_dtype, moved),
                                    aggregation, context_tables(embeddings_dir))}
    if published is not None:
        pooled["published"] = PooledSystem(
            lambda moved: published_system(published, product_ids, serving.table_dtype, moved),
            published.aggregation, published.context)
    return HoldoutSystems(baselines=baseline_systems(train_events, product_ids, config), pooled=pooled,
                          num_products=len(product_ids))


def context_tables(embeddings_dir: str) -> ContextTables | None:
    """A context model's tables (``context.json`` beside its embeddings); None for a context-free model."""
    uri = storage.join(embeddings_dir, CONTEXT_FILE)
    return ContextTables.from_json(storage.read_json(uri)) if storage.exists(uri) else None


def in_context(embeddings_dir: str, examples: EvalExamples) -> Callable[[np.ndarray], np.ndarray] | None:
    """For a context model (``context.json`` beside its embeddings): its customer vectors moved by each
    holdout customer's first holdout event's context, as Triton would serve that request."""
    return moved_by(context_tables(embeddings_dir), examples.context)


def _version(published: ServedVersion | None) -> int | None:
    return published.version if published else None


def _slice_checks(slice_values: dict[str, dict[str, dict[str, np.ndarray]]], version: int | None,
                  config: EvaluateConfig) -> list[gate.Check]:
    """The change checks again, inside each slice named by ``config.gate_slices`` (when it exists)."""
    checks: list[gate.Check] = []
    for name in config.gate_slices:
        values = slice_values.get(name, {})
        if "published" in values:
            checks += gate.change_checks(values["model"], values["published"], version, config, scope=name)
    return checks


def _slice_summary(slice_values: dict[str, dict[str, dict[str, np.ndarray]]],
                   config: EvaluateConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Per slice and system: customers, and each metric's mean with its bootstrap interval."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name, systems in slice_values.items():
        summary[name] = {}
        for system, values in systems.items():
            entry = {"customers": float(len(next(iter(values.values()))))}
            intervals = mean_intervals(np.stack(list(values.values())), config.confidence, config.bootstrap_resamples,
                                       config.seed)
            for metric, interval in zip(values, intervals, strict=True):
                entry.update({metric: interval.mean, f"{metric}_low": interval.low, f"{metric}_high": interval.high})
            summary[name][system] = entry
    return summary


def _curves(ranked: RankedHoldout, config: EvaluateConfig) -> dict[str, dict[str, list[float]]]:
    """Recall@K and NDCG@K for every K of the report, per system."""
    return {name: {kind: [float(values[f"{kind}@{k}"].mean()) for k in config.report_k] for kind in ("recall", "ndcg")}
            for name, values in ranked.curves.items()}


def _categories(ingested_dir: str, product_ids: np.ndarray) -> np.ndarray:
    catalogue = storage.read_table(storage.join(ingested_dir, artifacts.CATALOGUE_FILE))
    return catalogue.set_index("product_id")["category"].reindex(product_ids).fillna("unknown").to_numpy(str)


def _summary(ranked: np.ndarray, per_customer: dict[str, np.ndarray], popularity: np.ndarray,
             config: EvaluateConfig) -> dict[str, float]:
    summary = {name: float(np.nanmean(values)) for name, values in per_customer.items()}
    summary["customers"] = float(len(ranked))
    for k in config.top_k:
        summary[f"coverage@{k}"] = metrics.catalogue_coverage(ranked, k, len(popularity))
        summary[f"popularity_percentile@{k}"] = float(metrics.popularity_percentile(ranked, k, popularity).mean())
    return summary
