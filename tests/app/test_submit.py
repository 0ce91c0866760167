"""Submitting the pipeline to Kubeflow Pipelines and Vertex AI, and scheduling it.

Kubeflow: a real HTTP server (stdlib, in a thread) answers the ``/apis/v2beta1`` endpoints that the real
``kfp.Client`` calls, and records every request; the assertions read the requests as the server got them.

Vertex AI: the real ``google.cloud.aiplatform`` SDK builds and sends the requests with anonymous
credentials; only the two Vertex API methods at the bottom (the GAPIC ``create_pipeline_job`` and
``create_schedule``) are replaced, to record the request and answer as the service would. The SDK's own
bucket check for the pipeline root goes to the in-process GCS emulator (``gcs_emulator`` fixture). A
tripwire on the Resource Manager project lookup proves no request leaves the machine.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from fashionrec.app import submit as submit_module
from fashionrec.app.cli import main
from fashionrec.config import PipelineConfig, TrainConfig
from fashionrec.app.submit import (
    KfpCredentials,
    KfpTarget,
    PipelineArguments,
    ScheduleConfig,
    SubmitConfig,
    VertexTarget,
    schedule,
    submit,
    validate_cron,
)
from pipelines.training import PIPELINE_NAME

IMAGE = "europe-docker.pkg.dev/shop/fashionrec/component:2026.11.1"
MODEL_REPOSITORY = "gs://shop-models/fashionrec/model_repository"
ROOT_TASKS = {"prepare-dataset", "ingest-data", "transform-data", "train-model", "export-embeddings",
              "evaluate-model"}
API = "/apis/v2beta1"
PARAMETERS = {"model_repository", "dataset", "data_dir", *(f"{name}_config" for name in PipelineConfig().sections())}
# As compiled: every component task caches; the gate's condition task has no caching options of its own.
COMPILED_CACHING = {**{task: True for task in ROOT_TASKS | {"publish-model"}}, "condition-1": False}


# ------------------------------------------------------------------------------ a fake KFP API server


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeKfp:
    """What the fake Kubeflow Pipelines API server received, and the experiments it knows."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    experiments: list[dict[str, str]] = field(default_factory=list)
    multi_user: bool = False
    refuse_runs: int | None = None  # an HTTP status to answer POST /runs with (e.g. 403: not allowed)
    required_token: str | None = None  # when set, any request without "Authorization: Bearer <it>" gets 401

    def paths(self) -> list[tuple[str, str]]:
        return [(request.method, request.path) for request in self.requests]

    def one(self, method: str, path: str) -> Recorded:
        (found,) = [r for r in self.requests if (r.method, r.path) == (method, API + path)]
        return found


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> Recorded:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Recorded(self.command, parts.path, parse_qs(parts.query), json.loads(raw) if raw else None,
                               {name.lower(): value for name, value in self.headers.items()})
            state.requests.append(request)
            return request

        def _unauthorised(self, request: Recorded) -> bool:
            if state.required_token and request.headers.get("authorization") != f"Bearer {state.required_token}":
                self._answer(401, {"code": 16, "message": "Request had invalid authentication credentials"})
                return True
            return False

        def do_GET(self) -> None:
            request = self._record()
            if self._unauthorised(request):
                return
            if request.path == f"{API}/healthz":
                return self._answer(200, {"multi_user": state.multi_user})
            if request.path == f"{API}/experiments":
                wanted = json.loads(request.query["filter"][0])["predicates"][0]["stringValue"]
                found = [e for e in state.experiments if e["display_name"] == wanted]
                return self._answer(200, {"experiments": found, "total_size": len(found)} if found else {})
            self._answer(404, {"code": 5, "message": f"no route {request.path}"})

        def do_POST(self) -> None:
            request = self._record()
            if self._unauthorised(request):
                return
            body = request.body or {}
            if request.path == f"{API}/experiments":
                experiment = {"experiment_id": f"exp-{len(state.experiments) + 1}", **body}
                state.experiments.append(experiment)
                return self._answer(200, experiment)
            if request.path == f"{API}/runs" and state.refuse_runs:
                return self._answer(state.refuse_runs, {"code": 7, "message": "user is not allowed to create runs"})
            if request.path == f"{API}/runs":
                return self._answer(200, {**body, "run_id": "run-42", "state": "PENDING"})
            if request.path == f"{API}/recurringruns":
                return self._answer(200, {**body, "recurring_run_id": "rr-7", "status": "ENABLED"})
            self._answer(404, {"code": 5, "message": f"no route {request.path}"})

    return Handler


