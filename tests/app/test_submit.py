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
import re
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
    run_states: list[str] = field(default_factory=lambda: ["SUCCEEDED"])  # GET /runs/{id} answers, the last repeats
    run_error: str = ""  # the run's error message, sent with a FAILED or CANCELED state

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
            if request.path.startswith(f"{API}/runs/"):
                return self._answer(200, self._run(request.path.rsplit("/", 1)[1]))
            self._answer(404, {"code": 5, "message": f"no route {request.path}"})

        def _run(self, run_id: str) -> dict[str, Any]:
            run_state = state.run_states.pop(0) if len(state.run_states) > 1 else state.run_states[0]
            error = {"error": {"code": 9, "message": state.run_error}} if run_state in ("FAILED", "CANCELED") else {}
            return {"run_id": run_id, "display_name": "nov-retrain", "state": run_state, **error}

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


def _kfp_args(server: FakeKfp, *more: str) -> list[str]:
    return ["pipeline", "submit", "--kfp-host", server.url, "--image", IMAGE, "--model-repository", MODEL_REPOSITORY,
            *more]


SUBMITTED = [("GET", f"{API}/healthz"), ("GET", f"{API}/healthz"), ("GET", f"{API}/experiments"),
             ("POST", f"{API}/experiments"), ("POST", f"{API}/runs")]
FOLLOWED = [("GET", f"{API}/healthz"), ("GET", f"{API}/healthz")]  # the wait's own client


