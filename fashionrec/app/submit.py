"""Submit the compiled training pipeline to Kubeflow Pipelines or Vertex AI Pipelines, once or on a schedule.

The pipeline is compiled in-process for the chosen component image (``runner.compile_pipeline``), its
caching set for every task of every DAG (the KFP client itself only overrides the root DAG, which would
leave the gated publish task cached), and sent with the pipeline's four runtime parameters:

* Kubeflow Pipelines: ``kfp.Client`` (REST API ``/apis/v2beta1``): get-or-create the experiment, then a
  run or a recurring run whose body carries the pipeline spec inline.
* Vertex AI: ``google.cloud.aiplatform.PipelineJob`` → ``submit()`` (in a Vertex AI Experiment, if named)
  or ``create_schedule()``.

``wait_for_run`` then follows a run to its end. The SDKs' chatter (kfp.Client prints links, the Vertex SDK
logs to stdout) goes to stderr, so that stdout carries only what the command reports.

Every check on the input happens before the first request (``ValueError`` with the reason), so a typo
never leaves half a submission behind. Nothing here is imported by the local runner: ``kfp.Client`` and
the Vertex SDK load only when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import logging
import os
import re
import sys
import tempfile
import time
import warnings
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from croniter import CroniterError, croniter

from fashionrec.config import COMPONENT_IMAGE, PipelineConfig

if TYPE_CHECKING:  # only for annotations: the SDKs and the KFP definitions load lazily
    from google.auth.credentials import Credentials

    from pipelines.training import Accelerator

PIPELINE_NAME = "fashionrec-training"  # pipelines.training.PIPELINE_NAME (checked by the tests)
WEEKLY_CRON = "0 3 * * 1"  # Mondays 03:00: a week of new events per retraining
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # Google Cloud label keys
LABEL_VALUE_PATTERN = re.compile(r"^[a-z0-9_-]{0,63}$")  # ... and values
MAX_LABELS = 64
REMOTE_SCHEME = "gs://"  # remote tasks can only reach data and models through the bucket
# Vertex AI Experiments are ML Metadata contexts: their ids take 4-128 of a-z, 0-9 and '-'.
VERTEX_EXPERIMENT_PATTERN = re.compile(r"^[a-z0-9-]{4,128}$")


@dataclass(frozen=True)
class PipelineArguments:
    """The training pipeline's runtime parameters (``pipelines/training.py``)."""

    model_repository: str  # gs:// root of the Triton model repository that serving reads
    dataset: str = "synthetic"
    data_dir: str = ""  # gs:// folder of the dataset's files; empty for the synthetic shop
    config: PipelineConfig = field(default_factory=PipelineConfig)  # checked when built

    def parameters(self) -> dict[str, str]:
        """The runtime parameter values, by the names the compiled pipeline declares (one JSON per config
        section: ``pipelines.training.config_arguments``)."""
        from pipelines.training import config_arguments

        return {
            "model_repository": self.model_repository,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            **config_arguments(self.config),
        }


@dataclass(frozen=True)
class SubmitConfig:
    """How a run is submitted, whichever the target."""

    image: str = COMPONENT_IMAGE  # every task's container image
    run_name: str | None = None  # display name; None = <pipeline>-<UTC time>
    enable_caching: bool | None = None  # None = as compiled (on); False re-runs every task
    labels: Mapping[str, str] = field(default_factory=dict)  # added to (and overriding) the defaults
    default_labels: Mapping[str, str] = field(default_factory=lambda: {"app": "fashionrec"})
    service_account: str | None = None  # KFP: a Kubernetes service account; Vertex: a Google one
    train_accelerator: Accelerator | None = None  # GPUs for the train task, which then runs train_image
    train_image: str | None = None  # the GPU image (images/component-gpu.Dockerfile)