@pytest.fixture
def kfp_server() -> Iterator[FakeKfp]:
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _spec(spec_json: dict[str, Any]) -> pipeline_spec_pb2.PipelineSpec:
    """The request's pipeline spec, parsed strictly (unknown fields fail) into the KFP proto."""
    return json_format.ParseDict(spec_json, pipeline_spec_pb2.PipelineSpec())


def _caching_by_task(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, bool]:
    """enableCache of every task of every DAG (root and the gate's sub-DAG)."""
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    return {name: task.caching_options.enable_cache for dag in dags for name, task in dag.tasks.items()}


def _assert_pipeline(spec: pipeline_spec_pb2.PipelineSpec, image: str) -> None:
    assert spec.pipeline_info.name == PIPELINE_NAME
    assert ROOT_TASKS <= set(spec.root.dag.tasks)
    assert "publish-model" in _caching_by_task(spec)  # inside the gate's condition
    executors = spec.deployment_spec["executors"]
    assert len(executors) == 7
    assert {executor["container"]["image"] for executor in executors.values()} == {image}
    assert set(spec.root.input_definitions.parameters) == PARAMETERS


# ------------------------------------------------------------------------------------------------ KFP


def test_kfp_submit_creates_the_experiment_and_a_run_with_spec_parameters_labels_and_no_cache(kfp_server):
    result = CliRunner().invoke(main, [
        "pipeline", "submit", "--kfp-host", kfp_server.url, "--experiment", "weekly-retraining",
        "--run-name", "nov-retrain", "--image", IMAGE, "--model-repository", MODEL_REPOSITORY,
        "--dataset", "hm", "--data-dir", "gs://shop-data/hm", "--set", "train.epochs=7",
        "--label", "team=recsys", "--pipeline-root", "gs://shop-kfp/root", "--service-account", "pipeline-runner",
        "--no-cache",
    ])
    assert result.exit_code == 0, result.output
    assert "run-42" in result.output and f"{kfp_server.url}/#/runs/details/run-42" in result.output

    assert kfp_server.paths() == [("GET", f"{API}/healthz"),  # the access check, then kfp.Client's own
                                  ("GET", f"{API}/healthz"), ("GET", f"{API}/experiments"),
                                  ("POST", f"{API}/experiments"), ("POST", f"{API}/runs")]
    lookup = kfp_server.one("GET", "/experiments")
    assert json.loads(lookup.query["filter"][0])["predicates"] == [
        {"operation": 1, "key": "display_name", "stringValue": "weekly-retraining"}]  # 1 = EQUALS
    assert kfp_server.one("POST", "/experiments").body["display_name"] == "weekly-retraining"

    run = kfp_server.one("POST", "/runs").body
    assert run["experiment_id"] == "exp-1"
    assert run["display_name"] == "nov-retrain"
    assert run["description"] == "labels: app=fashionrec, dataset=hm, team=recsys, trigger=manual"
    assert run["service_account"] == "pipeline-runner"
    assert run["runtime_config"]["pipeline_root"] == "gs://shop-kfp/root"
    parameters = run["runtime_config"]["parameters"]
    assert set(parameters) == PARAMETERS
    assert parameters["model_repository"] == MODEL_REPOSITORY
    assert (parameters["dataset"], parameters["data_dir"]) == ("hm", "gs://shop-data/hm")
    expected = PipelineConfig().with_overrides({"train.epochs": 7})
    assert TrainConfig.from_json(parameters["train_config"]).epochs == 7
    assert {name: parameters[f"{name}_config"] for name in expected.sections()} == {
        name: section.to_json() for name, section in expected.sections().items()}
    spec = _spec(run["pipeline_spec"])
    _assert_pipeline(spec, IMAGE)
    caching = _caching_by_task(spec)
    assert len(caching) == 8 and not any(caching.values())  # 7 tasks + the condition, publish included


