"""Evaluation protocols beside the pipeline's global time split, for comparing with published numbers.

* **Leave-last-one-out with sampled negatives** (the NCF paper's protocol, He et al. 2017): each
  customer's last event is held out and ranked against ``m`` products they never interacted with;
  HR@k and NDCG@k. Sampled metrics flatter every model (Krichene & Rendle 2020), so they only serve
  to set this model beside the published table; full-catalogue metrics stay the headline.
  The popularity prior is the one a daily refresh would have served at each held-out event
  (:func:`daily_priors`): the held-out events lie at different times, and the prior at the end of
  training would be the future for most of them.
* **Cold products**: a fraction of products loses every training event, so the model knows them only
  by content; their holdout interactions are ranked among the cold products (a "new in" carousel),
  warm interactions among the warm products, and the two recalls are compared.

* **Validation period**: the events before the test split, split again by the same rule; every setting
  (the model's and the baselines') is chosen there.

Each re-split is written in the ingest stage's layout (:func:`resplit`), so the transform and training
stages run on it unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fashionrec import artifacts
from fashionrec.stages import ingest as ingest_files
from fashionrec import storage
from fashionrec.config import ExportConfig, IngestConfig
from fashionrec.model.popularity import SECONDS_PER_DAY, popularity_prior
from fashionrec.contract import ops


def all_events(ingested_dir: str) -> pd.DataFrame:
    """Train and holdout events of an ingested dataset, together, in time order."""
    parts = [storage.read_table(storage.join(ingested_dir, name))
             for name in (artifacts.TRAIN_EVENTS_FILE, artifacts.HOLDOUT_EVENTS_FILE)]
    return pd.concat(parts, ignore_index=True).sort_values("timestamp", kind="stable", ignore_index=True)


def leave_last_out(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): each customer's latest event is held out; one-event customers stay in train.

    Ties in time keep the file order (the later row is the held-out one), so the split is deterministic.
    """
    ordered = events.sort_values(["customer_id", "timestamp"], kind="stable")
    last = ~ordered["customer_id"].duplicated(keep="last")
    single = ordered["customer_id"].map(ordered["customer_id"].value_counts()) == 1
    held_out = last & ~single
    return ordered[~held_out].reset_index(drop=True), ordered[held_out].reset_index(drop=True)