KFP_PROBE_TIMEOUT_S = 10.0  # the access check before kfp.Client
KFP_TOKEN_ENV = "KFP_TOKEN"  # a bearer token for the KFP API (IAP: `gcloud auth print-identity-token`; OIDC)
KFP_COOKIES_ENV = "KFP_COOKIES"  # session cookies of multi-user Kubeflow's login (e.g. "authservice_session=...")


@dataclass(frozen=True)
class KfpCredentials:
    """How to authenticate to a Kubeflow Pipelines API, as ``kfp.Client`` takes it (none: an open endpoint,
    e.g. a port-forward). Secrets come from the environment, never from the command line, where any
    user of the machine could read them in the process list; they are left out of ``repr``."""

    token: str | None = field(default=None, repr=False)  # Authorization: Bearer <token>
    cookies: str | None = field(default=None, repr=False)  # Cookie: <cookies>
    service_account_token: str | None = None  # a file: the pod's projected token (in-cluster submission)

    @classmethod
    def from_environment(cls, service_account_token: str | None = None) -> KfpCredentials:
        """``$KFP_TOKEN`` and ``$KFP_COOKIES`` (unset or empty: not sent), and the token file, if given."""
        return cls(os.environ.get(KFP_TOKEN_ENV) or None, os.environ.get(KFP_COOKIES_ENV) or None,
                   service_account_token)

    def headers(self) -> dict[str, str]:
        """The HTTP headers these credentials add to a request."""
        headers = {"Cookie": self.cookies} if self.cookies else {}
        token = self.token or (Path(self.service_account_token).read_text().strip() if self.service_account_token
                               else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def client_arguments(self) -> dict[str, Any]:
        """The ``kfp.Client`` keyword arguments for these credentials."""
        arguments: dict[str, Any] = {}
        if self.token:
            arguments["existing_token"] = self.token
        if self.cookies:
            arguments["cookies"] = self.cookies
        if self.service_account_token:
            from kfp.client import ServiceAccountTokenVolumeCredentials

            arguments["credentials"] = ServiceAccountTokenVolumeCredentials(self.service_account_token)
        return arguments


@dataclass(frozen=True)
class KfpTarget:
    """A Kubeflow Pipelines API endpoint (e.g. a port-forward to ``ml-pipeline-ui``)."""

    host: str
    experiment: str = "fashionrec"
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    pipeline_root: str | None = None  # None = the deployment's default artifact root
    credentials: KfpCredentials = field(default_factory=KfpCredentials)

    def __str__(self) -> str:
        return f"Kubeflow Pipelines at {self.host}"


@dataclass(frozen=True)
class VertexTarget:
    """A Vertex AI Pipelines project and region, and the bucket folder for the run's artifacts."""

    project: str
    region: str
    pipeline_root: str  # gs://...: runtime_config.gcs_output_directory
    experiment: str | None = None  # a Vertex AI Experiment the run joins (created if missing); None: none

    def __str__(self) -> str:
        return f"Vertex AI Pipelines in {self.project}/{self.region}"


@dataclass(frozen=True)
class ScheduleConfig:
    """When a recurring retraining runs."""

    cron: str = WEEKLY_CRON  # five fields: minute hour day-of-month month day-of-week
    time_zone: str | None = None  # IANA name (Vertex only); None = UTC
    max_concurrent_runs: int = 1  # never two retrainings publishing at once
    catch_up: bool = False  # KFP: do not backfill the intervals missed while paused
    display_name: str | None = None  # None = <pipeline>-schedule


@dataclass(frozen=True)
class Submission:
    """What was created: a run or a schedule, its id (KFP) or resource name (Vertex), and where to see it."""

    target: Literal["kfp", "vertex"]
    kind: Literal["run", "schedule"]
    resource: str
    display_name: str
    url: str | None
    endpoint: str = ""  # the target in words (``str(target)``)
    cron: str | None = None  # a schedule's cron expression, as the target got it
    experiment: str | None = None  # the KFP or Vertex AI experiment a run joined

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``--output json``: stable keys, ``id`` for the run id or resource name."""
        return {"target": self.target, "endpoint": self.endpoint, "kind": self.kind, "id": self.resource,
                "display_name": self.display_name, "url": self.url, "experiment": self.experiment,
                "cron": self.cron}


Target = KfpTarget | VertexTarget


# ---------------------------------------------------------------------------------------------- checks


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings → a label mapping; ValueError for a pair without ``=``."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected a label KEY=VALUE, got {pair!r}")
        labels[key.strip()] = value.strip()
    return labels


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Google Cloud label rules (Vertex rejects anything else, and KFP gets the same labels): lower-case
    keys starting with a letter, values of ``a-z0-9_-``, at most 63 characters each, at most 64 labels."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not LABEL_PATTERN.match(key):
            raise ValueError(f"label key {key!r}: use 1-63 lower-case letters, digits, '_' or '-', starting "
                             "with a letter")
        if not LABEL_VALUE_PATTERN.match(value):
            raise ValueError(f"label {key}={value!r}: values use at most 63 lower-case letters, digits, "
                             "'_' or '-'")
    return dict(labels)


# The cron both schedulers read: Vertex AI five plain fields, Kubeflow's robfig/cron the same behind the
# seconds field validate_schedule adds; values, ranges, steps and lists, with month and day names. croniter
# also reads what at least one of them rejects, so a thin check comes first: six or seven fields (seconds,
# years), @weekly and the like, ?, L, W, #, H and R, Sunday as 7 and ranges that wrap (5-2). croniter then
# checks each value, name and step.
CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"), ("month", "1-12 or JAN-DEC"),
               ("day-of-week", "0-6 or SUN-SAT"))
_NUMBER, _NAME = r"\d+", r"\d+|[A-Za-z]{3}"
_CRON_ITEMS = tuple(re.compile(rf"^(?:\*|(?P<low>{token})(?:-(?P<high>{token}))?)(?:/\d+)?$")
                    for token in (_NUMBER, _NUMBER, _NUMBER, _NAME, _NAME))
DAY_OF_WEEK = 4


def validate_cron(expression: str) -> str:
    """A standard five-field cron expression (``*``, ``a``, ``a-b``, ``/step``, lists, month and day names),
    whitespace normalised. Both Vertex AI and Kubeflow accept what passes; ValueError names the field and
    the item that does not."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"cron {expression!r}: expected 5 fields (minute hour day-of-month month "
                         f"day-of-week), got {len(fields)}")
    for index, text in enumerate(fields):
        for item in text.split(","):
            _check_cron_item(expression, index, item)
    return " ".join(fields)


def _check_cron_item(expression: str, index: int, item: str) -> None:
    """One comma-separated item of field ``index``: the thin syntax check, croniter's, then the two rules
    croniter relaxes (ranges that run backwards, and 7 for Sunday, which Kubeflow's scheduler has not)."""
    name = CRON_FIELDS[index][0]
    match = _CRON_ITEMS[index].match(item)
    if not match:
        raise ValueError(f"cron {expression!r}: cannot read {item!r} in the {name} field")
    _cron_values(expression, index, item)
    if index == DAY_OF_WEEK and "7" in (match["low"], match["high"]):
        raise ValueError(f"cron {expression!r}: day-of-week 7 is outside 0-6 (Kubeflow's scheduler has no 7 "
                         "for Sunday: use 0 or SUN)")
    if match["high"] and _cron_values(expression, index, match["low"]) > _cron_values(expression, index,
                                                                                        match["high"]):
        raise ValueError(f"cron {expression!r}: range {item!r} runs backwards in the {name} field")


def _cron_values(expression: str, index: int, item: str) -> list[int]:
    """The values croniter reads ``item`` as in field ``index`` (every other field ``*``); ValueError
    naming the field and what it takes when croniter refuses it."""
    fields = ["*"] * len(CRON_FIELDS)
    fields[index] = item
    try:
        return croniter.expand(" ".join(fields))[0][index]
    except CroniterError as error:
        name, allowed = CRON_FIELDS[index]
        raise ValueError(f"cron {expression!r}: the {name} field cannot be {item!r} (it takes {allowed}, "
                         "as values, a-b ranges, */step or a-b/step, and lists)") from error


def resolve_target(kfp_host: str | None = None, vertex: bool = False, project: str | None = None,
                   region: str | None = None, pipeline_root: str | None = None, experiment: str | None = None,
                   namespace: str | None = None, credentials: KfpCredentials | None = None) -> Target:
    """The one target the command-line options name; ValueError when they name none, both, or mix the
    options of one target into the other (a silently ignored ``--project`` would submit somewhere else)."""
    if vertex == bool(kfp_host):
        raise ValueError("choose exactly one target: --kfp-host URL (Kubeflow Pipelines) or --vertex (Vertex AI)")
    if vertex:
        missing = [option for option, value in (("--project", project), ("--region", region),
                                                ("--pipeline-root", pipeline_root)) if not value]
        if missing:
            raise ValueError(f"--vertex needs {', '.join(missing)}")
        if namespace or (credentials and credentials.service_account_token):
            raise ValueError("--namespace and --kfp-sa-token are Kubeflow Pipelines options (--kfp-host)")
        return VertexTarget(project=str(project), region=str(region), pipeline_root=str(pipeline_root),
                            experiment=experiment)
    if project or region:
        raise ValueError("--project and --region are Vertex AI options (--vertex)")
    optional = {"experiment": experiment, "namespace": namespace, "pipeline_root": pipeline_root,
                "credentials": credentials}
    return KfpTarget(host=str(kfp_host), **{key: value for key, value in optional.items() if value})


def validate_submission(target: Target, arguments: PipelineArguments, options: SubmitConfig) -> None:
    """Everything a remote run needs, checked before any request.

    Remote tasks see only what the bucket holds: the model repository, the data folder and (Vertex) the
    pipeline root must be ``gs://`` URIs; every dataset but the synthetic one needs ``data_dir`` (the
    component image carries no data: MovieLens' licence forbids shipping it).
    """
    from fashionrec.datasets import DATASET_NAMES
    from fashionrec.app.runner import validate_image_reference

    validate_image_reference(options.image)
    if (options.train_accelerator is None) != (options.train_image is None):
        raise ValueError("--train-gpu and --train-image go together: a GPU task runs the GPU image")
    if options.train_image is not None:
        validate_image_reference(options.train_image)
    _require_gcs(arguments.model_repository, "--model-repository")
    if arguments.dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {arguments.dataset!r}; choose one of {DATASET_NAMES}")
    if arguments.dataset != "synthetic" and not arguments.data_dir:
        raise ValueError(f"dataset {arguments.dataset!r} needs --data-dir gs://... (remote tasks read the "
                         "files from the bucket; the image ships no data)")
    if arguments.data_dir:
        _require_gcs(arguments.data_dir, "--data-dir")
    validate_labels(run_labels(options, arguments, "manual"))
    if isinstance(target, VertexTarget):
        if not target.project or not target.region:
            raise ValueError("Vertex AI needs --project and --region")
        _require_gcs(target.pipeline_root, "--pipeline-root")
        if target.experiment is not None and not VERTEX_EXPERIMENT_PATTERN.match(target.experiment):
            raise ValueError(f"--experiment {target.experiment!r}: Vertex AI experiment names take 4-128 "
                             "lower-case letters, digits or '-'")
    elif not re.match(r"^https?://[^/\s]+", target.host):
        raise ValueError(f"--kfp-host {target.host!r}: expected http(s)://HOST[:PORT][/path]")
    elif target.pipeline_root and not re.match(r"^[a-z][a-z0-9+.-]*://.", target.pipeline_root):
        # KFP's own artifact store may be MinIO or S3: any object-store URI, not a local path.
        raise ValueError(f"--pipeline-root {target.pipeline_root!r}: expected an object-store URI "
                         "(gs://, s3://, minio://)")


def _require_gcs(uri: str, option: str) -> None:
    if not uri.startswith(REMOTE_SCHEME) or len(uri) <= len(REMOTE_SCHEME):
        raise ValueError(f"{option} must be a {REMOTE_SCHEME} URI that remote tasks can reach, got {uri!r}")


def validate_schedule(target: Target, when: ScheduleConfig) -> str:
    """The cron expression the target understands: Vertex takes five fields (``TZ=...`` prefix for a time
    zone); Kubeflow's scheduler (robfig/cron) takes six, seconds first, always in UTC."""
    cron = validate_cron(when.cron)
    if when.max_concurrent_runs < 1:
        raise ValueError("max concurrent runs must be at least 1")
    if isinstance(target, VertexTarget) and target.experiment:
        raise ValueError("Vertex AI schedules cannot put their runs in an experiment: drop --experiment")
    if when.time_zone is None:
        return cron if isinstance(target, VertexTarget) else f"0 {cron}"
    try:
        zoneinfo.ZoneInfo(when.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {when.time_zone!r}") from error
    if isinstance(target, KfpTarget):
        raise ValueError("Kubeflow Pipelines schedules run in UTC: drop --time-zone and shift the cron hours")
    return f"TZ={when.time_zone} {cron}"


# ------------------------------------------------------------------------------------------- the spec


def run_labels(options: SubmitConfig, arguments: PipelineArguments, trigger: str) -> dict[str, str]:
    """The labels a run carries: the defaults, the dataset and what started it, then the user's."""
    return {**options.default_labels, "dataset": arguments.dataset, "trigger": trigger, **options.labels}


def set_caching(spec: dict[str, Any], enabled: bool) -> int:
    """Set ``cachingOptions.enableCache`` on every task of every DAG (root and sub-DAGs such as the
    gate's condition), in place; returns how many tasks. Why: a scheduled retraining on the same
    ``data_dir`` would otherwise reuse last week's cached outputs and never see new events."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec.get("components", {}).values() if "dag" in c]
    tasks = [task for dag in dags for task in dag.get("tasks", {}).values()]
    for task in tasks:
        task["cachingOptions"] = {"enableCache": enabled}
    return len(tasks)


def compiled_pipeline_spec(options: SubmitConfig) -> dict[str, Any]:
    """The pipeline compiled for ``options.image`` with ``options.enable_caching`` applied, as the JSON
    form of a validated ``PipelineSpec`` proto (what both APIs take)."""
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from fashionrec.app.runner import compile_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.yaml"
        compile_pipeline(str(path), image=options.image, train_accelerator=options.train_accelerator,
                         train_image=options.train_image)
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if options.enable_caching is not None:
        set_caching(spec, options.enable_caching)
    proto = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    return json_format.MessageToDict(proto)


def default_run_name(now: datetime | None = None) -> str:
    """``<pipeline>-YYYYmmdd-HHMMSS`` in UTC: unique per second, sortable, a valid Vertex display name."""
    return f"{PIPELINE_NAME}-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}"


def _labels_text(labels: Mapping[str, str]) -> str:
    """KFP runs have no labels field: they go into the description, ``key=value`` sorted."""
    return "labels: " + ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


# --------------------------------------------------------------------------------------------- submit


def submit(target: Target, arguments: PipelineArguments, options: SubmitConfig,
           credentials: Credentials | None = None) -> Submission:
    """Start one pipeline run on ``target``. ``credentials`` (Vertex only) default to Application Default
    Credentials."""
    validate_submission(target, arguments, options)
    spec = compiled_pipeline_spec(options)
    labels = run_labels(options, arguments, "manual")
    if isinstance(target, KfpTarget):
        return _kfp_run(target, arguments, options, spec, labels)
    return _vertex_run(target, arguments, options, spec, labels, credentials)


def schedule(target: Target, arguments: PipelineArguments, options: SubmitConfig, when: ScheduleConfig,
             credentials: Credentials | None = None) -> Submission:
    """Create a recurring run (KFP) or a pipeline job schedule (Vertex) of the pipeline."""
    validate_submission(target, arguments, options)
    cron = validate_schedule(target, when)
    spec = compiled_pipeline_spec(options)
    labels = run_labels(options, arguments, "schedule")
    name = when.display_name or f"{PIPELINE_NAME}-schedule"
    if isinstance(target, KfpTarget):
        return _kfp_recurring_run(target, arguments, options, when, cron, name, spec, labels)
    return _vertex_schedule(target, arguments, options, when, cron, name, spec, labels, credentials)


class KfpAccessRefused(RuntimeError):
    """The Kubeflow Pipelines API refused the credentials (401): the message names the target and its reason."""


def check_kfp_access(target: KfpTarget) -> None:
    """One health request with the credentials, failing fast on a refusal: ``kfp.Client`` itself retries a
    refused health check five times, 25 s in all, then says only that it timed out."""
    import urllib3

    response = urllib3.request("GET", f"{target.host.rstrip('/')}/apis/v2beta1/healthz",
                               headers=target.credentials.headers(), timeout=KFP_PROBE_TIMEOUT_S, retries=False)
    if response.status == 401:
        raise KfpAccessRefused(f"{target} answered 401 Unauthorized: {response.data.decode('utf-8', 'replace')[:200]}")


def _kfp_client(target: KfpTarget) -> Any:
    """A ``kfp.Client`` for the host, after the access check (single-user: multi-user clients skip kfp's
    own health check, and so does this)."""
    import kfp

    if target.namespace is None:
        check_kfp_access(target)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        # "only works with KFP v2.0.0-beta.2 and later": v2beta1 is all we use
        warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
        return kfp.Client(host=target.host, namespace=target.namespace or "kubeflow",
                          **target.credentials.client_arguments())


def _kfp_client_and_experiment(target: KfpTarget) -> tuple[Any, str]:
    """A ``kfp.Client`` for the host and the id of the target experiment (created when missing)."""
    client = _kfp_client(target)
    with contextlib.redirect_stdout(sys.stderr):  # create_experiment prints "Experiment details: <link>"
        experiment = client.create_experiment(name=target.experiment, namespace=target.namespace)
    return client, experiment.experiment_id


def _kfp_runtime_config(arguments: PipelineArguments, target: KfpTarget) -> Any:
    """The run's parameters and pipeline root, as the KFP API takes them."""
    import kfp_server_api

    return kfp_server_api.V2beta1RuntimeConfig(parameters=arguments.parameters(), pipeline_root=target.pipeline_root)


def _kfp_run(target: KfpTarget, arguments: PipelineArguments, options: SubmitConfig, spec: dict[str, Any],
             labels: Mapping[str, str]) -> Submission:
    import kfp_server_api

    client, experiment_id = _kfp_client_and_experiment(target)
    name = options.run_name or default_run_name()
    run = kfp_server_api.V2beta1Run(
        experiment_id=experiment_id,
        display_name=name,
        description=_labels_text(labels),
        pipeline_spec=spec,
        runtime_config=_kfp_runtime_config(arguments, target),
        service_account=options.service_account,
    )
    created = client.runs.run_service_create_run(run=run)
    return Submission("kfp", "run", created.run_id, name, f"{target.host.rstrip('/')}/#/runs/details/{created.run_id}",
                      str(target), experiment=target.experiment)


def _kfp_recurring_run(target: KfpTarget, arguments: PipelineArguments, options: SubmitConfig,
                       when: ScheduleConfig, cron: str, name: str, spec: dict[str, Any],
                       labels: Mapping[str, str]) -> Submission:
    import kfp_server_api

    client, experiment_id = _kfp_client_and_experiment(target)
    recurring = kfp_server_api.V2beta1RecurringRun(
        experiment_id=experiment_id,
        display_name=name,
        description=_labels_text(labels),
        pipeline_spec=spec,
        runtime_config=_kfp_runtime_config(arguments, target),
        trigger=kfp_server_api.V2beta1Trigger(cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)),
        mode=kfp_server_api.RecurringRunMode.ENABLE,
        max_concurrency=str(when.max_concurrent_runs),
        no_catchup=not when.catch_up,
        service_account=options.service_account,
    )
    created = client.recurring_runs.recurring_run_service_create_recurring_run(recurring_run=recurring)
    run_id = created.recurring_run_id
    return Submission("kfp", "schedule", run_id, name, f"{target.host.rstrip('/')}/#/recurringrun/details/{run_id}",
                      str(target), cron, target.experiment)


def _vertex_job(target: VertexTarget, arguments: PipelineArguments, options: SubmitConfig, spec: dict[str, Any],
                labels: Mapping[str, str], display_name: str, credentials: Credentials | None) -> Any:
    """A ``PipelineJob`` (not yet sent) for the compiled spec, parameters, caching and labels."""
    import json

    from google.cloud import aiplatform

    _vertex_logs_to_stderr()
    with tempfile.TemporaryDirectory() as tmp:  # PipelineJob reads the template in its constructor
        template = Path(tmp) / "pipeline.json"
        template.write_text(json.dumps(spec), encoding="utf-8")
        return aiplatform.PipelineJob(
            display_name=display_name,
            template_path=str(template),
            pipeline_root=target.pipeline_root,
            parameter_values=arguments.parameters(),
            enable_caching=options.enable_caching,
            labels=dict(labels),
            project=target.project,
            location=target.region,
            credentials=credentials,
        )


def _vertex_run(target: VertexTarget, arguments: PipelineArguments, options: SubmitConfig, spec: dict[str, Any],
                labels: Mapping[str, str], credentials: Credentials | None) -> Submission:
    name = options.run_name or default_run_name()
    job = _vertex_job(target, arguments, options, spec, labels, name, credentials)
    job.submit(service_account=options.service_account, experiment=target.experiment)
    url = (f"https://console.cloud.google.com/vertex-ai/locations/{target.region}/pipelines/runs/"
           f"{job.job_id}?project={target.project}")
    return Submission("vertex", "run", job.resource_name, name, url, str(target), experiment=target.experiment)


def _vertex_schedule(target: VertexTarget, arguments: PipelineArguments, options: SubmitConfig,
                     when: ScheduleConfig, cron: str, name: str, spec: dict[str, Any], labels: Mapping[str, str],
                     credentials: Credentials | None) -> Submission:
    job = _vertex_job(target, arguments, options, spec, labels, options.run_name or PIPELINE_NAME, credentials)
    created = job.create_schedule(
        cron=cron,
        display_name=name,
        max_concurrent_run_count=when.max_concurrent_runs,
        service_account=options.service_account,
    )
    return Submission("vertex", "schedule", created.resource_name, name, None, str(target), cron)


class _CurrentStderr(io.TextIOBase):
    """Writes to ``sys.stderr`` as it is at each write (click's test runner and pytest swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _vertex_logs_to_stderr() -> None:
    """Point the Vertex SDK's log handlers, which it opens on stdout ("Creating PipelineJob", code snippets),
    at stderr: stdout is for what the command reports (``--output json`` must stay one document)."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("google.cloud.aiplatform") and isinstance(logger, logging.Logger):
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _CurrentStderr):
                    handler.setStream(_CurrentStderr())