def test_kfp_submit_reuses_an_existing_experiment_and_keeps_compiled_caching(kfp_server):
    kfp_server.experiments.append({"experiment_id": "exp-existing", "display_name": "fashionrec"})
    submission = submit(KfpTarget(host=kfp_server.url), PipelineArguments(model_repository=MODEL_REPOSITORY),
                        SubmitConfig(image=IMAGE))
    assert submission.resource == "run-42" and submission.kind == "run"
    assert ("POST", f"{API}/experiments") not in kfp_server.paths()
    run = kfp_server.one("POST", "/runs").body
    assert run["experiment_id"] == "exp-existing"
    assert run["display_name"].startswith(f"{PIPELINE_NAME}-")
    assert run["runtime_config"]["parameters"] == PipelineArguments(model_repository=MODEL_REPOSITORY).parameters()
    assert "pipeline_root" not in run["runtime_config"]  # the deployment's default artifact store
    assert _caching_by_task(_spec(run["pipeline_spec"])) == COMPILED_CACHING


def test_kfp_multi_user_namespace_goes_to_the_experiment_and_skips_the_health_probe(kfp_server):
    submit(KfpTarget(host=kfp_server.url, namespace="team-recsys"),
           PipelineArguments(model_repository=MODEL_REPOSITORY), SubmitConfig(image=IMAGE))
    assert ("GET", f"{API}/healthz") not in kfp_server.paths()
    assert kfp_server.one("GET", "/experiments").query["namespace"] == ["team-recsys"]
    assert kfp_server.one("POST", "/experiments").body["namespace"] == "team-recsys"


def test_kfp_schedule_creates_a_weekly_recurring_run_without_cache(kfp_server):
    result = CliRunner().invoke(main, [
        "pipeline", "schedule", "--kfp-host", kfp_server.url, "--image", IMAGE,
        "--model-repository", MODEL_REPOSITORY, "--dataset", "canonical", "--data-dir", "gs://shop-data/latest",
    ])
    assert result.exit_code == 0, result.output
    assert "rr-7" in result.output
    recurring = kfp_server.one("POST", "/recurringruns").body
    # Kubeflow's scheduler reads six fields, seconds first: Mondays 03:00:00 UTC.
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert recurring["mode"] == "ENABLE"
    assert recurring["max_concurrency"] == "1"
    assert recurring["no_catchup"] is True
    assert recurring["display_name"] == f"{PIPELINE_NAME}-schedule"
    assert recurring["experiment_id"] == "exp-1"
    assert recurring["description"] == "labels: app=fashionrec, dataset=canonical, trigger=schedule"
    assert recurring["runtime_config"]["parameters"]["data_dir"] == "gs://shop-data/latest"
    spec = _spec(recurring["pipeline_spec"])
    _assert_pipeline(spec, IMAGE)
    assert not any(_caching_by_task(spec).values())  # each week must read the new data


def test_kfp_schedule_takes_a_custom_cron_and_concurrency(kfp_server):
    schedule(KfpTarget(host=kfp_server.url), PipelineArguments(model_repository=MODEL_REPOSITORY),
             SubmitConfig(image=IMAGE, enable_caching=True),
             ScheduleConfig(cron="30 1 * * MON-FRI", max_concurrent_runs=2, catch_up=True, display_name="nightly"))
    recurring = kfp_server.one("POST", "/recurringruns").body
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 30 1 * * MON-FRI"
    assert (recurring["max_concurrency"], recurring["no_catchup"], recurring["display_name"]) == ("2", False, "nightly")
    assert all(_caching_by_task(_spec(recurring["pipeline_spec"])).values())


