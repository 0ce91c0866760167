"""Evaluate exported embeddings on the time-based holdout against a popularity baseline, then gate."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fashionrec import ingest as ingest_files
from fashionrec import progress
from fashionrec import storage
from fashionrec.config import EvaluateConfig, ServingConfig
from fashionrec.evaluation import gate, metrics
from fashionrec.export import EMBEDDINGS_FILE, read_embeddings
from fashionrec.features import EvalExamples, load_eval_examples
from fashionrec.transform import EVAL_EXAMPLES_DIR
from fashionrec.publish import ServedCatalogue, currently_published
from fashionrec.serving import ops

BLESSING_FILE = "blessing.json"
METRICS_FILE = "metrics.json"
Ranker = Callable[[list[np.ndarray], list[np.ndarray], int], np.ndarray]


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, dict[str, float]]
    blessing: dict[str, object]

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
    """Score the candidate, the baselines and the published model on the same customers; gate; write."""
    product_ids, table, _ = read_embeddings(storage.join(embeddings_dir, EMBEDDINGS_FILE))
    with storage.local_copy(storage.join(transformed_dir, EVAL_EXAMPLES_DIR)) as eval_examples:
        examples = _sample(load_eval_examples(os.path.dirname(eval_examples)), config)  # only that folder is copied
    popularity = popularity_scores(ingested_dir, product_ids)
    rankers = {"model": embedding_ranker(table), "popularity": popularity_ranker(popularity)}
    published = currently_published(model_repository, serving) if model_repository else None
    if published is not None:
        rankers["published"] = published_ranker(published, product_ids)
    with progress.step(f"ranking the full catalogue for {len(examples.customer_ids)} holdout customers"):
        ranked = {name: rank(examples.history_idx, examples.history_weight, max(config.top_k))
                  for name, rank in rankers.items()}
    per_customer = {name: metrics.per_customer(r, examples.target_idxs, config.top_k) for name, r in ranked.items()}
    results = {name: _summary(ranked[name], per_customer[name], popularity, config) for name in ranked}
    checks = gate.gate_checks(results["model"], results["popularity"], config) + gate.change_checks(
        per_customer["model"], per_customer.get("published"), published.version if published else None, config
    )
    blessing = gate.blessing(checks, results)
    storage.write_json(storage.join(output_dir, METRICS_FILE), results)
    storage.write_json(storage.join(output_dir, BLESSING_FILE), blessing)
    return Evaluation(metrics=results, blessing=blessing)


def _summary(ranked: np.ndarray, per_customer: dict[str, np.ndarray], popularity: np.ndarray,
             config: EvaluateConfig) -> dict[str, float]:
    summary = {name: float(values.mean()) for name, values in per_customer.items()}
    summary["customers"] = float(len(ranked))
    for k in config.top_k:
        summary[f"coverage@{k}"] = metrics.catalogue_coverage(ranked, k, len(popularity))
        summary[f"popularity_percentile@{k}"] = float(metrics.popularity_percentile(ranked, k, popularity).mean())
    return summary


def published_ranker(published: ServedCatalogue, product_ids: np.ndarray) -> Ranker:
    """Rank with the currently published embeddings, translating product rows by product id both ways.

    Products the published version does not know cannot be in its history vectors nor its results.
    """
    to_published = ops.lookup_rows({pid: row for row, pid in enumerate(published.product_ids)}, product_ids)
    current = {pid: row for row, pid in enumerate(product_ids)}
    to_current = ops.lookup_rows(current, published.product_ids)
    rank_published = embedding_ranker(published.embeddings)

    def rank(history: list[np.ndarray], weights: list[np.ndarray], k: int) -> np.ndarray:
        mapped = [to_published[h] for h in history]
        kept = [m >= 0 for m in mapped]
        rows = rank_published([m[keep] for m, keep in zip(mapped, kept, strict=True)],
                              [w[keep] for w, keep in zip(weights, kept, strict=True)], k)
        return to_current[rows]

    return rank


def embedding_ranker(table: np.ndarray, batch_size: int = 1024) -> Ranker:
    """Rank with exactly the serving maths: weighted-mean customer vector, dot-product top-K."""

    def rank(history: list[np.ndarray], weights: list[np.ndarray], k: int) -> np.ndarray:
        vectors = np.stack([ops.customer_vector(table, h, w) for h, w in zip(history, weights, strict=True)])
        parts = []
        for start in range(0, len(vectors), batch_size):
            exclude = _padded(history[start : start + batch_size])
            rows, _ = ops.rank_candidates(vectors[start : start + batch_size], table, k, exclude)
            parts.append(rows)
        return np.concatenate(parts)

    return rank


def popularity_ranker(scores: np.ndarray) -> Ranker:
    """Most-interacted products first, skipping each customer's own history."""
    order = np.argsort(-scores, kind="stable")

    def rank(history: list[np.ndarray], _: list[np.ndarray], k: int) -> np.ndarray:
        return np.stack([order[~np.isin(order, h)][:k] for h in history])

    return rank


def popularity_scores(ingested_dir: str, product_ids: np.ndarray) -> np.ndarray:
    """Number of training events per product, aligned with ``product_ids``."""
    train = storage.read_table(storage.join(ingested_dir, ingest_files.TRAIN_EVENTS_FILE))
    counts = train["product_id"].value_counts()
    return counts.reindex(product_ids, fill_value=0).to_numpy(np.float64)


def _sample(examples: EvalExamples, config: EvaluateConfig) -> EvalExamples:
    """Customers with at least one target not already in their history, capped by a seeded sample."""
    targets = [np.setdiff1d(t, h) for t, h in zip(examples.target_idxs, examples.history_idx, strict=True)]
    keep = np.flatnonzero([len(t) > 0 for t in targets])
    if len(keep) > config.max_eval_customers:
        keep = np.sort(np.random.default_rng(config.seed).choice(keep, config.max_eval_customers, replace=False))
    return EvalExamples(
        customer_ids=examples.customer_ids[keep],
        history_idx=[examples.history_idx[i] for i in keep],
        history_weight=[examples.history_weight[i] for i in keep],
        target_idxs=[targets[i] for i in keep],
    )


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