# ----------------------------------------------------------------------------------------------- wait


WAIT_POLL_S = 15.0  # how often a followed run is asked for its state
HEARTBEAT_S = 300.0  # how often "still RUNNING" is said while nothing changes
# Where a run ends: KFP spells it CANCELED, Vertex AI CANCELLED (without its PIPELINE_STATE_ prefix).
FINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED", "CANCELLED"})


@dataclass(frozen=True)
class RunState:
    """One look at a submitted run: its state as the API names it (Vertex AI's without the
    ``PIPELINE_STATE_`` prefix), its error message once it failed, and how long it had been followed."""

    state: str
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "error": self.error, "elapsed_s": round(self.elapsed_s, 1)}


class WaitTimedOut(RuntimeError):
    """The run had not ended when the wait's timeout passed; it goes on. ``last`` is its last state."""

    def __init__(self, message: str, last: RunState) -> None:
        super().__init__(message)
        self.last = last


def wait_for_run(target: Target, submission: Submission, timeout_s: float | None = None,
                 poll_s: float = WAIT_POLL_S, progress: Callable[[str], None] = print,
                 credentials: Credentials | None = None) -> RunState:
    """Follow a submitted run until it ends; return its final state (``succeeded`` or not: the caller
    decides what a failure means). ``progress`` gets one line per state change and a heartbeat every
    ``HEARTBEAT_S``; WaitTimedOut after ``timeout_s`` (None: no limit).

    Why not the SDKs' own waits: ``kfp.Client.wait_for_run_completion`` never ends on a cancelled run
    (CANCELED is not among its finished states) and reports nothing; ``PipelineJob.wait`` has no timeout.
    """
    if submission.kind != "run":
        raise ValueError("only a run can be waited for, not a schedule")
    poll = _run_poller(target, submission.resource, credentials)
    return _follow(poll, submission.display_name, timeout_s, poll_s, progress)