def choose_cold_products(events: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the products that have events, sorted."""
    products = np.sort(events["product_id"].unique())
    count = max(1, round(fraction * len(products)))
    return np.sort(np.random.default_rng(seed).choice(products, count, replace=False))


def resplit(ingested_dir: str, output_dir: str, train: pd.DataFrame, holdout: pd.DataFrame) -> None:
    """Write ``train``/``holdout`` with the ingested catalogue in the ingest stage's layout.

    ``is_new`` marks products without training events; the recorded split time is just after the last
    training event (histories are aged from there; recency pooling is invariant to that origin).
    """
    catalogue = storage.read_table(storage.join(ingested_dir, artifacts.CATALOGUE_FILE))
    catalogue["is_new"] = ~catalogue["product_id"].isin(set(train["product_id"]))
    split_time = pd.Timestamp(train["timestamp"].max()) + pd.Timedelta(seconds=1)
    summary = ingest_files.IngestSummary(
        split_time=split_time, catalogue_rows=len(catalogue), event_rows=len(train) + len(holdout),
        accepted_products=len(catalogue), train_events=len(train), holdout_events=len(holdout),
        new_products=int(catalogue["is_new"].sum()), quarantined={},
    )
    quarantine = storage.read_table(storage.join(ingested_dir, artifacts.QUARANTINE_FILE))
    ingest_files.write_ingested(output_dir, catalogue, train, holdout, quarantine, summary)


def validation_split(ingested_dir: str, output_dir: str, config: IngestConfig) -> None:
    """The period before the test split, split again by the same rule (its last ``holdout_fraction`` of
    events is the validation period), written in ingest's layout: settings are chosen there, so nothing
    of the test period is seen. A configured ``split_time`` is the test split's; the validation cut is
    always the quantile."""
    before_test = storage.read_table(storage.join(ingested_dir, artifacts.TRAIN_EVENTS_FILE))
    cut = ingest_files.choose_split_time(before_test["timestamp"], dataclasses.replace(config, split_time=None))
    train, validation = ingest_files.split_events(before_test, cut)
    resplit(ingested_dir, output_dir, train, validation)


def sample_negatives(seen: Sequence[np.ndarray], num_products: int, count: int, seed: int) -> np.ndarray:
    """[customers, count] product rows each customer never interacted with, without repeats per row."""
    rng = np.random.default_rng(seed)
    rows = []
    for products in seen:
        allowed = np.setdiff1d(np.arange(num_products), products)
        rows.append(rng.choice(allowed, size=count, replace=False))
    return np.stack(rows)


def daily_priors(events: pd.DataFrame, product_ids: np.ndarray, config: ExportConfig,
                 times: pd.Series) -> np.ndarray:
    """[len(times), products] float32: at each time, the popularity prior a daily refresh would serve.

    That is ``fashionrec.model.popularity.prior_from_events`` over the events before the start (UTC) of the
    time's day, aged at that day start, as ``fashionrec catalogue refresh-prior`` run at midnight
    publishes it. One pass over the days carries the decayed sums forward, so this costs one
    ``[products]`` vector per day instead of a pass over all events per time.
    """
    half_life, columns = config.popularity_half_life_days, pd.Index(product_ids).get_indexer(events["product_id"])
    origin = min(events["timestamp"].min(), times.min()).floor("D")
    event_day = (events["timestamp"] - origin).dt.total_seconds().to_numpy() / SECONDS_PER_DAY
    published_on = np.floor(event_day).astype(np.int64) + 1  # the first refresh after the event sees it
    decayed = events["weight"].to_numpy(np.float64) * np.exp2(-(published_on - event_day) / half_life)
    time_day = ((times - origin).dt.total_seconds() // SECONDS_PER_DAY).astype(np.int64).to_numpy()
    known = columns >= 0
    order = np.argsort(published_on[known], kind="stable")
    day_of, column_of, value_of = published_on[known][order], columns[known][order], decayed[known][order]
    bounds = np.searchsorted(day_of, np.arange(time_day.max() + 2))
    needed, popularity, priors = set(time_day.tolist()), np.zeros(len(product_ids)), {}
    for day in range(time_day.max() + 1):
        popularity *= np.exp2(-1.0 / half_life)
        chunk = slice(bounds[day], bounds[day + 1])
        popularity += np.bincount(column_of[chunk], weights=value_of[chunk], minlength=len(product_ids))
        if day in needed:
            priors[day] = popularity_prior(popularity, config.popularity_prior_weight)
    return np.stack([priors[day] for day in time_day]).reshape(len(time_day), len(product_ids))


def sampled_hit_metrics(target_scores: np.ndarray, negative_scores: np.ndarray, k: int) -> dict[str, float]:
    """HR@k and NDCG@k of one target per customer ranked among its sampled negatives.

    The target's rank is the number of negatives scoring at least as high (ties count against it), so
    a constant scorer gets no credit.
    """
    rank = (negative_scores >= np.asarray(target_scores)[:, None]).sum(axis=1)
    hit = rank < k
    return {f"hr@{k}": float(hit.mean()),
            f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean())}


def restricted_recall(customer_vectors: np.ndarray, table: np.ndarray, candidate_rows: np.ndarray,
                      history: Sequence[np.ndarray], targets: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Recall@k (hits / targets among the candidates) per customer when only ``candidate_rows`` may be
    recommended, history excluded.

    Customers whose targets include no candidate get NaN (skip them with ``np.nanmean``).
    """
    position = np.full(len(table), -1, np.int64)
    position[candidate_rows] = np.arange(len(candidate_rows))
    excluded = [_positions(position, h) for h in history]
    wanted = [_positions(position, t) for t in targets]
    width = max((len(e) for e in excluded), default=0)
    exclusion = np.full((len(excluded), max(width, 1)), -1, np.int64)
    for i, rows in enumerate(excluded):
        exclusion[i, : len(rows)] = rows
    ranked, _ = ops.rank_candidates(customer_vectors, table[candidate_rows], k, exclusion)
    recall = [np.isin(w, r).sum() / len(w) if len(w) else np.nan
              for r, w in zip(ranked, wanted, strict=True)]
    return np.asarray(recall, dtype=np.float64)


def _positions(position: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions among the candidates of those ``rows`` that are candidates."""
    found = position[np.asarray(rows, dtype=np.int64)]
    return found[found >= 0]