# --------------------------------------------------------------------------------------------- Vertex


@dataclass
class VertexCalls:
    pipeline_jobs: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    project_lookups: list[str] = field(default_factory=list)


@pytest.fixture
def vertex_api(monkeypatch) -> VertexCalls:
    """Record the Vertex AI API calls the SDK makes and answer them as the service does."""
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
    from google.cloud.aiplatform_v1.types import PipelineJob, PipelineState, Schedule
    from google.cloud.resourcemanager_v3 import ProjectsClient

    calls = VertexCalls()

    def create_pipeline_job(self, request=None, *, parent=None, pipeline_job=None, pipeline_job_id=None, **_):
        calls.pipeline_jobs.append({"parent": parent, "pipeline_job_id": pipeline_job_id,
                                    "job": json_format.MessageToDict(PipelineJob.pb(pipeline_job))})
        created = PipelineJob.deserialize(PipelineJob.serialize(pipeline_job))
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        created.state = PipelineState.PIPELINE_STATE_PENDING
        return created

    def create_schedule(self, request=None, *, parent=None, schedule=None, **_):
        calls.schedules.append({"parent": parent, "schedule": json_format.MessageToDict(Schedule.pb(schedule))})
        created = Schedule.deserialize(Schedule.serialize(schedule))
        created.name = f"{parent}/schedules/8675309"
        created.state = Schedule.State.ACTIVE
        return created

    def get_project(self, request=None, *, name=None, **_):  # tripwire: would leave the machine
        calls.project_lookups.append(name)
        raise RuntimeError("unexpected Resource Manager lookup")

    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_pipeline_job)
    monkeypatch.setattr(ScheduleServiceClient, "create_schedule", create_schedule)
    monkeypatch.setattr(ProjectsClient, "get_project", get_project)
    return calls


def _anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def _vertex_target() -> VertexTarget:
    # A bucket of its own per test (the emulator is shared): the SDK creates it for the pipeline root.
    return VertexTarget(project="shop-ml", region="europe-west4",
                        pipeline_root=f"gs://vertex-root-{uuid.uuid4().hex[:12]}/fashionrec")


SERVICE_ACCOUNT = "pipelines@shop-ml.iam.gserviceaccount.com"


def test_vertex_submit_sends_one_pipeline_job_with_everything_set(vertex_api, gcs_emulator):
    from google.cloud import storage

    target = _vertex_target()
    arguments = PipelineArguments(model_repository=MODEL_REPOSITORY, dataset="movielens-1m",
                                  data_dir="gs://shop-data/ml-1m",
                                  config=PipelineConfig().with_overrides({"train.epochs": 2}))
    submission = submit(target, arguments,
                        SubmitConfig(image=IMAGE, run_name="ml-1m-check", enable_caching=False,
                                     labels={"team": "recsys"}, service_account=SERVICE_ACCOUNT),
                        credentials=_anonymous())

    (call,) = vertex_api.pipeline_jobs
    assert call["parent"] == "projects/shop-ml/locations/europe-west4"
    assert call["pipeline_job_id"].startswith(f"{PIPELINE_NAME}-")
    job = call["job"]
    assert job["displayName"] == "ml-1m-check"
    assert job["serviceAccount"] == SERVICE_ACCOUNT
    assert job["labels"] == {"app": "fashionrec", "dataset": "movielens-1m", "trigger": "manual", "team": "recsys"}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == target.pipeline_root
    assert job["runtimeConfig"]["parameterValues"] == arguments.parameters()
    spec = _spec(job["pipelineSpec"])
    _assert_pipeline(spec, IMAGE)
    caching = _caching_by_task(spec)
    assert len(caching) == 8 and not any(caching.values())

    assert submission.resource == f"projects/shop-ml/locations/europe-west4/pipelineJobs/{call['pipeline_job_id']}"
    assert submission.url == ("https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
                              f"{call['pipeline_job_id']}?project=shop-ml")
    # The SDK created the pipeline-root bucket (in the emulator) and let the run's service account use it.
    bucket = storage.Client(project="shop-ml").bucket(target.pipeline_root.removeprefix("gs://").split("/")[0])
    assert bucket.exists()
    policy = bucket.get_iam_policy()
    assert f"serviceAccount:{SERVICE_ACCOUNT}" in policy["roles/storage.objectCreator"]
    assert vertex_api.project_lookups == [] and vertex_api.schedules == []


