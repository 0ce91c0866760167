"""Choose the model's defaults on a validation period that ends where the test period begins.

    .venv/bin/python benchmarks/tune.py [--dataset movielens-1m] [--try train.pooling=mean ...]
                                        [--set train.epochs=2] [--tune-baselines] [--workdir DIR]

The test split is the pipeline's (the last 10 % of events); everything after its cut-off is dropped,
and the remaining events are split again by the same rule into train and validation. Each ``--try``
(a comma-separated list of ``KEY=VALUE`` overrides) trains one model on that train part (a try of
``export.*`` settings only, e.g. the popularity prior, exports the defaults' model again); all are
scored beside the baselines (popularity, recent popularity, iALS, EASE; ``--tune-baselines`` first
chooses each one's setting from a grid) on the validation customers who have a history, under the
standard protocol: every product a customer interacted with before the validation period is excluded
from every ranking, and the baselines use every one of those events. Nothing of the test period is seen. ``benchmarks/quality.py`` then reports the chosen defaults on the test period.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fashionrec.config import PipelineConfig, parse_assignments
from fashionrec.datasets import DATASET_NAMES, prepare_dataset
from fashionrec.evaluation import protocols
from fashionrec.evaluation.tuning import ranking_metrics
from fashionrec.stages.ingest import ingest
from quality import (  # the sibling benchmark script
    TUNING_COLUMNS as COLUMNS,
    Trained,
    baselines,
    print_table,
    reexport,
    train_split,
    validation_customers,
)

DEFAULT_TRIES = (  # each one change from the defaults; the levers tried under the standard protocol (2026-12)
    "train.pooling=mean", "train.pooling=weighted",
    "train.recency_half_life_events=0", "train.recency_half_life_events=0,transform.history_length=200",
    "transform.target_horizon_events=10", "transform.target_horizon_events=30",
    "train.embedding_dim=128", "train.epochs=4", "train.temperature=0.1", "train.temperature=0.3",
    # the future-set objective with the settings ML-1M's validation period chose for it (config.FUTURE_SET_SETTINGS)
    "train.objective=future_set,train.pooling=mean,train.normalize_embeddings=false,train.id_dropout=0,train.epochs=40",
    # the popularity prior: export settings, so the defaults' model is re-exported
    "export.popularity_prior_weight=0", "export.popularity_prior_weight=1", "export.popularity_prior_weight=1.5",
    "export.popularity_prior_weight=2", "export.popularity_prior_weight=3", "export.popularity_half_life_days=2",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="movielens-1m")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--try", dest="tries", action="append", default=None, metavar="KEY=VALUE[,KEY=VALUE]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--tune-baselines", action="store_true",
                        help="choose each baseline's setting on the validation period (iALS grid: minutes)")
    args = parser.parse_args()
    config = PipelineConfig().with_settings(args.overrides)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(args.workdir or temp)
        validation = validation_split(args.dataset, args.data_dir, config, work)
        rows, _ = baselines(validation, config, args.tune_baselines)
        defaults = train_split(validation, config, "defaults")
        rows["defaults"] = score(defaults, config)
        for index, tried in enumerate(args.tries or DEFAULT_TRIES):
            overrides = parse_assignments(try_assignments(tried))
            if all(key.startswith("export.") for key in overrides):  # same training, exported again
                trained = reexport(defaults, validation / f"try-{index}" / "export", config.with_overrides(overrides))
            else:
                trained = train_split(validation, config.with_overrides(overrides), f"try-{index}")
            rows[tried] = score(trained, config)
    print_table("validation period (before the test split), customers with a history", COLUMNS, rows)


def try_assignments(tried: str) -> list[str]:
    """A ``--try``'s ``KEY=VALUE`` texts: split at the commas that start a new ``KEY=``, so a list value
    (``evaluate.top_k=10,20``) stays whole."""
    assignments: list[str] = []
    for piece in tried.split(","):
        if "=" in piece or not assignments:
            assignments.append(piece)
        else:
            assignments[-1] += "," + piece
    return assignments


def validation_split(dataset: str, data_dir: str | None, config: PipelineConfig, work: Path) -> Path:
    """Ingest, drop the test period, split the rest by the same rule; write it in ingest's layout."""
    raw = prepare_dataset(dataset, data_dir, str(work / "raw"), config.shop)
    ingest(raw.catalogue_uri, raw.events_uri, str(work / "test" / "ingested"), config.ingest)
    protocols.validation_split(str(work / "test" / "ingested"), str(work / "validation" / "ingested"), config.ingest)
    return work / "validation"


def score(trained: Trained, config: PipelineConfig) -> dict[str, float]:
    """The trained model's metrics on the validation customers with a history, ranked as served (and as the
    evaluation ranks them: context models moved by each request's context)."""
    examples = validation_customers(trained.transformed, config)
    return ranking_metrics(trained.ranker(examples)(trained.prior()), examples, len(trained.table()[0]))


if __name__ == "__main__":
    main()
