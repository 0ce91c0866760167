"""Evaluate exported embeddings on the time-based holdout against a popularity baseline, then gate."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fashionrec import artifacts
from fashionrec import progress
from fashionrec import storage
from fashionrec.contract.context import CONTEXT_FILE, ContextTables
from fashionrec.model.aggregation import AGGREGATION_FILE, Aggregation
from fashionrec.config import EvaluateConfig, ServingConfig
from fashionrec.evaluation import gate, metrics
from fashionrec.evaluation.bootstrap import paired_difference
from fashionrec.evaluation.report import ReportInputs, render_report
from fashionrec.evaluation.slices import holdout_slices
from fashionrec.evaluation.systems import (
    BASELINES,
    System,
    baseline_systems,
    embedding_system,
    popularity_scores,
    published_system,
)
from fashionrec.embeddings_file import read_exported
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.model.features import EvalExamples, load_eval_examples
from fashionrec.artifacts import EVAL_EXAMPLES_DIR
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
    product_ids, table, is_new, prior = exported.product_ids, exported.embeddings, exported.is_new, exported.prior
    aggregation = Aggregation.read(storage.join(embeddings_dir, AGGREGATION_FILE))
    with storage.local_copy(storage.join(transformed_dir, EVAL_EXAMPLES_DIR)) as eval_examples:
        examples = sample_customers(load_eval_examples(os.path.dirname(eval_examples)), config,  # only that folder is copied
                                    aggregation.window)
    train_events = storage.read_table(storage.join(ingested_dir, artifacts.TRAIN_EVENTS_FILE))
    popularity = popularity_scores(train_events, product_ids)
    systems = {"model": embedding_system(table, prior, serving.table_dtype, in_context(embeddings_dir, examples)),
               **baseline_systems(train_events, product_ids, config)}
    published = served_version(model_repository, serving) if model_repository else None
    if published is not None:
        systems["published"] = published_system(published, product_ids, serving.table_dtype,
                                                 _moved(published.context, examples))
    weights = {name: examples.history_weight for name in systems}  # popularity and iALS: raw event weights
    weights["model"] = pooled_weights(aggregation, examples)
    if published is not None:
        weights["published"] = pooled_weights(published.aggregation, examples)  # as the published version serves
    depth = max(config.top_k + config.report_k)
    with progress.step(f"ranking the full catalogue for {len(examples.customer_ids)} holdout customers"):
        ranked = {name: system.rank(examples.history_idx, weights[name], depth) for name, system in systems.items()}
        auc = {name: _sampled_auc(system, examples, weights[name], len(product_ids), config)
               for name, system in systems.items()}
    top = {name: rows[:, : max(config.top_k)] for name, rows in ranked.items()}  # MRR is MRR@max(top_k)
    per_customer = {name: {**metrics.per_customer(r, examples.target_idxs, config.top_k), "auc": auc[name]}
                    for name, r in top.items()}
    results = {name: _summary(top[name], per_customer[name], popularity, config) for name in top}
    categories = _categories(ingested_dir, product_ids)
    found = holdout_slices(examples, is_new, categories, popularity, config)
    slice_values = {s.name: {name: metrics.per_customer(r[s.customers], s.targets, config.top_k)
                             for name, r in top.items()} for s in found}
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
    html = render_report(ReportInputs(results, slice_summary, blessing, _curves(ranked, examples, config),
                                      top, popularity,
                                      table, categories, config))
    with storage.open_output(storage.join(output_dir, artifacts.REPORT_FILE)) as stream:
        stream.write(html.encode("utf-8"))
    return Evaluation(metrics=results, blessing=blessing, slices=slice_summary, per_customer=per_customer)


def in_context(embeddings_dir: str, examples: EvalExamples) -> Callable[[np.ndarray], np.ndarray] | None:
    """For a context model (``context.json`` beside its embeddings): its customer vectors moved by each
    holdout customer's first holdout event's context, as Triton would serve that request."""
    uri = storage.join(embeddings_dir, CONTEXT_FILE)
    return _moved(ContextTables.from_json(storage.read_json(uri)) if storage.exists(uri) else None, examples)


def _moved(tables: ContextTables | None, examples: EvalExamples) -> Callable[[np.ndarray], np.ndarray] | None:
    """Customer vectors moved by ``tables`` at the holdout customers' contexts (None: nothing to move)."""
    if tables is None or not examples.context:
        return None
    return lambda vectors: tables.adjust(vectors, examples.context)