def test_vertex_submit_without_no_cache_keeps_the_compiled_caching(vertex_api, gcs_emulator):
    submit(_vertex_target(), PipelineArguments(model_repository=MODEL_REPOSITORY),
           SubmitConfig(image=IMAGE, service_account=SERVICE_ACCOUNT), credentials=_anonymous())
    (call,) = vertex_api.pipeline_jobs
    assert _caching_by_task(_spec(call["job"]["pipelineSpec"])) == COMPILED_CACHING
    assert call["job"]["displayName"].startswith(f"{PIPELINE_NAME}-")


def test_vertex_schedule_creates_a_weekly_schedule_in_the_time_zone(vertex_api, gcs_emulator):
    target = _vertex_target()
    arguments = PipelineArguments(model_repository=MODEL_REPOSITORY, dataset="canonical",
                                  data_dir="gs://shop-data/latest")
    submission = schedule(target, arguments,
                          SubmitConfig(image=IMAGE, enable_caching=False, service_account=SERVICE_ACCOUNT),
                          ScheduleConfig(time_zone="Europe/Berlin"), credentials=_anonymous())

    assert vertex_api.pipeline_jobs == []  # a schedule starts runs itself
    (call,) = vertex_api.schedules
    assert call["parent"] == "projects/shop-ml/locations/europe-west4"
    created = call["schedule"]
    assert created["displayName"] == f"{PIPELINE_NAME}-schedule"
    assert created["cron"] == "TZ=Europe/Berlin 0 3 * * 1"
    assert created["maxConcurrentRunCount"] == "1"  # int64 → JSON string
    assert "allowQueueing" not in created  # a late run is skipped, not stacked
    request = created["createPipelineJobRequest"]
    assert request["parent"] == "projects/shop-ml/locations/europe-west4"
    job = request["pipelineJob"]
    assert job["serviceAccount"] == SERVICE_ACCOUNT
    assert job["labels"] == {"app": "fashionrec", "dataset": "canonical", "trigger": "schedule"}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == target.pipeline_root
    assert job["runtimeConfig"]["parameterValues"] == arguments.parameters()
    spec = _spec(job["pipelineSpec"])
    _assert_pipeline(spec, IMAGE)
    assert not any(_caching_by_task(spec).values())
    assert submission.resource == "projects/shop-ml/locations/europe-west4/schedules/8675309"
    assert vertex_api.project_lookups == []


# ------------------------------------------------------------------------------------- argument errors


def _invoke(*args: str):
    return CliRunner().invoke(main, ["pipeline", *args])