def test_kfp_submit_output_json_is_one_document_on_stdout(kfp_server):
    result = CliRunner().invoke(main, ["--output", "json", *_kfp_args(kfp_server, "--run-name", "nov-retrain")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "target": "kfp", "endpoint": f"Kubeflow Pipelines at {kfp_server.url}", "kind": "run", "id": "run-42",
        "display_name": "nov-retrain", "url": f"{kfp_server.url}/#/runs/details/run-42", "experiment": "fashionrec",
        "cron": None}
    assert "Experiment details:" in result.stderr  # kfp.Client's own print, kept off stdout
    assert kfp_server.paths() == SUBMITTED


def test_kfp_submit_wait_follows_the_run_to_success_with_progress_on_stderr(kfp_server):
    kfp_server.run_states = ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    result = CliRunner().invoke(main, [*_kfp_args(kfp_server, "--run-name", "nov-retrain"), "--wait",
                                       "--poll-interval", "0.01"])
    assert result.exit_code == 0, result.output
    assert kfp_server.paths() == SUBMITTED + FOLLOWED + [("GET", f"{API}/runs/run-42")] * 4
    assert result.stdout.splitlines()[:2] == ["Created kfp run 'nov-retrain': run-42",
                                              f"{kfp_server.url}/#/runs/details/run-42"]
    assert result.stdout.splitlines()[2].startswith("Run 'nov-retrain' SUCCEEDED after ")
    progress = [line for line in result.stderr.splitlines() if line.startswith("nov-retrain: ")]
    assert [line.split(" after ")[0] for line in progress] == [
        "nov-retrain: PENDING", "nov-retrain: RUNNING", "nov-retrain: SUCCEEDED"]  # state changes only


@pytest.mark.parametrize("final", ["FAILED", "CANCELED"])
def test_kfp_submit_wait_exits_1_with_one_line_when_the_run_does_not_succeed(kfp_server, final):
    kfp_server.run_states = ["RUNNING", final]
    kfp_server.run_error = "task train-model failed:\nOOMKilled"
    result = CliRunner().invoke(main, ["--output", "json", *_kfp_args(kfp_server, "--run-name", "nov-retrain"),
                                       "--wait", "--poll-interval", "0.01"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert (document["id"], document["state"], document["error"], document["timed_out"]) == (
        "run-42", final, "task train-model failed:\nOOMKilled", False)
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert error == (f"Error: Kubeflow Pipelines at {kfp_server.url} run 'nov-retrain' ended {final}: "
                     "task train-model failed: OOMKilled")
    assert "Traceback" not in result.output


def test_kfp_submit_wait_gives_up_after_the_timeout_with_exit_4(kfp_server):
    kfp_server.run_states = ["RUNNING"]
    result = CliRunner().invoke(main, ["--output", "json", *_kfp_args(kfp_server, "--run-name", "nov-retrain"),
                                       "--wait", "--timeout", "0.3", "--poll-interval", "0.05"])
    assert result.exit_code == 4, result.output
    document = json.loads(result.stdout)
    assert (document["state"], document["timed_out"]) == ("RUNNING", True)
    assert 0.3 <= document["elapsed_s"] < 5
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: Kubeflow Pipelines at {kfp_server.url}: nov-retrain is still RUNNING at the wait's 0.3 s timeout; "
        "the run goes on")
    assert kfp_server.paths()[len(SUBMITTED) + len(FOLLOWED):] == [("GET", f"{API}/runs/run-42")] * len(
        kfp_server.paths()[len(SUBMITTED) + len(FOLLOWED):])


def test_timeout_without_wait_is_a_usage_error():
    result = CliRunner().invoke(main, ["pipeline", "submit", "--kfp-host", "http://kfp:8080", "--model-repository",
                                       MODEL_REPOSITORY, "--timeout", "60"])
    assert result.exit_code == 2 and "--timeout goes with --wait" in result.output


def test_kfp_schedule_output_json_names_the_cron_the_scheduler_got(kfp_server):
    result = CliRunner().invoke(main, ["-o", "json", "pipeline", "schedule", "--kfp-host", kfp_server.url,
                                       "--image", IMAGE, "--model-repository", MODEL_REPOSITORY, "--cron", "30 1 * * *"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "target": "kfp", "endpoint": f"Kubeflow Pipelines at {kfp_server.url}", "kind": "schedule", "id": "rr-7",
        "display_name": f"{PIPELINE_NAME}-schedule", "url": f"{kfp_server.url}/#/recurringrun/details/rr-7",
        "experiment": "fashionrec", "cron": "0 30 1 * * *"}


def test_output_json_can_come_from_the_environment(kfp_server, monkeypatch):
    monkeypatch.setenv("FASHIONREC_OUTPUT", "json")
    result = CliRunner().invoke(main, _kfp_args(kfp_server))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "run-42"


# --------------------------------------------------------------------------------------------- Vertex


@dataclass
class VertexCalls:
    """What the replaced Vertex AI API methods received, and how the service is to answer."""

    pipeline_jobs: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    project_lookups: list[str] = field(default_factory=list)
    job_gets: list[str] = field(default_factory=list)  # get_pipeline_job names, in order
    metadata: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (method, request) in order
    states: list[str] = field(default_factory=lambda: ["PIPELINE_STATE_SUCCEEDED"])  # get answers, the last repeats
    error: str = ""  # the job's error message, sent with a FAILED or CANCELLED state
    refuse: Exception | None = None  # raised by create_pipeline_job (e.g. PermissionDenied: a 403)
    jobs: dict[str, Any] = field(default_factory=dict)
    contexts: dict[str, Any] = field(default_factory=dict)  # the metadata store's contexts by name


def _message(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(type(message).pb(message))


@pytest.fixture
def vertex_api(monkeypatch) -> VertexCalls:
    """Record the Vertex AI API calls the SDK makes and answer them as the service does: pipeline jobs and
    schedules, and the ML Metadata calls of a Vertex AI Experiment."""
    from google.api_core import exceptions as google_api
    from google.cloud.aiplatform_v1.services.metadata_service import MetadataServiceClient
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
    from google.cloud.aiplatform_v1.types import (AddContextChildrenResponse, Context, MetadataStore, PipelineJob,
                                                  PipelineState, Schedule)
    from google.cloud.resourcemanager_v3 import ProjectsClient

    calls = VertexCalls()

    def create_pipeline_job(self, request=None, *, parent=None, pipeline_job=None, pipeline_job_id=None, **_):
        calls.pipeline_jobs.append({"parent": parent, "pipeline_job_id": pipeline_job_id,
                                    "job": _message(pipeline_job)})
        if calls.refuse is not None:
            raise calls.refuse
        created = PipelineJob.deserialize(PipelineJob.serialize(pipeline_job))
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        created.state = PipelineState.PIPELINE_STATE_PENDING
        calls.jobs[created.name] = created
        return created

    def get_pipeline_job(self, request=None, *, name=None, **_):
        calls.job_gets.append(name)
        job = PipelineJob.deserialize(PipelineJob.serialize(calls.jobs[name]))
        state = calls.states.pop(0) if len(calls.states) > 1 else calls.states[0]
        job.state = PipelineState[state]
        job.job_detail.pipeline_run_context = Context(
            name=f"{name.split('/pipelineJobs/')[0]}/metadataStores/default/contexts/{name.rsplit('/', 1)[1]}",
            schema_title="system.PipelineRun")
        if state in ("PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"):
            job.error = {"code": 9, "message": calls.error}
        return job

    def create_schedule(self, request=None, *, parent=None, schedule=None, **_):
        calls.schedules.append({"parent": parent, "schedule": json_format.MessageToDict(Schedule.pb(schedule))})
        created = Schedule.deserialize(Schedule.serialize(schedule))
        created.name = f"{parent}/schedules/8675309"
        created.state = Schedule.State.ACTIVE
        return created

    def get_metadata_store(self, request=None, *, name=None, **_):
        calls.metadata.append(("get_metadata_store", {"name": name}))
        return MetadataStore(name=name)

    def get_context(self, request=None, *, name=None, **_):
        calls.metadata.append(("get_context", {"name": name}))
        if name not in calls.contexts:
            raise google_api.NotFound(f"Context {name} not found")
        return calls.contexts[name]

    def create_context(self, request=None, *, parent=None, context=None, context_id=None, **_):
        calls.metadata.append(("create_context", {"parent": parent, "context_id": context_id,
                                                  "context": _message(context)}))
        created = Context.deserialize(Context.serialize(context))
        created.name = f"{parent}/contexts/{context_id}"
        calls.contexts[created.name] = created
        return created

    def add_context_children(self, request=None, *, context=None, child_contexts=None, **_):
        calls.metadata.append(("add_context_children", {"context": context, "child_contexts": list(child_contexts)}))
        return AddContextChildrenResponse()

    def get_project(self, request=None, *, name=None, **_):  # tripwire: would leave the machine
        calls.project_lookups.append(name)
        raise RuntimeError("unexpected Resource Manager lookup")

    for client, methods in ((PipelineServiceClient, (create_pipeline_job, get_pipeline_job)),
                            (ScheduleServiceClient, (create_schedule,)),
                            (MetadataServiceClient, (get_metadata_store, get_context, create_context,
                                                     add_context_children)),
                            (ProjectsClient, (get_project,))):
        for method in methods:
            monkeypatch.setattr(client, method.__name__, method)
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


@pytest.fixture
def anonymous_adc(monkeypatch) -> None:
    """The Vertex SDK's default credentials (what it would take from Application Default Credentials) are
    anonymous: the command line passes none of its own."""
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer.global_config, "_credentials", _anonymous())


def _vertex_args(target: VertexTarget, *more: str) -> list[str]:
    return ["pipeline", "submit", "--vertex", "--project", target.project, "--region", target.region,
            "--pipeline-root", target.pipeline_root, "--image", IMAGE, "--model-repository", MODEL_REPOSITORY,
            "--service-account", SERVICE_ACCOUNT, *more]


STORE = "projects/shop-ml/locations/europe-west4/metadataStores/default"


def test_vertex_submit_joins_an_experiment_waits_for_success_and_prints_one_json_document(
        vertex_api, gcs_emulator, anonymous_adc):
    vertex_api.states = ["PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING", "PIPELINE_STATE_RUNNING",
                         "PIPELINE_STATE_SUCCEEDED"]
    target = _vertex_target()
    result = CliRunner().invoke(main, ["--output", "json", *_vertex_args(
        target, "--experiment", "weekly-retraining", "--run-name", "exp-run", "--wait", "--poll-interval", "0.01")])
    assert result.exit_code == 0, result.output

    (call,) = vertex_api.pipeline_jobs
    job_id = call["pipeline_job_id"]
    name = f"projects/shop-ml/locations/europe-west4/pipelineJobs/{job_id}"
    assert call["job"]["displayName"] == "exp-run" and call["job"]["serviceAccount"] == SERVICE_ACCOUNT
    experiment = f"{STORE}/contexts/weekly-retraining"
    # Before the job: the experiment is looked up in the default metadata store and, missing, created;
    # after it: looked up again and the run's own context (job_detail.pipeline_run_context) made its child.
    assert vertex_api.metadata == [
        ("get_metadata_store", {"name": STORE}),
        ("get_context", {"name": experiment}),
        ("create_context", {"parent": STORE, "context_id": "weekly-retraining", "context": {
            "displayName": "weekly-retraining", "schemaTitle": "system.Experiment", "schemaVersion": "0.0.1",
            "metadata": {"experiment_deleted": False}}}),
        ("get_metadata_store", {"name": STORE}),
        ("get_context", {"name": experiment}),
        ("add_context_children", {"context": experiment, "child_contexts": [f"{STORE}/contexts/{job_id}"]}),
    ]
    # One read for the run's context, one as the wait opens the job, then one per poll.
    assert vertex_api.job_gets == [name] * 4
    progress = [line.split(" after ")[0] for line in result.stderr.splitlines() if line.startswith("exp-run: ")]
    assert progress == ["exp-run: RUNNING", "exp-run: SUCCEEDED"]
    assert vertex_api.project_lookups == [] and vertex_api.schedules == []
    document = json.loads(result.stdout)  # the SDK's own log lines went to stderr
    assert document == {"target": "vertex", "endpoint": "Vertex AI Pipelines in shop-ml/europe-west4", "kind": "run",
                        "id": name, "display_name": "exp-run", "experiment": "weekly-retraining", "cron": None,
                        "url": "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
                               f"{job_id}?project=shop-ml",
                        "state": "SUCCEEDED", "error": None, "elapsed_s": document["elapsed_s"], "timed_out": False}


def test_vertex_submit_wait_exits_1_when_the_job_fails(vertex_api, gcs_emulator, anonymous_adc):
    vertex_api.states = ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"]
    vertex_api.error = "The DAG failed because some tasks failed. The failed tasks are: [train-model]."
    result = CliRunner().invoke(main, _vertex_args(_vertex_target(), "--run-name", "ml-1m", "--wait",
                                                   "--poll-interval", "0.01"))
    assert result.exit_code == 1
    (call,) = vertex_api.pipeline_jobs
    assert vertex_api.job_gets == [f"projects/shop-ml/locations/europe-west4/pipelineJobs/{call['pipeline_job_id']}"] * 2
    assert [line.split(" after ")[0] for line in result.stderr.splitlines() if line.startswith("ml-1m: ")] == [
        "ml-1m: RUNNING", "ml-1m: FAILED"]
    assert vertex_api.metadata == []  # no experiment named: none joined
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Vertex AI Pipelines in shop-ml/europe-west4 run 'ml-1m' ended FAILED: The DAG failed because some "
        "tasks failed. The failed tasks are: [train-model].")
    assert "Traceback" not in result.output


def test_a_vertex_schedule_cannot_join_an_experiment():
    result = CliRunner().invoke(main, ["pipeline", "schedule", "--vertex", "--project", "p", "--region", "r",
                                       "--pipeline-root", "gs://b/r", "--experiment", "weekly-retraining",
                                       "--model-repository", MODEL_REPOSITORY])
    assert result.exit_code == 2 and "Vertex AI schedules cannot put their runs in an experiment" in result.output


@pytest.mark.parametrize("refusal, status", [("PermissionDenied", "403"), ("Unauthenticated", "401")])
def test_refused_vertex_credentials_are_one_line_with_exit_3(vertex_api, gcs_emulator, anonymous_adc, refusal, status):
    from google.api_core import exceptions as google_api

    vertex_api.refuse = getattr(google_api, refusal)("Permission 'aiplatform.pipelineJobs.create' denied on "
                                                     "resource '//aiplatform.googleapis.com/projects/shop-ml'")
    result = CliRunner().invoke(main, _vertex_args(_vertex_target()))
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line == (f"Error: Vertex AI Pipelines in shop-ml/europe-west4 refused the credentials: {status} Permission "
                    "'aiplatform.pipelineJobs.create' denied on resource '//aiplatform.googleapis.com/projects/shop-ml'")
    assert "Traceback" not in result.output and len(vertex_api.pipeline_jobs) == 1


def test_missing_google_credentials_are_one_line_with_exit_3(tmp_path, monkeypatch):
    """No Application Default Credentials at all (the real google.auth lookup, pointed at a missing key file)."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    result = CliRunner().invoke(main, _vertex_args(_vertex_target()))
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: no Google credentials for Vertex AI Pipelines in shop-ml/europe-west4 (run "
                                "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS): ")
    assert "missing-key.json" in lines[-1] and "Traceback" not in result.output


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
      "--experiment", "Weekly Retraining"], "Vertex AI experiment names take 4-128 lower-case letters, digits or '-'"),
    (["submit", "--vertex", "--project", "p", "--region", "r", "--pipeline-root", "gs://b/r",
      "--namespace", "team"], "--namespace and --kfp-sa-token are Kubeflow Pipelines options"),
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
    (["schedule", "--kfp-host", "http://kfp:8080", "--cron", "0 24 * * 1"], "the hour field cannot be '24' (it takes 0-23"),
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
    assert result.exit_code == 3  # could not reach a service
    assert result.output.startswith(f"Error: cannot reach Kubeflow Pipelines at {host}: ")
    assert "Connection refused" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_refused_run_is_one_line_with_the_servers_reason(kfp_server):
    kfp_server.refuse_runs = 403
    result = _invoke("submit", "--kfp-host", kfp_server.url, "--model-repository", MODEL_REPOSITORY)
    assert result.exit_code == 3 and "Traceback" not in result.output  # authenticated, but not allowed
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
    ("60 * * * *", "the minute field cannot be '60' (it takes 0-59"),
    ("0 0 0 * *", "the day-of-month field cannot be '0' (it takes 1-31"),
    ("0 0 * 13 *", "the month field cannot be '13' (it takes 1-12 or JAN-DEC"),
    ("0 0 * * FUN", "the day-of-week field cannot be 'FUN' (it takes 0-6 or SUN-SAT"),
    ("*/0 * * * *", "the minute field cannot be '*/0'"), ("0 0 1-2/0 * *", "the day-of-month field cannot be '1-2/0'"),
    ("0 5-2 * * *", "range '5-2' runs backwards in the hour field"),
    ("0 0 * * SAT-MON", "range 'SAT-MON' runs backwards in the day-of-week field"),
    ("0 0 * * 0-7", "day-of-week 7 is outside 0-6"),
    ("@weekly", "expected 5 fields"), ("0 0 3 * * 1", "expected 5 fields"), ("0 0 3 * * 1 2026", "expected 5 fields"),
    # What croniter reads but Kubeflow's scheduler or Vertex AI does not.
    ("0 0 ? * *", "cannot read '?' in the day-of-month field"), ("0 0 L * *", "cannot read 'L'"),
    ("0 0 15W * *", "cannot read '15W'"), ("0 0 * * 1#2", "cannot read '1#2'"), ("H 0 * * *", "cannot read 'H'"),
    ("R 0 * * *", "cannot read 'R'"), ("0 0 MON * *", "cannot read 'MON' in the day-of-month field"),
])
def test_invalid_cron_expressions_say_which_field(expression, message):
    with pytest.raises(ValueError, match=re.escape(message)):
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
    assert result.exit_code == 3  # a service refused the credentials
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