def pooled_weights(aggregation: Aggregation, examples: EvalExamples) -> list[np.ndarray]:
    """Each holdout history's pooling weights under ``aggregation``."""
    return [aggregation.weights(w, a) for w, a in zip(examples.history_weight, examples.history_age_days, strict=True)]


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
            for metric, per_customer in values.items():
                interval = paired_difference(per_customer, np.zeros_like(per_customer), config.confidence,
                                             config.bootstrap_resamples, config.seed)
                entry.update({metric: interval.mean, f"{metric}_low": interval.low, f"{metric}_high": interval.high})
            summary[name][system] = entry
    return summary


def _curves(ranked: dict[str, np.ndarray], examples: EvalExamples, config: EvaluateConfig) -> dict[str, dict[str, list[float]]]:
    """Recall@K and NDCG@K for every K of the report, per system."""
    curves = {}
    for name, rows in ranked.items():
        values = metrics.per_customer(rows, examples.target_idxs, config.report_k)
        curves[name] = {kind: [float(values[f"{kind}@{k}"].mean()) for k in config.report_k]
                        for kind in ("recall", "ndcg")}
    return curves


def _sampled_auc(system: System, examples: EvalExamples, weights: list[np.ndarray], num_products: int,
                 config: EvaluateConfig) -> np.ndarray:
    """AUC of targets against ``auc_negatives`` sampled products the customer never touched."""
    rng = np.random.default_rng(config.seed)
    negatives = []
    for history, targets in zip(examples.history_idx, examples.target_idxs, strict=True):
        allowed = np.setdiff1d(np.arange(num_products), np.concatenate([history, targets]), assume_unique=False)
        negatives.append(rng.choice(allowed, size=min(config.auc_negatives, len(allowed)), replace=False))
    positive = system.score(examples.history_idx, weights, examples.target_idxs)
    negative = system.score(examples.history_idx, weights, negatives)
    return metrics.sampled_auc(positive, negative)


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


def sample_customers(examples: EvalExamples, config: EvaluateConfig, window: int) -> EvalExamples:
    """The holdout under ``config.exclude``: customers with at least one target not already in their
    history (and with a history, when ``customers_with_history_only``), capped by a seeded sample; each
    history is what every system excludes (and the baselines use).

    ``all_seen`` keeps the whole training history, so nothing a customer interacted with is recommended
    or counted. ``window`` (the old protocol, kept to compare) cuts each history to its last ``window``
    events first (0: none is cut), so older products are neither excluded nor removed from the targets.
    """
    if config.exclude == "window" and window > 0:
        examples = _last_events(examples, window)
    targets = [np.setdiff1d(t, h) for t, h in zip(examples.target_idxs, examples.history_idx, strict=True)]
    keep = np.flatnonzero([len(t) > 0 and (len(h) > 0 or not config.customers_with_history_only)
                           for t, h in zip(targets, examples.history_idx, strict=True)])
    if len(keep) > config.max_eval_customers:
        keep = np.sort(np.random.default_rng(config.seed).choice(keep, config.max_eval_customers, replace=False))
    return EvalExamples(
        customer_ids=examples.customer_ids[keep],
        history_idx=[examples.history_idx[i] for i in keep],
        history_weight=[examples.history_weight[i] for i in keep],
        history_age_days=[examples.history_age_days[i] for i in keep],
        target_idxs=[targets[i] for i in keep],
        context=examples.subset(keep),
    )


def _last_events(examples: EvalExamples, window: int) -> EvalExamples:
    """Every history cut to its last ``window`` events."""
    return EvalExamples(customer_ids=examples.customer_ids,
                        history_idx=[h[-window:] for h in examples.history_idx],
                        history_weight=[w[-window:] for w in examples.history_weight],
                        history_age_days=[a[-window:] for a in examples.history_age_days],
                        target_idxs=examples.target_idxs, context=examples.context)