def _follow(poll: Callable[[], RunState], name: str, timeout_s: float | None, poll_s: float,
            progress: Callable[[str], None]) -> RunState:
    """Poll until the run ends or ``timeout_s`` passes, saying each new state and a periodic heartbeat."""
    start = time.monotonic()
    said, said_at = None, start
    while True:
        now = time.monotonic()
        current = dataclasses.replace(poll(), elapsed_s=now - start)
        if current.state != said or now - said_at >= HEARTBEAT_S:
            still = "still " if current.state == said else ""
            progress(f"{name}: {still}{current.state} after {_duration(current.elapsed_s)}")
            said, said_at = current.state, now
        if current.done:
            return current
        remaining = None if timeout_s is None else timeout_s - (time.monotonic() - start)
        if remaining is not None and remaining <= 0:
            raise WaitTimedOut(f"{name} is still {current.state} at the wait's {timeout_s:g} s timeout; the run "
                               "goes on", current)
        time.sleep(poll_s if remaining is None else min(poll_s, remaining))


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _run_poller(target: Target, resource: str, credentials: Credentials | None) -> Callable[[], RunState]:
    """A function that asks ``target`` for the state of run ``resource`` (KFP run id, Vertex resource name)."""
    if isinstance(target, KfpTarget):
        client = _kfp_client(target)
        return lambda: _kfp_state(client.get_run(resource))
    from google.cloud import aiplatform

    _vertex_logs_to_stderr()
    job = aiplatform.PipelineJob.get(resource, project=target.project, location=target.region,
                                     credentials=credentials)
    looks = itertools.count()

    def poll() -> RunState:
        state = job.state if next(looks) else job.gca_resource.state  # ``state`` reads the job again
        return RunState(state.name.removeprefix("PIPELINE_STATE_"), job.gca_resource.error.message or None)

    return poll


def _kfp_state(run: Any) -> RunState:
    """A KFP ``V2beta1Run`` → RunState (its ``error`` is a google.rpc Status)."""
    return RunState(run.state or "RUNTIME_STATE_UNSPECIFIED", (run.error.message or None) if run.error else None)