@pytest.mark.parametrize("args, message", [
    (["submit", "--vertex", "--region", "europe-west4", "--pipeline-root", "gs://b/r"], "--vertex needs --project"),
    (["submit", "--vertex", "--project", "p"], "--vertex needs --region, --pipeline-root"),
    (["submit", "--vertex", "--kfp-host", "http://kfp:8080", "--project", "p", "--region", "r",
      "--pipeline-root", "gs://b/r"], "choose exactly one target"),
    (["submit"], "choose exactly one target"),
    (["submit", "--kfp-host", "http://kfp:8080", "--project", "p"], "--project and --region are Vertex AI options"),
    (["submit", "--vertex", "--project", "p", "--region", "r", "--pipeline-root", "gs://b/r",
      "--experiment", "x"], "--experiment, --namespace and --kfp-sa-token are Kubeflow Pipelines options"),
    (["submit", "--vertex", "--project", "p", "--region", "r", "--pipeline-root", "gs://b/r",
      "--kfp-sa-token", "/var/run/token"], "--kfp-sa-token are Kubeflow Pipelines options"),
    (["submit", "--kfp-host", "kfp:8080"], "expected http(s)://HOST"),
    (["submit", "--kfp-host", "http://kfp:8080", "--model-repository", "/tmp/repo"],
     "--model-repository must be a gs:// URI"),
    (["submit", "--kfp-host", "http://kfp:8080", "--dataset", "hm"], "dataset 'hm' needs --data-dir gs://"),
    (["submit", "--kfp-host", "http://kfp:8080", "--dataset", "hm", "--data-dir", "/data/hm"],
     "--data-dir must be a gs:// URI"),
    (["submit", "--vertex", "--project", "p", "--region", "r", "--pipeline-root", "/tmp/root"],
     "--pipeline-root must be a gs:// URI"),
    (["submit", "--kfp-host", "http://kfp:8080", "--image", "ghcr.io/fashionrec/fashionrec"], "has no tag"),
    (["submit", "--kfp-host", "http://kfp:8080", "--image", "ghcr.io/fashionrec/fashionrec:latest"], "latest"),
    (["submit", "--kfp-host", "http://kfp:8080", "--label", "Team=recsys"], "label key 'Team'"),
    (["submit", "--kfp-host", "http://kfp:8080", "--label", "team"], "expected a label KEY=VALUE"),
    (["submit", "--kfp-host", "http://kfp:8080", "--set", "train.nope=1"], "train.nope: unknown field 'nope' in train"),
    (["schedule", "--kfp-host", "http://kfp:8080", "--cron", "0 3 * *"], "expected 5 fields"),
    (["schedule", "--kfp-host", "http://kfp:8080", "--cron", "0 24 * * 1"], "hour 24 is outside 0-23"),
    (["schedule", "--kfp-host", "http://kfp:8080", "--cron", "0 3 * * 7"], "day-of-week 7 is outside 0-6"),
    (["schedule", "--kfp-host", "http://kfp:8080", "--cron", "0 3 * * MON", "--time-zone", "Europe/Berlin"],
     "Kubeflow Pipelines schedules run in UTC"),
    (["schedule", "--vertex", "--project", "p", "--region", "r", "--pipeline-root", "gs://b/r",
      "--time-zone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
])
def test_argument_errors_are_usage_errors_with_the_reason(args, message):
    if "--model-repository" not in args:
        args = [*args, "--model-repository", MODEL_REPOSITORY]
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_kfp_host_is_one_line_naming_it():
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = _invoke("submit", "--kfp-host", host, "--model-repository", MODEL_REPOSITORY)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot reach Kubeflow Pipelines at {host}: ")
    assert "Connection refused" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_refused_run_is_one_line_with_the_servers_reason(kfp_server):
    kfp_server.refuse_runs = 403
    result = _invoke("submit", "--kfp-host", kfp_server.url, "--model-repository", MODEL_REPOSITORY)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert error == f"Error: Kubeflow Pipelines at {kfp_server.url} answered 403 Forbidden: user is not allowed to create runs"


def test_missing_model_repository_is_reported_by_name():
    result = _invoke("submit", "--kfp-host", "http://kfp:8080")
    assert result.exit_code == 2
    assert "Missing option '--model-repository'" in result.output


@pytest.mark.parametrize("expression", ["0 3 * * 1", "*/15 * * * *", "0 0 1,15 * *", "30 2 * JAN-MAR SUN",
                                        "0 9-17/2 * * MON-FRI", "  5   4 * * 0 "])
def test_valid_cron_expressions_pass_normalised(expression):
    assert validate_cron(expression) == " ".join(expression.split())


@pytest.mark.parametrize("expression, message", [
    ("60 * * * *", "minute 60 is outside 0-59"), ("0 0 0 * *", "day-of-month 0 is outside 1-31"),
    ("0 0 * 13 *", "month 13 is outside 1-12"), ("0 0 * * FUN", "'FUN' is not a day-of-week value"),
    ("*/0 * * * *", "step 0"), ("0 5-2 * * *", "runs backwards"), ("0 0 ? * *", "cannot read '?'"),
    ("@weekly", "expected 5 fields"),
])
def test_invalid_cron_expressions_say_which_field(expression, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("*", r"\*")):
        validate_cron(expression)


def test_submit_module_names_the_pipeline_it_compiles():
    assert submit_module.PIPELINE_NAME == PIPELINE_NAME


# ------------------------------------------------------------------------------- authenticated Kubeflow


def test_kfp_token_from_the_environment_goes_with_every_request(kfp_server, monkeypatch):
    kfp_server.required_token = "secret-token"
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    result = CliRunner().invoke(main, ["pipeline", "submit", "--kfp-host", kfp_server.url, "--image", IMAGE,
                                       "--model-repository", MODEL_REPOSITORY])
    assert result.exit_code == 0, result.output
    assert kfp_server.requests and all(r.headers["authorization"] == "Bearer secret-token"
                                       for r in kfp_server.requests)
    assert "secret-token" not in result.output


def test_kfp_login_cookies_from_the_environment_go_with_every_request(kfp_server, monkeypatch):
    monkeypatch.setenv("KFP_COOKIES", "authservice_session=abc123")
    submit(KfpTarget(host=kfp_server.url, namespace="team-recsys", credentials=KfpCredentials.from_environment()),
           PipelineArguments(model_repository=MODEL_REPOSITORY), SubmitConfig(image=IMAGE))
    assert all(r.headers["cookie"] == "authservice_session=abc123" for r in kfp_server.requests)


def test_kfp_in_cluster_service_account_token_file_is_the_bearer(kfp_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("projected-sa-token")
    kfp_server.required_token = "projected-sa-token"
    result = CliRunner().invoke(main, ["pipeline", "submit", "--kfp-host", kfp_server.url, "--image", IMAGE,
                                       "--model-repository", MODEL_REPOSITORY, "--kfp-sa-token", str(token)])
    assert result.exit_code == 0, result.output
    assert all(r.headers["authorization"] == "Bearer projected-sa-token" for r in kfp_server.requests)


def test_refused_kfp_credentials_are_one_line_saying_how_to_authenticate(kfp_server, monkeypatch):
    kfp_server.required_token = "the-right-one"
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["pipeline", "submit", "--kfp-host", kfp_server.url, "--image", IMAGE,
                                       "--model-repository", MODEL_REPOSITORY])
    assert result.exit_code == 1
    message = result.output.strip().splitlines()
    assert len(message) == 1 and "answered 401" in message[0] and "$KFP_TOKEN" in message[0]


def test_kfp_credentials_never_show_in_repr():
    shown = repr(KfpTarget(host="https://kfp.example", credentials=KfpCredentials("tok-123", "session=xyz")))
    assert "tok-123" not in shown and "xyz" not in shown


def test_kfp_submit_with_a_train_gpu_sends_the_train_task_on_the_gpu_image(kfp_server):
    gpu_image = "ghcr.io/fashionrec/fashionrec-gpu:0.1.0"
    result = CliRunner().invoke(main, ["pipeline", "submit", "--kfp-host", kfp_server.url, "--image", IMAGE,
                                       "--model-repository", MODEL_REPOSITORY, "--train-gpu", "nvidia.com/gpu:1",
                                       "--train-image", gpu_image])
    assert result.exit_code == 0, result.output
    executors = kfp_server.one("POST", "/runs").body["pipeline_spec"]["deploymentSpec"]["executors"]
    train = executors["exec-train-model"]["container"]
    assert train["image"] == gpu_image
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] == "1"
    assert {e["container"]["image"] for name, e in executors.items() if name != "exec-train-model"} == {IMAGE}


def test_a_train_gpu_without_its_image_is_a_usage_error():
    result = _invoke("submit", "--kfp-host", "http://kfp:8080", "--model-repository", MODEL_REPOSITORY,
                     "--train-gpu", "NVIDIA_L4")
    assert result.exit_code == 2 and "--train-gpu and --train-image go together" in result.output
