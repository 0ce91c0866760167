"""Wall time of each pipeline stage on the embedded default data (or a named size), in-process.

    .venv/bin/python benchmarks/pipeline.py [--dataset movielens-1m] [--data-dir DIR] [--size small]
                                            [--set train.epochs=1 ...] [--workdir DIR]

Runs the same library functions the KFP components call, one after the other, and prints one row per
stage: seconds and rows per second. Model quality figures are printed after the table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fashionrec.app.cli import SIZES
from fashionrec.config import PipelineConfig, parse_assignments
from fashionrec.datasets import DATASET_NAMES, prepare_dataset
from fashionrec.evaluation.evaluate import evaluate
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.stages.export import export_embeddings
from fashionrec.stages.ingest import ingest
from fashionrec.repository.publish import publish_model_repository
from fashionrec.storage import read_table
from fashionrec.stages.train import train
from fashionrec.stages.transform import transform


Row = tuple[str, float, tuple[int, str]]


def _timed(rows: list[Row], name: str, step: Callable[[], object], count: Callable[[object], tuple[int, str]]):
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    rows.append((name, seconds, count(result)))
    print(f"... {name} done in {seconds:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="synthetic")
    parser.add_argument("--data-dir", default=None, help="the dataset's files, where it needs them")
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", default=None, help="keep outputs here (default: a temporary folder)")
    args = parser.parse_args()
    config = PipelineConfig().with_overrides({**SIZES[args.size], **parse_assignments(args.overrides)})
    with tempfile.TemporaryDirectory() as temp:
        _run_stages(args, config, Path(args.workdir or temp))


def _run_stages(args: argparse.Namespace, config: PipelineConfig, work: Path) -> None:
    """Every stage in order, timed; the same library calls the KFP components make."""
    raw_dir, ingested, transformed, model, export, evaluation_dir = (
        str(work / name) for name in ("raw", "ingested", "transformed", "model", "export", "eval")
    )
    rows: list[Row] = []
    raw = _timed(rows, "prepare", lambda: prepare_dataset(args.dataset, args.data_dir, raw_dir, config.shop),
                 lambda r: (_rows(r.events_uri), "events"))
    summary = _timed(rows, "ingest", lambda: ingest(raw.catalogue_uri, raw.events_uri, ingested, config.ingest),
                     lambda s: (s.event_rows, "events"))
    transformed_summary = _timed(rows, "transform", lambda: transform(ingested, transformed, config.transform),
                                 lambda _: (summary.event_rows, "events"))
    _timed(rows, "train", lambda: train(transformed, model, config.train, config.transform),
           lambda s: (s.examples * s.epochs, "examples"))
    _timed(rows, "export", lambda: export_embeddings(ingested, transformed, model, export),
           lambda s: (s.products, "products"))
    evaluation = _timed(rows, "evaluate", lambda: evaluate(ingested, transformed, export, evaluation_dir, config.evaluate),
                        lambda e: (int(e.metrics["model"]["customers"]), "customers"))
    if evaluation.blessed:
        _timed(rows, "publish",
               lambda: publish_model_repository(f"{export}/{EMBEDDINGS_FILE}", f"{evaluation_dir}/blessing.json",
                                                str(work / "repo"), config.serving),
               lambda p: (p.num_products, "products"))
    _print(rows, summary.event_rows, transformed_summary.train_examples, evaluation)


def _rows(uri: str) -> int:
    return len(read_table(uri))


def _print(rows: list[Row], events: int, examples: int, evaluation) -> None:
    print(f"\n{'stage':<10} {'seconds':>8} {'rows/s':>10}  rows")
    for name, seconds, (count, unit) in rows:
        print(f"{name:<10} {seconds:>8.1f} {count / seconds:>10.0f}  {count} {unit}")
    print(f"{'total':<10} {sum(r[1] for r in rows):>8.1f}  ({events} events, {examples} training examples)")
    ingest_transform = sum(seconds for name, seconds, _ in rows if name in ("ingest", "transform"))
    print(f"ingest + transform: {ingest_transform:.1f} s, {events / ingest_transform:.0f} events/s")
    print("\nholdout   " + "  ".join(f"{k:>9}" for k in ("recall@10", "recall@20", "ndcg@10", "mrr")))
    for system, metrics in evaluation.metrics.items():
        print(f"{system:<10}" + "  ".join(f"{metrics[k]:>9.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "mrr")))
    print(f"gate: {'blessed' if evaluation.blessed else 'not blessed: ' + '; '.join(evaluation.blessing['reasons'])}")


if __name__ == "__main__":
    main()
