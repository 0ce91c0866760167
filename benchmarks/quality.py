"""Recommendation quality on one time split: the model beside popularity and iALS, in one table.

    .venv/bin/python benchmarks/quality.py [--dataset movielens-1m] [--set train.epochs=5 ...]

Full-catalogue ranking of the holdout period, excluding what each customer already interacted with
(their recent history), all systems on the same customers (``fashionrec.evaluation``). The model's
hyper-parameters are the pipeline's defaults (``fashionrec/config.py``); nothing here is tuned on the
holdout. Also prints the training throughput and the time of one epoch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fashionrec.config import PipelineConfig
from fashionrec.datasets import DATASET_NAMES, prepare_dataset
from fashionrec.evaluation.evaluate import evaluate
from fashionrec.export import export_embeddings
from fashionrec.ingest import ingest
from fashionrec.train import train
from fashionrec.transform import transform

COLUMNS = ("recall@10", "recall@20", "ndcg@10", "mrr", "auc", "coverage@10", "popularity_percentile@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="movielens-1m")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = PipelineConfig().with_overrides({k: json.loads(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        raw = prepare_dataset(args.dataset, args.data_dir, str(work / "raw"), config.shop)
        ingest(raw.catalogue_uri, raw.events_uri, str(work / "ingested"), config.ingest)
        transform(str(work / "ingested"), str(work / "transformed"), config.transform)
        trained = train(str(work / "transformed"), str(work / "model"), config.train, config.transform)
        export_embeddings(str(work / "ingested"), str(work / "transformed"), str(work / "model"), str(work / "export"))
        result = evaluate(str(work / "ingested"), str(work / "transformed"), str(work / "export"), str(work / "eval"),
                          config.evaluate)
    customers = int(result.metrics["model"]["customers"])
    print(f"\n{args.dataset}: time split, full-catalogue ranking, {customers} holdout customers")
    print(f"{'system':<12}" + "".join(f"{c:>26}" if c.startswith("popularity") else f"{c:>13}" for c in COLUMNS))
    for system, values in result.metrics.items():
        print(f"{system:<12}" + "".join(f"{values[c]:>26.4f}" if c.startswith("popularity") else f"{values[c]:>13.4f}"
                                       for c in COLUMNS))
    print(f"\ntraining: {trained.examples} examples/epoch, {trained.examples_per_second:.0f} examples/s, "
          f"{trained.seconds / trained.epochs:.1f} s per epoch ({trained.epochs} epochs)")


if __name__ == "__main__":
    main()
