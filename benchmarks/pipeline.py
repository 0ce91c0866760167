"""Wall time and peak memory of each pipeline stage on the embedded default data (or a named size).

    .venv/bin/python benchmarks/pipeline.py [--dataset movielens-1m] [--data-dir DIR] [--size small]
                                            [--set train.epochs=1 ...] [--workdir DIR]
    .venv/bin/python benchmarks/pipeline.py --scale 1 3 10 [--set ...]

Runs the same library functions the KFP components call, one after the other, and prints one row per
stage: seconds, rows per second and the peak resident memory of this process and its children (Beam's
workers) while the stage ran, sampled by psutil. Model quality figures are printed after the table.

``--scale`` runs the synthetic shop at each multiple of the default size (customers and products times
the factor, so about that many times the events; 10 is 200k customers, 50k products, ~5M events), each
in a fresh process, and prints the cost curve: each stage's seconds and peak memory per scale, and how
the time grew against the data (target: 10x the data for at most 12x the time, peak memory at most
8 GiB). Its generator races each session's products among ``SCALE_RACE_CANDIDATES`` candidates
(``shop.race_candidates``), at every scale, so that the shop's own cost grows with the sessions as a real
log's would; ``--set shop.race_candidates=0`` races every product exactly, as the default shop does, at a
cost that grows with sessions x products.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from fashionrec.app.cli import SIZES
from fashionrec.config import PipelineConfig, dataset_config, parse_assignments
from fashionrec.datasets import DATASET_NAMES, prepare_dataset
from fashionrec.evaluation.evaluate import evaluate
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.stages.export import export_embeddings
from fashionrec.stages.ingest import ingest
from fashionrec.repository.publish import publish_model_repository
from fashionrec.storage import read_table
from fashionrec.stages.train import train
from fashionrec.stages.transform import transform


Row = tuple[str, float, tuple[int, str], float]  # stage, seconds, (rows, unit), peak MiB
SCALED_SHOP_FIELDS = ("num_customers", "num_products")  # events grow with customers (events_per_customer)
SAMPLE_INTERVAL_S = 0.2
# --scale's generator: the pooled race (ShopConfig.race_candidates). At the default size its events follow the
# tastes as the exact race's do (mean affinity of the logged pairs 0.679 against 0.684, same-style share 0.380
# against 0.383), and it costs the same per session at any catalogue size.
SCALE_RACE_CANDIDATES = 1024
GENERATOR_STAGE = "prepare"  # makes the synthetic shop: not part of a run on real data


@contextmanager
def peak_memory() -> Iterator[list[float]]:
    """Sample the resident memory of this process and its children while the block runs; the yielded
    list holds the peak in MiB afterwards (a sampler: a spike shorter than the interval may be missed)."""
    peak, done, me = [0.0], threading.Event(), psutil.Process()

    def sample() -> None:
        while not done.is_set():
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:  # a child exited mid-sample
                continue
            peak[0] = max(peak[0], total / 2**20)
            done.wait(SAMPLE_INTERVAL_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def _timed(rows: list[Row], name: str, step: Callable[[], object], count: Callable[[object], tuple[int, str]]):
    started = time.perf_counter()
    with peak_memory() as peak:
        result = step()
    seconds = time.perf_counter() - started
    rows.append((name, seconds, count(result), peak[0]))
    print(f"... {name} done in {seconds:.1f} s, peak {peak[0]:,.0f} MiB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="synthetic")
    parser.add_argument("--data-dir", default=None, help="the dataset's files, where it needs them")
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", default=None, help="keep outputs here (default: a temporary folder)")
    parser.add_argument("--scale", type=float, nargs="+", default=None, metavar="FACTOR",
                        help="the synthetic shop at these multiples of the default size, one fresh process each")
    parser.add_argument("--json", default=None, help="also write the stage rows here (used by --scale)")
    args = parser.parse_args()
    if args.scale:
        _scale_curve(args.scale, args.overrides)
        return
    # the dataset's own settings, as `fashionrec pipeline run` applies them (the shop's long memory)
    config = dataset_config(args.dataset, {**SIZES[args.size], **parse_assignments(args.overrides)})
    with tempfile.TemporaryDirectory() as temp:
        rows = _run_stages(args, config, Path(args.workdir or temp))
    if args.json:
        Path(args.json).write_text(json.dumps(rows))


def _scale_curve(factors: list[float], overrides: list[str]) -> None:
    """Run every scale in its own process (a clean peak memory each), then print the curve."""
    base = PipelineConfig().shop
    results: dict[float, list[Row]] = {}
    with tempfile.TemporaryDirectory() as temp:
        race = [] if any(item.startswith("shop.race_candidates=") for item in overrides) else [
            f"shop.race_candidates={SCALE_RACE_CANDIDATES}"]
        for factor in factors:
            scaled = [f"shop.{name}={round(getattr(base, name) * factor)}" for name in SCALED_SHOP_FIELDS] + race
            out = Path(temp) / f"scale-{factor:g}.json"
            command = [sys.executable, __file__, "--json", str(out),
                       *(arg for item in [*scaled, *overrides] for arg in ("--set", item))]
            print(f"=== scale {factor:g}: {' '.join(scaled)}", flush=True)
            subprocess.run(command, check=True)
            results[factor] = [tuple(row) for row in json.loads(out.read_text())]
    _print_curve(results)


def _print_curve(results: dict[float, list[Row]]) -> None:
    """Seconds and peak MiB per stage and scale, then total time growth against event growth."""
    factors = sorted(results)
    stages = [row[0] for row in results[factors[0]]]
    cells = {(factor, row[0]): row for factor, rows in results.items() for row in rows}
    print("\nstage       " + "".join(f"{f'{f:g}x s':>10}{f'{f:g}x MiB':>11}" for f in factors))
    for stage in stages:
        line = "".join(f"{cells[(f, stage)][1]:>10.1f}{cells[(f, stage)][3]:>11,.0f}" if (f, stage) in cells
                       else f"{'-':>10}{'-':>11}" for f in factors)
        print(f"{stage:<12}{line}")
    events = {f: next(row[2][0] for row in results[f] if row[0] == "ingest") for f in factors}
    totals = {f: sum(row[1] for row in results[f]) for f in factors}
    peaks = {f: max(row[3] for row in results[f]) for f in factors}
    print(f"{'total':<12}" + "".join(f"{totals[f]:>10.1f}{peaks[f]:>11,.0f}" for f in factors))
    print(f"{'events':<12}" + "".join(f"{events[f]:>21,}" for f in factors))
    pipeline = {f: [row for row in results[f] if row[0] != GENERATOR_STAGE] for f in factors}
    low = factors[0]
    for f in factors[1:]:
        print(f"{f:g}x vs {low:g}x: {events[f] / events[low]:.1f}x the events took {totals[f] / totals[low]:.1f}x "
              f"the time (target <= 1.2x the data growth); peak {peaks[f] / 1024:.1f} GiB (target <= 8)")
        took = sum(row[1] for row in pipeline[f]) / sum(row[1] for row in pipeline[low])
        peak = max(row[3] for row in pipeline[f]) / 1024
        print(f"  without {GENERATOR_STAGE} (the synthetic shop's generator, which real data skips): {took:.1f}x the "
              f"time, peak {peak:.1f} GiB")


def _run_stages(args: argparse.Namespace, config: PipelineConfig, work: Path) -> list[Row]:
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
    _timed(rows, "export", lambda: export_embeddings(ingested, transformed, model, export, config.ingest.event_weights,
                                                     config.export),
           lambda s: (s.products, "products"))
    evaluation = _timed(rows, "evaluate", lambda: evaluate(ingested, transformed, export, evaluation_dir, config.evaluate),
                        lambda e: (int(e.metrics["model"]["customers"]), "customers"))
    if evaluation.blessed:
        _timed(rows, "publish",
               lambda: publish_model_repository(f"{export}/{EMBEDDINGS_FILE}", f"{evaluation_dir}/blessing.json",
                                                str(work / "repo"), config.serving),
               lambda p: (p.num_products, "products"))
    _print(rows, summary.event_rows, transformed_summary.train_examples, evaluation)
    return rows


def _rows(uri: str) -> int:
    return len(read_table(uri))


def _print(rows: list[Row], events: int, examples: int, evaluation) -> None:
    print(f"\n{'stage':<10} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}  rows")
    for name, seconds, (count, unit), peak in rows:
        print(f"{name:<10} {seconds:>8.1f} {count / seconds:>10.0f} {peak:>9,.0f}  {count} {unit}")
    print(f"{'total':<10} {sum(r[1] for r in rows):>8.1f}  ({events} events, {examples} training examples)")
    ingest_transform = sum(row[1] for row in rows if row[0] in ("ingest", "transform"))
    print(f"ingest + transform: {ingest_transform:.1f} s, {events / ingest_transform:.0f} events/s")
    print("\nholdout   " + "  ".join(f"{k:>9}" for k in ("recall@10", "recall@20", "ndcg@10", "mrr")))
    for system, metrics in evaluation.metrics.items():
        print(f"{system:<10}" + "  ".join(f"{metrics[k]:>9.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "mrr")))
    print(f"gate: {'blessed' if evaluation.blessed else 'not blessed: ' + '; '.join(evaluation.blessing['reasons'])}")


if __name__ == "__main__":
    main()
