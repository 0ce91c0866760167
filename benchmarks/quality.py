"""Recommendation quality on real data: the model beside popularity and iALS, under three protocols.

    .venv/bin/python benchmarks/quality.py [--dataset movielens-1m] [--sections time,ablations,ncf,cold]
                                           [--set train.epochs=3 ...] [--workdir DIR]

1. **time**: global time split (the pipeline's own: the last 10 % of events are the holdout),
   full-catalogue ranking under the standard protocol (every product a customer interacted with in
   training excluded, for every system; the baselines given every event), every system on the same
   customers (those with a training history); the paired bootstrap interval of the model minus the best
   baseline on recall@20, NDCG@10 and MRR; the same rankings with only the test events of the first 7, 28
   and 90 days after the split relevant (a diagnostic: the test period runs for months, a model serves for
   about a week); then the same under the old window protocol.
   Also: how popular the recommended products are (mean popularity percentile of the top 10). The
   model's score adds the popularity prior (``fashionrec.model.popularity``); "recent_popularity" ranks by
   that prior alone.
2. **ablations**: the chosen model again with one change each (``ABLATIONS`` of its objective): for the
   next-event objective each other history pooling, no logQ correction; for the future-set objective the
   next-event defaults, recency pooling, normalised embeddings, half the epochs; and for both no popularity
   prior (the same trained model, exported again).
3. **ncf**: leave-last-one-out, the target among 99 sampled unseen products, HR@10 / NDCG@10, to set
   beside the NCF paper's table (NeuMF 0.726 / 0.445 on ML-1M). The held-out events lie at different
   times, so the model is scored with the popularity prior a daily refresh would have served at each
   one (``protocols.daily_priors``), beside the prior at the end of training and no prior; a context model's
   customers are moved by their held-out event's context, as in the time split. This protocol
   asks for the single next product, so it chooses its own objective and prior weight on its own
   validation split (each customer's last training event held out), by HR@10.
4. **cold**: 10 % of the products lose every training event; their holdout interactions are ranked
   among the cold products from content-only embeddings, against random and a genre-popularity ranking
   (plain popularity is zero for every cold product), and compared with the same number of warm
   products ranked among themselves (equal pool sizes keep the two recalls comparable), with a
   bootstrap interval over customers for the cold-to-warm fraction. Three seeded draws of the cold
   products (one model each), reported one by one and pooled. Then paired: the same cold products
   ranked for the same customers by the time split's model, which was trained on their events. For
   scale, ranking each pool by its products' training events (an oracle for the cold pool: those
   events were withheld) shows how much of a pool's recall is popularity alone.
Then training throughput and each epoch's time.

Before the test period is touched, the period before it is split again by the same rule (the
validation period): each baseline's setting is chosen there from ``tuning.BaselineGrid``, and the
model's training objective (``OBJECTIVES``: the defaults' next-event training, or ``FUTURE_SET_SETTINGS``)
and popularity-prior weight from ``PRIOR_WEIGHTS`` (by their mean over ``CHOICE_SEEDS`` trainings), all by
NDCG@10 (``--no-tune-baselines`` skips this
and uses the configured settings). The model's other hyper-parameters are the pipeline's defaults
(``fashionrec/config.py``), chosen on the same validation period by ``benchmarks/tune.py``; nothing
here is tuned on the test period.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from fashionrec.model.aggregation import AGGREGATION_FILE, Aggregation
from fashionrec.config import FUTURE_SET_SETTINGS, EvaluateConfig, ExportConfig, PipelineConfig
from fashionrec.datasets import DATASET_NAMES, prepare_dataset
from fashionrec.evaluation import bootstrap, metrics, protocols
from fashionrec.evaluation.evaluate import Evaluation, evaluate, in_context
from fashionrec.evaluation.holdout import sample_customers
from fashionrec.evaluation.holdout_ranking import read_ranked
from fashionrec.evaluation.systems import BASELINES, baseline_systems, embedding_system
from fashionrec.evaluation.tuning import TunedBaselines, ranking_metrics, tune_baselines
from fashionrec.model.popularity import prior_from_events
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.embeddings_file import read_embeddings, read_popularity_prior
from fashionrec.stages.export import export_embeddings
from fashionrec.model.features import EvalExamples, load_eval_examples
from fashionrec.stages.ingest import ingest
from fashionrec.artifacts import HOLDOUT_EVENTS_FILE, INGEST_SUMMARY_FILE, RANKED_CUSTOMERS_DIR, TRAIN_EVENTS_FILE
from fashionrec.contract import ops
from fashionrec.stages.train import TrainSummary, load_item_tower, train
from fashionrec.stages.transform import load_product_vocabulary, transform

SECTIONS = ("time", "ablations", "ncf", "cold")
PAIRED_METRICS = ("recall@20", "ndcg@10", "mrr")
# The model's prior weights tried on the validation period (the next-event model chose 4, then 8, the largest of
# each grid before, on ML-1M: the grid goes on past them).
PRIOR_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
# The objective and prior weight are chosen by their mean over this many trainings (seeds train.seed, train.seed + 1,
# ...): on ML-1M one training's validation NDCG@10 moves by up to 0.012 with its seed, more than the objectives
# differ, and one seed's choice flipped when only the training's random stream changed (docs/quality.md).
CHOICE_SEEDS = 3
TUNING_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "mrr", "coverage@10")
TIME_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "mrr", "coverage@10", "popularity_percentile@10")
def _default(key: str) -> object:
    """The package default of a dotted setting, e.g. ``train.epochs``."""
    section, name = key.split(".")
    return getattr(getattr(PipelineConfig(), section), name)


# The objectives the validation period chooses between, each at its best prior weight (choose_model,
# choose_ncf_model). Each names every setting either changes, so either applies whatever config it is laid on.
OBJECTIVES = {"next_event": {key: _default(key) for key in FUTURE_SET_SETTINGS}, "future_set": FUTURE_SET_SETTINGS}
# Each objective's ablations: one change from the chosen model each (and the other objective, at the defaults).
ABLATIONS = {
    "next_event": {"pooling=mean": {"train.pooling": "mean"}, "pooling=weighted": {"train.pooling": "weighted"},
                   "pooling=attention": {"train.pooling": "attention"},
                   "no decay by newer events": {"train.recency_half_life_events": 0.0},
                   "no logQ": {"train.logq_correction": False},
                   "no popularity prior": {"export.popularity_prior_weight": 0.0}},
    "future_set": {"next-event objective (the defaults)": OBJECTIVES["next_event"],
                   "pooling=recency": {"train.pooling": "recency"},
                   "normalised embeddings": {"train.normalize_embeddings": True},
                   "20 epochs": {"train.epochs": 20},
                   "no popularity prior": {"export.popularity_prior_weight": 0.0}},
}
NCF_NEGATIVES, NCF_K, COLD_FRACTION, COLD_K, COLD_DRAWS = 99, 10, 0.1, 20, 3
EVENT_BUCKETS = (0, 1, 5, 20, 100, 500)
# A diagnostic of the test period, nothing chosen on it: only the test events within this many days of the
# split count as relevant (a shop retrained weekly serves each model for the first of them; ML-1M's test
# period runs 26 months).
HORIZONS_DAYS = (7, 28, 90)
HORIZON_K = 20  # ranks scored: recall@20, NDCG@10, MRR (within the top 20)
PUBLISHED_NCF = {"NeuMF (He et al. 2017)": (0.726, 0.445)}


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained and exported model on one split."""

    ingested: str
    transformed: str
    export: str
    summary: TrainSummary

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        ids, table, _ = read_embeddings(str(Path(self.export) / EMBEDDINGS_FILE))
        return ids, table

    def prior(self) -> np.ndarray:
        """The exported popularity prior, aligned with :meth:`table`'s rows."""
        return read_popularity_prior(str(Path(self.export) / EMBEDDINGS_FILE))

    def pooling_weights(self, examples: EvalExamples) -> list[np.ndarray]:
        """Each holdout history's pooling weights as exported (only the last ``window`` events weigh)."""
        aggregation = Aggregation.read(str(Path(self.export) / AGGREGATION_FILE))
        return [aggregation.weights(w, a) for w, a in zip(examples.history_weight, examples.history_age_days,
                                                          strict=True)]

    def ranker(self, examples: EvalExamples, k: int = 20) -> Callable[[np.ndarray], np.ndarray]:
        """prior -> the ``examples``' top ``k`` rows as the pipeline's evaluation ranks them with that prior:
        pooled as exported, and, for a context model, moved by each customer's request context
        (``in_context``), so that a setting chosen on the validation period is chosen for the system the test
        period scores. The table, pooling weights and context are read once, whatever the priors tried."""
        _, table = self.table()
        weights, moved = self.pooling_weights(examples), in_context(self.export, examples)
        return lambda prior: embedding_system(table, prior, in_context=moved).rank(examples.history_idx, weights, k)

    def customer_vectors(self, examples: EvalExamples, table: np.ndarray) -> np.ndarray:
        """The holdout customers' vectors over ``table`` (from :meth:`table`), pooled as exported."""
        return np.stack([ops.customer_vector(table, h, w) for h, w in
                         zip(examples.history_idx, self.pooling_weights(examples), strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="movielens-1m")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", default=None, help="keep outputs here (default: a temporary folder)")
    parser.add_argument("--no-tune-baselines", dest="tune_baselines", action="store_false",
                        help="score the baselines with the evaluate.* settings as they are, instead of choosing "
                             "each one's on the validation period first")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    config = PipelineConfig().with_settings(args.overrides)
    with tempfile.TemporaryDirectory() as temp:
        run(args.dataset, args.data_dir, sections, config, Path(args.workdir or temp), args.tune_baselines)


def run(dataset: str, data_dir: str | None, sections: list[str], config: PipelineConfig, work: Path,
        tune: bool = True) -> None:
    """Prepare and ingest once (time split), then each section on its own re-split of the same events.

    The time split's baselines get their settings from the validation period first (``tune``)."""
    raw = prepare_dataset(dataset, data_dir, str(work / "raw"), config.shop)
    ingest(raw.catalogue_uri, raw.events_uri, str(work / "time" / "ingested"), config.ingest)
    print(f"\n# {dataset}; defaults: train {json.dumps(dataclasses.asdict(config.train))}, "
          f"export {json.dumps(dataclasses.asdict(config.export))}", flush=True)
    trained = None
    if ("time" in sections or "ablations" in sections) and tune:
        protocols.validation_split(str(work / "time" / "ingested"), str(work / "validation" / "ingested"),
                                   config.ingest)
        _, tuned = baselines(work / "validation", config, tune=True)
        config = dataclasses.replace(choose_model(work / "validation", config), evaluate=tuned)
    if "time" in sections or "ablations" in sections:
        trained = time_split(work / "time", config, "ablations" in sections, "time" in sections)
    if "ncf" in sections:
        ncf_protocol(work, config)
    if "cold" in sections:
        cold_products(work, config, trained or train_split(work / "time", config))
    if trained is not None:
        summary = trained.summary
        epochs = ", ".join(f"{s:.1f} s" for s in summary.epoch_seconds)
        print(f"\ntraining: {summary.examples} examples/epoch; epochs took {epochs}; fit() {summary.seconds:.1f} s "
              f"in all ({summary.examples_per_second:.0f} examples/s)", flush=True)


def train_split(folder: Path, config: PipelineConfig, name: str = "model") -> Trained:
    """Transform (once per folder) and train + export one model on an ingested split."""
    ingested, transformed = str(folder / "ingested"), transformed_once(folder, config)
    model, export = str(folder / name / "model"), str(folder / name / "export")
    summary = train(transformed, model, config.train, config.transform)
    export_embeddings(ingested, transformed, model, export, config.ingest.event_weights, config.export)
    return Trained(ingested, transformed, export, summary)


def transformed_once(folder: Path, config: PipelineConfig) -> str:
    """The split's transform output for ``config.transform``, made on first use: one folder per distinct
    transform setting, so a try that changes one (e.g. the target horizon) never reuses another's."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(config.transform), sort_keys=True).encode()).hexdigest()
    transformed = folder / f"transformed-{digest[:10]}"
    if not transformed.exists():
        transform(str(folder / "ingested"), str(transformed), config.transform)
    return str(transformed)


def reexport(trained: Trained, export: Path, config: PipelineConfig) -> Trained:
    """The same trained model exported with other export settings."""
    export_embeddings(trained.ingested, trained.transformed, str(Path(trained.export).parent / "model"), str(export),
                      config.ingest.event_weights, config.export)
    return dataclasses.replace(trained, export=str(export))


def time_split(folder: Path, config: PipelineConfig, ablations: bool, baselines: bool) -> Trained:
    """The pipeline's evaluation under the standard protocol (the model and every baseline), the paired
    intervals of the model minus the best baseline, each ablation's model row, and the same under the
    old window protocol to show the difference."""
    trained = train_split(folder, config)
    result = evaluate(trained.ingested, trained.transformed, trained.export, str(folder / "eval"), config.evaluate)
    names = (*BASELINES, "model") if baselines else ()
    rows = {name: result.metrics[name] for name in names if name in result.metrics}
    for name, overrides in (ABLATIONS[config.train.objective].items() if ablations else ()):
        folder_name, variant_config = name.replace(" ", "_").replace("=", "_"), config.with_overrides(overrides)
        if all(key.startswith("export.") for key in overrides):  # same training: export it again
            variant = reexport(trained, folder / folder_name / "export", variant_config)
        else:
            variant = train_split(folder, variant_config, folder_name)
        rows[name] = evaluate(variant.ingested, variant.transformed, variant.export, str(folder / f"eval-{name}"),
                              dataclasses.replace(config.evaluate, bootstrap_resamples=10)).metrics["model"]
    customers = int(result.metrics["model"]["customers"])
    print_table(f"time split, standard protocol: full-catalogue ranking, every training interaction of a customer "
                f"excluded for every system, baselines with whole histories, {customers} holdout customers",
                TIME_COLUMNS, rows)
    if baselines:
        print_table("model minus the best baseline on each metric: paired bootstrap over customers",
                    ("best baseline", "model - baseline", "95 % interval low", "95 % interval high"),
                    model_minus_best_baseline(result, config))
        print_table("by horizon (a diagnostic, nothing chosen on it): the same rankings, with only each customer's "
                    "test events within the first days after the split relevant; model minus the best baseline "
                    "at that horizon, paired bootstrap", HORIZON_COLUMNS,
                    by_horizon(trained, folder / "eval", tuple(result.per_customer), config))
        window = evaluate(trained.ingested, trained.transformed, trained.export, str(folder / "eval-window"),
                          dataclasses.replace(config.evaluate, exclude="window"))
        pooled = Aggregation.read(str(Path(trained.export) / AGGREGATION_FILE)).window
        print_table(f"time split, window protocol (before 2026-12): only the model's pooling window, the last {pooled} "
                    f"events, excluded and given to the baselines, {int(window.metrics['model']['customers'])} "
                    "holdout customers", TIME_COLUMNS,
                    {name: window.metrics[name] for name in names if name in window.metrics})
    id_part_by_events(trained)
    return trained


def model_minus_best_baseline(result: Evaluation, config: PipelineConfig) -> dict[str, dict[str, object]]:
    """Per metric of ``PAIRED_METRICS``: the best baseline on it, and the model's paired difference."""
    return {metric: {"best baseline": best, "model - baseline": interval.mean, "95 % interval low": interval.low,
                     "95 % interval high": interval.high}
            for metric, (best, interval) in minus_best_baseline(result.per_customer, config).items()}


def minus_best_baseline(per_customer: dict[str, dict[str, np.ndarray]],
                        config: PipelineConfig) -> dict[str, tuple[str, bootstrap.Interval]]:
    """Per metric of ``PAIRED_METRICS``: the baseline with the best mean on it (as the evaluation summarises:
    NaN-skipping) and the paired bootstrap interval of the model minus that baseline."""
    present = [name for name in BASELINES if name in per_customer]
    best_of = {}
    for metric in PAIRED_METRICS:
        best = max(present, key=lambda name: float(np.nanmean(per_customer[name][metric])))
        best_of[metric] = best, bootstrap.paired_difference(
            per_customer["model"][metric], per_customer[best][metric], config.evaluate.confidence,
            config.evaluate.bootstrap_resamples, config.evaluate.seed)
    return best_of


HORIZON_COLUMNS = ("customers", "best baseline", "baseline", "model", "model - baseline", "95 % interval low",
                   "95 % interval high")


def by_horizon(trained: Trained, evaluation_dir: Path, systems: tuple[str, ...],
               config: PipelineConfig) -> dict[str, dict[str, object]]:
    """Per horizon of ``HORIZONS_DAYS`` and metric of ``PAIRED_METRICS``: the evaluation's own rankings
    (``ranked_customers/``) scored against each customer's test products first interacted with within that
    many days of the split (customers without one are left out), the best baseline there and the model's
    paired difference; then the whole test period, scored the same way (it equals the table above)."""
    ranked = read_ranked(str(evaluation_dir / RANKED_CUSTOMERS_DIR), systems)
    ids, _, _ = read_embeddings(str(Path(trained.export) / EMBEDDINGS_FILE))
    row_of = {product: row for row, product in enumerate(ids)}
    split = pd.Timestamp(json.loads((Path(trained.ingested) / INGEST_SUMMARY_FILE).read_text())["split_time"])
    holdout = pd.read_parquet(Path(trained.ingested) / HOLDOUT_EVENTS_FILE, columns=["customer_id", "product_id",
                                                                                    "timestamp"])
    first = holdout.groupby(["customer_id", "product_id"])["timestamp"].min()
    days = {(str(customer), row_of[product]): (when - split).total_seconds() / 86_400
            for (customer, product), when in first.items() if product in row_of}
    rows: dict[str, dict[str, object]] = {}
    for horizon in (*HORIZONS_DAYS, None):
        targets = [np.array([t for t in wanted if horizon is None or days.get((customer, t), np.inf) < horizon],
                            np.int64) for customer, wanted in zip(ranked.customer_ids, ranked.target_idxs, strict=True)]
        keep = np.flatnonzero([len(t) > 0 for t in targets])
        scored = {name: metrics.per_customer(ranked.top[name][keep, :HORIZON_K], [targets[i] for i in keep], (10, 20))
                  for name in systems}
        label = "whole test period" if horizon is None else f"first {horizon} days"
        for metric, (best, interval) in minus_best_baseline(scored, config).items():
            rows[f"{label}, {metric}"] = {
                "customers": len(keep), "best baseline": best, "baseline": scored[best][metric].mean(),
                "model": scored["model"][metric].mean(), "model - baseline": interval.mean,
                "95 % interval low": interval.low, "95 % interval high": interval.high}
    return rows


def id_part_by_events(trained: Trained) -> None:
    """How far the id part turns products' embeddings away from their content embeddings, by training events.

    Cosine of the content-only and the full embedding: 1 = content alone (a product without events).
    """
    tower = load_item_tower(trained.transformed, str(Path(trained.export).parent / "model"))
    rows = tf.range(len(tower.product_ids), dtype=tf.int64)
    cosine = tf.reduce_sum(tf.math.l2_normalize(tower.content(rows), -1) * tf.math.l2_normalize(tower(rows), -1),
                           -1).numpy()
    events = tower.interaction_counts.numpy()[: len(tower.product_ids)]
    table = {}
    for low, high in zip(EVENT_BUCKETS, EVENT_BUCKETS[1:] + (np.inf,)):
        chosen = (events >= low) & (events < high)
        if chosen.any():
            table[f"{low:g}-{high - 1:g} events" if np.isfinite(high) else f"{low:g}+ events"] = {
                "products": int(chosen.sum()), "cos(content, full)": float(cosine[chosen].mean())}
    print_table("the id part by a product's training events (as targets)", ("products", "cos(content, full)"), table)


def ncf_protocol(work: Path, config: PipelineConfig) -> None:
    """Leave-last-one-out with 99 sampled negatives: the model, popularity and iALS, beside NeuMF. The model's
    objective and prior weight are chosen on this protocol's own validation split (``choose_ncf_model``)."""
    events = protocols.all_events(str(work / "time" / "ingested"))
    config = choose_ncf_model(work, config, protocols.leave_last_out(events)[0])
    split = NcfSplit.of(work / "ncf", work, events, config)
    vectors = split.vectors()
    end_of_training, none = split.trained.prior(), np.zeros(len(split.table), np.float32)
    rows = {f"model (prior weight {config.export.popularity_prior_weight}, refreshed daily)":
            split.scored(vectors, split.daily_priors(config.export)),
            "model, prior as of the end of training": split.scored(vectors, end_of_training),
            "model without the popularity prior": split.scored(vectors, none),
            "model without the prior or the context move": split.scored(split.vectors(moved=False), none)}
    systems = baseline_systems(split.train_events, split.ids, config.evaluate)
    examples = split.examples
    rows.update({name: _sampled(lambda rows_, s=system: np.stack(s.score(examples.history_idx,
                                                                          examples.history_weight, list(rows_))),
                                examples, split.candidates) for name, system in systems.items()})
    rows.update({name: {f"hr@{NCF_K}": hr, f"ndcg@{NCF_K}": ndcg} for name, (hr, ndcg) in PUBLISHED_NCF.items()})
    print_table(f"NCF protocol: leave-last-one-out, 1 target + {NCF_NEGATIVES} sampled unseen products, "
                f"{len(examples.customer_ids)} customers", (f"hr@{NCF_K}", f"ndcg@{NCF_K}"), rows)


def choose_ncf_model(work: Path, config: PipelineConfig, train_events: pd.DataFrame) -> PipelineConfig:
    """The NCF protocol's objective and prior weight, chosen by HR@10 on its validation split: each customer's
    last training event held out in turn (as He et al. 2017 tuned on held-out interactions), each of
    ``OBJECTIVES`` trained there and scored with each of ``PRIOR_WEIGHTS`` refreshed daily. This protocol asks
    for the single next product, not the whole next period, so it may choose otherwise than the time split."""
    rows, chosen = {}, {}
    for name, overrides in OBJECTIVES.items():
        variant = config.with_overrides(overrides)
        split = NcfSplit.of(work / "ncf-validation", work, train_events, variant, name)
        vectors = split.vectors()
        for weight in PRIOR_WEIGHTS:
            export = dataclasses.replace(variant.export, popularity_prior_weight=weight)
            rows[f"{name}, prior weight {weight}"] = split.scored(vectors, split.daily_priors(export))
            chosen[f"{name}, prior weight {weight}"] = dataclasses.replace(variant, export=export)
    best = max(rows, key=lambda key: rows[key][f"hr@{NCF_K}"])
    print_table("NCF protocol, validation split (each customer's last training event held out): each objective "
                "at each prior weight, refreshed daily", (f"hr@{NCF_K}", f"ndcg@{NCF_K}"), rows)
    print(f"NCF protocol: chosen on its validation split (by hr@{NCF_K}): {best}", flush=True)
    return chosen[best]


@dataclasses.dataclass(frozen=True)
class NcfSplit:
    """One leave-last-out split with a model trained on it: each holdout customer's target and
    ``NCF_NEGATIVES`` products they never interacted with (in ``events``) as its candidates."""

    trained: Trained
    ids: np.ndarray
    table: np.ndarray
    examples: EvalExamples
    candidates: np.ndarray  # [customers, 1 + NCF_NEGATIVES] rows of table; column 0 the target
    train_events: pd.DataFrame
    held_out_at: pd.Series  # each holdout customer's target time, in examples' order

    @classmethod
    def of(cls, folder: Path, work: Path, events: pd.DataFrame, config: PipelineConfig,
           name: str = "model") -> NcfSplit:
        """``events`` split in ``folder`` (each customer's latest held out; written once), and a model trained
        there as ``name``."""
        if not (folder / "ingested").exists():
            protocols.resplit(str(work / "time" / "ingested"), str(folder / "ingested"),
                              *protocols.leave_last_out(events))
        trained = train_split(folder, config, name)
        ids, table = trained.table()
        examples = load_eval_examples(trained.transformed)
        index = pd.Series(np.arange(len(ids)), index=ids)
        seen = events.groupby("customer_id")["product_id"].agg(lambda p: index[p].to_numpy())
        negatives = protocols.sample_negatives([seen[c] for c in examples.customer_ids], len(ids), NCF_NEGATIVES,
                                               config.evaluate.seed)
        candidates = np.concatenate([np.stack([t[:1] for t in examples.target_idxs]), negatives], axis=1)
        held_out = pd.read_parquet(str(Path(trained.ingested) / HOLDOUT_EVENTS_FILE)).set_index("customer_id")
        return cls(trained, ids, table, examples, candidates,
                   pd.read_parquet(str(Path(trained.ingested) / TRAIN_EVENTS_FILE)),
                   held_out["timestamp"].reindex(examples.customer_ids).reset_index(drop=True))

    def vectors(self, moved: bool = True) -> np.ndarray:
        """The holdout customers' vectors, pooled as exported and, for a context model, moved by the context of
        their held-out event, as a request at that moment would carry it (``in_context``; ``moved=False``:
        not moved)."""
        vectors = self.trained.customer_vectors(self.examples, self.table)
        move = in_context(self.trained.export, self.examples) if moved else None
        return vectors if move is None else move(vectors)

    def daily_priors(self, export: ExportConfig) -> np.ndarray:
        """The prior a daily refresh at ``export``'s settings would have served at each target's time."""
        return protocols.daily_priors(self.train_events, self.ids, export, self.held_out_at)

    def scored(self, vectors: np.ndarray, prior: np.ndarray) -> dict[str, float]:
        """HR/NDCG@10 of customer ``vectors`` over the table plus ``prior`` (per product or per customer)."""
        return _sampled(_embedding_scorer(vectors, self.table, prior), self.examples, self.candidates)


def cold_products(work: Path, config: PipelineConfig, warm: Trained) -> None:
    """The cold-start protocol on ``COLD_DRAWS`` seeded draws of cold products, each draw and all pooled.

    Two fractions of warm: against other (warm) products, and paired: against the same products ranked
    by ``warm``, the time split's model, which was trained on their events. Against other products,
    one draw of 10 % of the products swings the fraction by tens of points (which products fall cold
    matters as much as the model), so the draws' seeds are fixed in advance (the evaluation seed, + 1,
    + 2) and every draw is reported; the paired fraction compares like with like.
    """
    trained_on_them = Ranker.of(warm)
    draws = [cold_draw(work, config, config.evaluate.seed + k, work / "cold" / f"draw-{k}", trained_on_them)
             for k in range(COLD_DRAWS)]
    pooled = {system: np.concatenate([draw[system] for draw in draws]) for system in draws[0]}
    rows = {f"model, cold (content only), draw {k + 1}": _cold_row(draw["model, cold"], draw["model, warm"],
                                                                   config.evaluate.seed)
            for k, draw in enumerate(draws)}
    rows["model, cold (content only), all draws"] = _cold_row(pooled["model, cold"], pooled["model, warm"],
                                                              config.evaluate.seed)
    warm_recall = float(pooled["model, warm"].mean())
    rows.update({f"{system}, all draws": {"recall@20": float(values.mean()), "of warm model": values.mean() / warm_recall}
                 for system, values in pooled.items() if system in UNPAIRED_BASELINES})
    print_table(f"cold products: in each of {COLD_DRAWS} draws, {COLD_FRACTION:.0%} of the products are held out "
                 "of training and ranked among themselves; warm: as many trained products, ranked among "
                 "themselves; embeddings only (the popularity prior is 0 for every cold product); "
                 "intervals: bootstrap over customers",
                 ("recall@20", "of warm model", "95 % interval low", "95 % interval high"), rows)
    paired = {f"draw {k + 1}": _paired_row(draw["paired: content only"], draw["paired: trained on them"], config.evaluate.seed)
              for k, draw in enumerate(draws)}
    paired["all draws"] = _paired_row(pooled["paired: content only"], pooled["paired: trained on them"],
                                      config.evaluate.seed)
    print_table("cold products, paired: the same cold products ranked among themselves for the same customers "
                "by the draw's model (content only: it never saw their events) and by the time split's model "
                "(trained on their events); intervals: paired bootstrap over customers",
                ("customers", "content only", "trained on them", "fraction", "95 % interval low",
                 "95 % interval high"), paired)


UNPAIRED_BASELINES = ("random, cold", "genre popularity, cold", "popularity oracle, cold", "model, warm",
                      "random, warm", "popularity, warm")


@dataclasses.dataclass(frozen=True)
class Ranker:
    """A trained model's product table and its holdout customers' vectors, for pool-restricted ranking."""

    ids: np.ndarray
    table: np.ndarray
    vectors: np.ndarray
    examples: EvalExamples

    @classmethod
    def of(cls, trained: Trained) -> Ranker:
        ids, table = trained.table()
        examples = load_eval_examples(trained.transformed)
        return cls(ids, table, trained.customer_vectors(examples, table), examples)

    def recall_in_pool(self, pool_ids: np.ndarray) -> pd.Series:
        """Recall@20 per holdout customer (indexed by customer id) when only ``pool_ids`` may be
        recommended; NaN for a customer without a target among them."""
        rows = np.flatnonzero(np.isin(self.ids, pool_ids))
        values = protocols.restricted_recall(self.vectors, self.table, rows, self.examples.history_idx,
                                             self.examples.target_idxs, COLD_K)
        return pd.Series(values, index=self.examples.customer_ids)


def cold_draw(work: Path, config: PipelineConfig, seed: int, folder: Path, trained_on_them: Ranker
              ) -> dict[str, np.ndarray]:
    """One draw: per-customer recall@20 of each system on the cold pool and on an equal warm pool, and
    (paired) of this draw's model and ``trained_on_them`` on the cold pool, customer by customer.

    Only customers with a holdout target in a pool count for it (equal pool sizes keep the recalls
    comparable).
    """
    source = str(work / "time" / "ingested")
    train_events = pd.read_parquet(str(Path(source) / TRAIN_EVENTS_FILE))
    cold_ids = protocols.choose_cold_products(train_events, COLD_FRACTION, seed)
    holdout = pd.read_parquet(str(Path(source) / HOLDOUT_EVENTS_FILE))
    protocols.resplit(source, str(folder / "ingested"), train_events[~train_events["product_id"].isin(cold_ids)],
                      holdout)
    trained = train_split(folder, config)
    ids, table = trained.table()
    examples = load_eval_examples(trained.transformed)
    rng = np.random.default_rng(seed)
    cold = np.flatnonzero(np.isin(ids, cold_ids))
    all_warm = np.setdiff1d(np.flatnonzero(np.isin(ids, train_events["product_id"].unique())), cold)
    warm = np.sort(rng.choice(all_warm, len(cold), replace=False))  # a pool as large as the cold one
    vectors = trained.customer_vectors(examples, table)
    genre_vectors, genre_table = _genre_popularity(trained, ids, train_events, len(examples.customer_ids))
    ones = np.ones((len(examples.customer_ids), 1), np.float32)  # popularity: its training events, withheld
    popularity = train_events["product_id"].value_counts().reindex(ids, fill_value=0).to_numpy(np.float32)[:, None]
    random_table = rng.normal(size=table.shape).astype(np.float32)
    random_vectors = rng.normal(size=vectors.shape).astype(np.float32)

    def per_customer(v: np.ndarray, t: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """The customers with a target in the pool: their recall@20 by the system (v, t)."""
        return Ranker(ids, t, v, examples).recall_in_pool(ids[candidates]).dropna().to_numpy()

    content_only = Ranker(ids, table, vectors, examples).recall_in_pool(ids[cold])
    paired = pd.concat([content_only, trained_on_them.recall_in_pool(ids[cold])], axis=1, join="inner").dropna()
    return {"model, cold": content_only.dropna().to_numpy(),
            "paired: content only": paired.iloc[:, 0].to_numpy(), "paired: trained on them": paired.iloc[:, 1].to_numpy(),
            "random, cold": per_customer(random_vectors, random_table, cold),
            "genre popularity, cold": per_customer(genre_vectors, genre_table, cold),
            "popularity oracle, cold": per_customer(ones, popularity, cold),
            "popularity, warm": per_customer(ones, popularity, warm),
            "model, warm": per_customer(vectors, table, warm),
            "random, warm": per_customer(random_vectors, random_table, warm)}


def _cold_row(cold: np.ndarray, warm: np.ndarray, seed: int) -> dict[str, float]:
    fraction = bootstrap.ratio_of_means(cold, warm, seed=seed)
    return {"recall@20": float(cold.mean()), "of warm model": fraction.mean,
            "95 % interval low": fraction.low, "95 % interval high": fraction.high}


def _paired_row(content_only: np.ndarray, trained_on_them: np.ndarray, seed: int) -> dict[str, float | int]:
    fraction = bootstrap.paired_ratio_of_means(content_only, trained_on_them, seed=seed)
    return {"customers": len(content_only), "content only": float(content_only.mean()),
            "trained on them": float(trained_on_them.mean()), "fraction": fraction.mean,
            "95 % interval low": fraction.low, "95 % interval high": fraction.high}


def _genre_popularity(trained: Trained, ids: np.ndarray, train_events: pd.DataFrame,
                      customers: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, table) whose dot product is the training popularity of each product's category."""
    catalogue = pd.read_parquet(str(Path(trained.ingested) / "catalogue.parquet")).set_index("product_id")
    category = catalogue["category"].reindex(ids).fillna("").to_numpy()
    counts = train_events["product_id"].map(catalogue["category"]).value_counts()
    table = pd.Series(category).map(counts).fillna(0.0).to_numpy(np.float32)[:, None]
    return np.ones((customers, 1), np.float32), table


def _embedding_scorer(vectors: np.ndarray, table: np.ndarray, prior: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``prior``: one per product, or one row per customer ([customers, products])."""
    per_customer = np.broadcast_to(prior, (len(vectors), table.shape[0]))
    return lambda rows: np.einsum("cd,ckd->ck", vectors, table[rows]) + np.take_along_axis(per_customer, rows, axis=1)


def _sampled(score: Callable[[np.ndarray], np.ndarray], examples: EvalExamples,
             candidates: np.ndarray) -> dict[str, float]:
    """HR/NDCG@10 with column 0 of ``candidates`` the target; random tie-breaking is not given."""
    scores = score(candidates)
    return protocols.sampled_hit_metrics(scores[:, 0], scores[:, 1:], NCF_K)


def validation_customers(transformed: str, config: PipelineConfig) -> EvalExamples:
    """The evaluation's customers of a split under its protocol (``config.evaluate``: by default every
    training interaction excluded, customers with a history), histories whole."""
    return sample_customers(load_eval_examples(transformed), config.evaluate, config.transform.history_length)


def baselines(folder: Path, config: PipelineConfig, tune: bool) -> tuple[dict[str, dict[str, float]], EvaluateConfig]:
    """Transform an ingested validation split once; score the baselines on it, each with its best setting
    of ``tuning.BaselineGrid`` when ``tune`` (every setting's row is printed), else as configured.
    Returns their rows and the evaluation settings with the chosen baselines."""
    transformed = transformed_once(folder, config)
    ids = np.asarray(load_product_vocabulary(transformed))
    examples = validation_customers(transformed, config)
    train = pd.read_parquet(str(folder / "ingested" / TRAIN_EVENTS_FILE))
    evaluate_config = config.evaluate
    if tune:
        tuned = tune_baselines(train, ids, examples, config.evaluate)
        print_tuning(tuned)
        evaluate_config = tuned.config
    systems = baseline_systems(train, ids, evaluate_config)
    return ({name: ranking_metrics(s.rank(examples.history_idx, examples.history_weight, 20), examples, len(ids))
             for name, s in systems.items()}, evaluate_config)


def choose_model(folder: Path, config: PipelineConfig) -> PipelineConfig:
    """The training objective and prior weight chosen on an ingested validation split by NDCG@10: each of
    ``OBJECTIVES`` (its settings on top of ``config``) trained there ``CHOICE_SEEDS`` times, at the prior weight
    best on average; the best average wins."""
    tried = {name: config.with_overrides(overrides) for name, overrides in OBJECTIVES.items()}
    chosen = {name: choose_prior(folder, variant, name) for name, variant in tried.items()}
    best = max(chosen, key=lambda name: chosen[name][1]["ndcg@10"])
    print_table("validation period, standard protocol: each training objective at its best prior weight",
                TUNING_COLUMNS, {f"{name}, prior weight {export.popularity_prior_weight}": row
                                 for name, (export, row) in chosen.items()})
    print(f"model setting chosen on the validation period (by ndcg@10): {OBJECTIVES[best]}", flush=True)
    return dataclasses.replace(tried[best], export=chosen[best][0])


def choose_prior(folder: Path, config: PipelineConfig, name: str = "model") -> tuple[ExportConfig, dict[str, float]]:
    """The model's popularity-prior weight chosen on an ingested validation split by NDCG@10, like the
    baselines' settings: ``CHOICE_SEEDS`` models trained there (``name``: the first one's folder), each ranked with
    every weight of ``PRIOR_WEIGHTS`` (the prior is recomputed from the split's training events, exactly as export
    would), and each weight's metrics averaged over them. Returns the chosen export settings and that weight's
    mean row."""
    seeds = [config.train.seed + offset for offset in range(CHOICE_SEEDS)]
    by_seed = [prior_rows(folder, config.with_overrides({"train.seed": seed}),
                          name if seed == config.train.seed else f"{name}-seed{seed}") for seed in seeds]
    rows = {key: {metric: float(np.mean([r[key][metric] for r in by_seed])) for metric in by_seed[0][key]}
            for key in by_seed[0]}
    best = max(PRIOR_WEIGHTS, key=lambda w: rows[f"popularity_prior_weight={w}"]["ndcg@10"])
    for seed, seed_rows in zip(seeds, by_seed, strict=True):
        print_table(f"validation period, standard protocol: the {name} model's popularity prior weight, seed {seed}",
                    TUNING_COLUMNS, seed_rows)
    print_table(f"validation period, standard protocol: the {name} model's popularity prior weight, mean over "
                f"seeds {seeds}", TUNING_COLUMNS, rows)
    print(f"{name} setting chosen on the validation period (by mean ndcg@10): popularity_prior_weight={best}",
          flush=True)
    return dataclasses.replace(config.export, popularity_prior_weight=best), rows[f"popularity_prior_weight={best}"]


def prior_rows(folder: Path, config: PipelineConfig, name: str) -> dict[str, dict[str, float]]:
    """One model trained on an ingested validation split (``name``: its folder) ranked with each weight of
    ``PRIOR_WEIGHTS``: each weight's validation metrics."""
    trained = train_split(folder, config, name)
    ids, _ = trained.table()
    examples = validation_customers(trained.transformed, config)
    train = pd.read_parquet(str(Path(trained.ingested) / TRAIN_EVENTS_FILE))
    rank, rows = trained.ranker(examples), {}
    for weight in PRIOR_WEIGHTS:
        export = dataclasses.replace(config.export, popularity_prior_weight=weight)
        ranked = rank(prior_from_events(train, ids, export))
        rows[f"popularity_prior_weight={weight}"] = ranking_metrics(ranked, examples, len(ids))
    return rows


def print_tuning(tuned: TunedBaselines) -> None:
    """Every baseline setting tried on the validation period, then the chosen ones."""
    for name, results in tuned.tried.items():
        rows = {", ".join(f"{key}={value}" for key, value in overrides.items()): values for overrides, values in results}
        print_table(f"validation period, standard protocol: {name} settings ({len(results)} tried)",
                    TUNING_COLUMNS, rows)
    print("baseline settings chosen on the validation period (by ndcg@10): " + json.dumps(tuned.chosen), flush=True)


def print_table(title: str, columns: tuple[str, ...], rows: dict[str, dict[str, float | int]]) -> None:
    width = max(len(name) for name in rows) + 2
    print(f"\n{title}\n{'system':<{width}}" + "".join(f"{c:>26}" for c in columns))
    for name, values in rows.items():
        print(f"{name:<{width}}" + "".join(_cell(values.get(c)) for c in columns))
    print(flush=True)


def _cell(value: object) -> str:
    if value is None:
        return f"{'':>26}"
    return f"{value:>26}" if isinstance(value, int | str) else f"{value:>26.4f}"


if __name__ == "__main__":
    main()
