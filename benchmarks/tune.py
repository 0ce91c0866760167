"""Choose the model's defaults on a validation period that ends where the test period begins.

    .venv/bin/python benchmarks/tune.py [--dataset movielens-1m] [--try train.pooling=mean ...]
                                        [--set train.epochs=2] [--workdir DIR]

The test split is the pipeline's (the last 10 % of events); everything after its cut-off is dropped,
and the remaining events are split again by the same rule into train and validation. Each ``--try``
(a comma-separated list of ``KEY=VALUE`` overrides) trains one model on that train part (a try of
``export.*`` settings only, e.g. the popularity prior, exports the defaults' model again); all are
scored beside popularity and iALS on the validation customers who have a history (new customers get
the zero vector, ranked by the prior alone, so they would mostly add noise). Nothing of the test
period is seen. ``benchmarks/quality.py`` then reports the chosen defaults on the test period.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.config import PipelineConfig
from fashionrec.datasets import DATASET_NAMES, prepare_dataset
from fashionrec.evaluation import metrics, protocols
from fashionrec.evaluation.evaluate import popularity_scores, sample_customers
from fashionrec.evaluation.systems import BATCH, ials_system, padded, popularity_system
from fashionrec.features import EvalExamples, load_eval_examples
from fashionrec.ingest import TRAIN_EVENTS_FILE, choose_split_time, ingest, split_events
from fashionrec.serving import ops
from fashionrec.transform import load_product_vocabulary, transform
from quality import Trained, print_table, reexport, train_split  # the sibling benchmark script

COLUMNS = ("recall@10", "recall@20", "ndcg@10", "mrr", "coverage@10")
DEFAULT_TRIES = (  # each one change from the defaults (recency pooling, half-lives 7 days and 5 events, temperature 0.2)
    "train.pooling=mean", "train.pooling=weighted", "train.pooling=attention",
    "train.recency_half_life_days=2", "train.recency_half_life_days=30",
    "train.recency_half_life_events=0", "train.recency_half_life_events=3", "train.recency_half_life_events=10",
    "train.temperature=0.1", "train.temperature=0.3",
    "train.logq_correction=false", "train.extra_negatives=512", "train.normalize_embeddings=false",
    # the popularity prior (weight 0.5, 1-day half-life): export settings, so the defaults' model is re-exported
    "export.popularity_prior_weight=0", "export.popularity_prior_weight=0.25", "export.popularity_prior_weight=1",
    "export.popularity_half_life_days=3", "export.popularity_half_life_days=7",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="movielens-1m")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--try", dest="tries", action="append", default=None, metavar="KEY=VALUE[,KEY=VALUE]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    config = PipelineConfig().with_overrides(_pairs(args.overrides))
    with tempfile.TemporaryDirectory() as temp:
        work = Path(args.workdir or temp)
        validation = validation_split(args.dataset, args.data_dir, config, work)
        rows = baselines(validation, config)
        defaults = train_split(validation, config, "defaults")
        rows["defaults"] = score(defaults, config)
        for index, tried in enumerate(args.tries or DEFAULT_TRIES):
            overrides = _pairs(tried.split(","))
            if all(key.startswith("export.") for key in overrides):  # same training, exported again
                trained = reexport(defaults, validation / f"try-{index}" / "export", config.with_overrides(overrides))
            else:
                trained = train_split(validation, config.with_overrides(overrides), f"try-{index}")
            rows[tried] = score(trained, config)
    print_table("validation period (before the test split), customers with a history", COLUMNS, rows)


def _pairs(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; values are JSON where they parse (numbers, true/false), text otherwise."""
    def value(text: str) -> object:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return {key: value(text) for key, text in (pair.split("=", 1) for pair in pairs)}


def validation_split(dataset: str, data_dir: str | None, config: PipelineConfig, work: Path) -> Path:
    """Ingest, drop the test period, split the rest by the same rule; write it in ingest's layout."""
    raw = prepare_dataset(dataset, data_dir, str(work / "raw"), config.shop)
    ingest(raw.catalogue_uri, raw.events_uri, str(work / "test" / "ingested"), config.ingest)
    before_test = pd.read_parquet(str(work / "test" / "ingested" / TRAIN_EVENTS_FILE))
    train, validation = split_events(before_test, choose_split_time(before_test["timestamp"], config.ingest))
    protocols.resplit(str(work / "test" / "ingested"), str(work / "validation" / "ingested"), train, validation)
    return work / "validation"


def _with_history(examples: EvalExamples, config: PipelineConfig) -> EvalExamples:
    """The evaluation's customer sample, less the customers without a history."""
    sampled = sample_customers(examples, config.evaluate)
    keep = [i for i, history in enumerate(sampled.history_idx) if len(history)]
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    return EvalExamples(sampled.customer_ids[keep], pick(sampled.history_idx), pick(sampled.history_weight),
                        pick(sampled.history_age_days), pick(sampled.target_idxs))


def _metrics(rows: np.ndarray, examples: EvalExamples, num_products: int) -> dict[str, float]:
    values = {k: float(np.nanmean(v)) for k, v in metrics.per_customer(rows, examples.target_idxs, (10, 20)).items()}
    return {**values, "coverage@10": metrics.catalogue_coverage(rows, 10, num_products)}


def baselines(folder: Path, config: PipelineConfig) -> dict[str, dict[str, float]]:
    """Transform the validation split once; popularity and iALS on it."""
    transform(str(folder / "ingested"), str(folder / "transformed"), config.transform)
    ids = np.asarray(load_product_vocabulary(str(folder / "transformed")))
    examples = _with_history(load_eval_examples(str(folder / "transformed")), config)
    train = pd.read_parquet(str(folder / "ingested" / TRAIN_EVENTS_FILE))
    systems = {"popularity": popularity_system(popularity_scores(train, ids)),
               "ials": ials_system(train, ids, config.evaluate)}
    return {name: _metrics(s.rank(examples.history_idx, examples.history_weight, 20), examples, len(ids))
            for name, s in systems.items()}


def score(trained: Trained, config: PipelineConfig) -> dict[str, float]:
    """The trained model's metrics on the validation customers with a history, ranked as served."""
    ids, table = trained.table()
    prior = trained.prior()
    examples = _with_history(load_eval_examples(trained.transformed), config)
    vectors = trained.customer_vectors(examples, table)
    rows = np.concatenate([ops.rank_candidates(vectors[s : s + BATCH], table, 20,
                                               padded(examples.history_idx[s : s + BATCH]), prior)[0]
                           for s in range(0, len(vectors), BATCH)])
    return _metrics(rows, examples, len(ids))


if __name__ == "__main__":
    main()
