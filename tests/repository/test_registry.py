"""A published version's lineage (the publish task's ``Model`` artifact) and its Vertex AI Model Registry version.

Vertex AI: the real ``google-cloud-aiplatform`` SDK (``Model``, ``Model.upload``) and its real gRPC transport
build, serialise and send every request; only the channel under the transport is replaced, by one to an
in-process gRPC server that answers the ModelService methods the SDK calls (GetModel, and UploadModel as a
finished long-running operation) as the service does, and records each request as it arrived. Credentials are
Application Default Credentials from a user credentials file (``GOOGLE_APPLICATION_CREDENTIALS``), never
refreshed: the local channel carries none, and nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform_v1.services.model_service.transports.grpc import ModelServiceGrpcTransport
from google.cloud.aiplatform_v1.types import Model, model_service
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, json_format

from fashionrec import storage
from fashionrec.artifacts import BLESSING_FILE, EMBEDDINGS_FILE, METRICS_FILE
from fashionrec.config import ConfigError, EvaluateConfig, PipelineConfig, RegistryConfig, ServingConfig
from fashionrec.embeddings_file import write_embeddings
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import PublishedModel
from fashionrec.repository.registry import (
    PublishedVersion,
    RegistrationError,
    headline_metrics,
    publish_and_register,
    register_version,
    version_record,
)

REGISTRY = RegistryConfig(project="shop-ml", region="europe-west4")
LOCATION = "projects/shop-ml/locations/europe-west4"
MODEL = f"{LOCATION}/models/fashionrec"
REPOSITORY = "gs://shop-models/fashionrec/model_repository"
SERVICE = "google.cloud.aiplatform.v1.ModelService"
METRICS = {  # an evaluation's metrics.json, trimmed: the candidate and one baseline
    "model": {"mrr": 0.0712, "ndcg@10": 0.0311, "recall@10": 0.0365, "recall@20": 0.0612, "auc": 0.77},
    "ease": {"mrr": 0.0601, "ndcg@10": 0.0288, "recall@10": 0.0301, "recall@20": 0.0453, "auc": 0.74},
}
BLESSING = {"blessed": True, "reasons": [], "checks": [], "metrics": METRICS}


def _record(version: int = 1, repository: str = REPOSITORY) -> PublishedVersion:
    return version_record(PublishedModel(version, repository, 600, 64), BLESSING, METRICS, EvaluateConfig())


# ------------------------------------------------------------------------------------------ the lineage


def test_the_record_carries_the_repository_version_verdict_headline_metrics_and_catalogue():
    record = version_record(PublishedModel(3, REPOSITORY, 600, 64), BLESSING, METRICS, EvaluateConfig())
    assert record.metadata() == {
        "repository_uri": "gs://shop-models/fashionrec/model_repository",
        "version": 3,
        "blessed": True,
        "gate_metric": "recall@20",
        "metrics": {"recall@20": 0.0612, "ndcg@10": 0.0311},
        "embedding_dim": 64,
        "num_products": 600,
    }
    json.dumps(record.metadata())  # what KFP stores must be JSON


def test_headline_metrics_are_the_gate_metric_then_the_compared_ones_once_each():
    evaluate = EvaluateConfig(gate_metric="mrr", compare_metrics=("recall@10", "mrr"))
    assert headline_metrics(METRICS, evaluate) == {"mrr": 0.0712, "recall@10": 0.0365}
    assert list(headline_metrics(METRICS, evaluate)) == ["mrr", "recall@10"]


def test_a_registered_version_and_a_failed_registration_show_in_the_metadata():
    registered = PublishedVersion(REPOSITORY, 2, True, "recall@20", {"recall@20": 0.5}, 8, 10,
                                  vertex_model=f"{MODEL}@2")
    failed = PublishedVersion(REPOSITORY, 2, True, "recall@20", {"recall@20": 0.5}, 8, 10, registry_error="refused")
    assert registered.metadata()["vertex_model"] == f"{MODEL}@2" and "registry_error" not in registered.metadata()
    assert failed.metadata()["registry_error"] == "refused" and "vertex_model" not in failed.metadata()


# ------------------------------------------------------------------------- a Vertex AI ModelService


@dataclass
class FakeModelService:
    """The ModelService methods the SDK calls, answered as Vertex AI does, and what they received."""

    port: int = 0
    hosts: list[str] = field(default_factory=list)  # the endpoints the SDK's transports were created for
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (method, request) in arrival order
    models: dict[str, list[Model]] = field(default_factory=dict)  # resource name -> its versions, oldest first
    refuse: grpc.StatusCode | None = None  # when set, every call is answered with this status
    connections_after: int | None = None  # after this many calls, connecting is refused (the network is down)

    def _check(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        self.calls.append((method, request))
        if self.refuse is not None:
            permission = {"GetModel": "get", "UploadModel": "upload"}[method]
            context.abort(self.refuse, f"Permission 'aiplatform.models.{permission}' denied on resource "
                                       f"'//aiplatform.googleapis.com/{LOCATION}' (or it may not exist).")

    def get_model(self, request: model_service.GetModelRequest, context: grpc.ServicerContext) -> Model:
        self._check("GetModel", request, context)
        name, _, wanted = request.name.partition("@")
        wanted = wanted or "default"
        for version in self.models.get(name, []):
            if wanted in (version.version_id, *version.version_aliases):
                return version
        context.abort(grpc.StatusCode.NOT_FOUND, f"Model {request.name} not found.")

    def upload_model(self, request: model_service.UploadModelRequest,
                     context: grpc.ServicerContext) -> operations_pb2.Operation:
        self._check("UploadModel", request, context)
        name = request.parent_model or f"{request.parent}/models/{request.model_id}"
        if request.model_id and name in self.models:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Model {name} already exists.")
        if request.parent_model and name not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Parent model {name} not found.")
        versions = self.models.setdefault(name, [])
        for older in versions:  # one default version per model: the alias moves
            older.version_aliases = [alias for alias in older.version_aliases if alias not in request.model.version_aliases]
        created = Model.deserialize(Model.serialize(request.model))
        created.name, created.version_id = name, str(len(versions) + 1)
        versions.append(created)
        response = any_pb2.Any()
        response.Pack(model_service.UploadModelResponse.pb(
            model_service.UploadModelResponse(model=name, model_version_id=created.version_id)))
        return operations_pb2.Operation(name=f"{request.parent}/operations/{uuid.uuid4().int % 10**18}",
                                        done=True, response=response)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "GetModel": grpc.unary_unary_rpc_method_handler(
                self.get_model, request_deserializer=model_service.GetModelRequest.deserialize,
                response_serializer=Model.serialize),
            "UploadModel": grpc.unary_unary_rpc_method_handler(
                self.upload_model, request_deserializer=model_service.UploadModelRequest.deserialize,
                response_serializer=operations_pb2.Operation.SerializeToString),
        })

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Every call as (method, the request as JSON, as the API documents it)."""
        return [(method, json_format.MessageToDict(type(request).pb(request))) for method, request in self.calls]


def _closed_port() -> int:
    with socket.socket() as probe:  # nothing listens on it once the probe is closed
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def vertex(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeModelService]:
    service = FakeModelService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((service.handler(),))
    service.port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def create_channel(cls, host: str, **_: Any) -> grpc.Channel:  # each SDK call creates a client, and this
        service.hosts.append(host)
        down = service.connections_after is not None and len(service.calls) >= service.connections_after
        return grpc.insecure_channel(f"127.0.0.1:{_closed_port() if down else service.port}")

    monkeypatch.setattr(ModelServiceGrpcTransport, "create_channel", classmethod(create_channel))
    # The SDK caches the credentials it found in a process-wide config: a fresh one per test finds them again.
    monkeypatch.setattr(initializer, "global_config", type(initializer.global_config)())
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "application_default_credentials.json"
    credentials.write_text(json.dumps({"type": "authorized_user", "client_id": "fashionrec-tests",
                                       "client_secret": "unused", "refresh_token": "unused"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    yield service
    server.stop(None)


def _upload(parent: dict[str, str], version: int, description: str) -> dict[str, Any]:
    """The UploadModelRequest register_version sends for repository version ``version`` of REPOSITORY."""
    return {
        "parent": LOCATION,
        **parent,
        "model": {
            "displayName": "fashionrec",
            "description": "fashionrec two-tower recommender: the Triton model repository "
                           "gs://shop-models/fashionrec/model_repository",
            "versionAliases": [f"v{version}", "default"],
            "versionDescription": description,
            "containerSpec": {"imageUri": "nvcr.io/nvidia/tritonserver:24.12-py3"},
            "artifactUri": "gs://shop-models/fashionrec/model_repository",
            "labels": {"app": "fashionrec", "fashionrec_version": str(version), "blessed": "true"},
        },
    }


def test_the_first_version_creates_the_model_and_later_ones_are_versions_of_it(vertex):
    first = register_version(_record(1), REGISTRY)
    second = register_version(_record(2), REGISTRY)

    assert (first, second) == (f"{MODEL}@1", f"{MODEL}@2")
    description = "fashionrec repository version {} (blessed; recall@20 0.0612, ndcg@10 0.0311): 600 products, 64-d embeddings"
    assert vertex.requests() == [
        ("GetModel", {"name": MODEL}),  # not there yet: the upload creates it
        ("UploadModel", _upload({"modelId": "fashionrec"}, 1, description.format(1))),
        ("GetModel", {"name": f"{MODEL}@1"}),  # the SDK reads back what it created
        ("GetModel", {"name": MODEL}),
        ("UploadModel", _upload({"parentModel": MODEL}, 2, description.format(2))),
        ("GetModel", {"name": f"{MODEL}@2"}),
    ]
    assert set(vertex.hosts) == {"europe-west4-aiplatform.googleapis.com:443"}  # the regional endpoint
    assert [list(v.version_aliases) for v in vertex.models[MODEL]] == [["v1"], ["v2", "default"]]


def test_a_refused_registration_is_one_line_saying_the_version_is_published(vertex):
    vertex.refuse = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(RegistrationError) as raised:
        register_version(_record(4), REGISTRY)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "version 4 of gs://shop-models/fashionrec/model_repository was published but not registered in Vertex AI "
        "Model Registry (project shop-ml, region europe-west4, model fashionrec): PermissionDenied: 403 Permission "
        "'aiplatform.models.get' denied")
    assert message.endswith("the repository is the source of truth and serves the version regardless")
    assert [method for method, _ in vertex.calls] == ["GetModel"]  # stopped at the first refusal


def test_a_network_failure_is_one_line_saying_the_version_is_published(vertex):
    # Down after the model lookup: the upload is not retried. (A lookup that cannot connect fails the same way,
    # after the SDK's own retries of reads, two minutes.)
    vertex.connections_after = 1
    with pytest.raises(RegistrationError, match=r"^version 1 of gs://\S+ was published but not registered .*: "
                                                r"ServiceUnavailable: 503 .*Connection refused; the repository is "
                                                r"the source of truth") as raised:
        register_version(_record(1), REGISTRY)
    assert "\n" not in str(raised.value)
    assert [method for method, _ in vertex.calls] == ["GetModel"] and vertex.models == {}


def test_missing_credentials_are_one_line_and_nothing_is_sent(vertex, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(RegistrationError, match=r"was published but not registered .*: DefaultCredentialsError: "
                                                r"File .*missing\.json was not found") as raised:
        register_version(_record(1), REGISTRY)
    assert "\n" not in str(raised.value) and vertex.calls == []


def test_a_local_repository_is_refused_before_any_request(vertex, tmp_path):
    with pytest.raises(RegistrationError, match="Vertex AI reads only a gs:// model repository"):
        register_version(_record(1, str(tmp_path / "repository")), REGISTRY)
    assert vertex.calls == [] and vertex.hosts == []


# ------------------------------------------------------------------ the publish step, in-process


def _stage_outputs(tmp_path: Path) -> tuple[str, str]:
    """An export's embeddings folder and an evaluation's folder, as the pipeline's earlier tasks leave them."""
    embeddings, evaluation = tmp_path / "embeddings", tmp_path / "evaluation"
    embeddings.mkdir(parents=True)
    evaluation.mkdir(parents=True)
    vectors = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    write_embeddings(str(embeddings / EMBEDDINGS_FILE), np.array([f"P{i}" for i in range(6)]), vectors,
                     np.array([False, False, False, False, True, True]))
    (evaluation / METRICS_FILE).write_text(json.dumps(METRICS))
    (evaluation / BLESSING_FILE).write_text(json.dumps(BLESSING))
    return str(embeddings), str(evaluation)


def _publish(tmp_path: Path, repository: str, registry: RegistryConfig) -> PublishedVersion:
    return publish_and_register(*_stage_outputs(tmp_path), repository, ServingConfig(), EvaluateConfig(), registry)


def test_without_a_registry_the_step_publishes_and_records_the_version(tmp_path, vertex):
    repository = tmp_path / "repository"
    record = _publish(tmp_path, str(repository), RegistryConfig())
    assert record.metadata() == {"repository_uri": str(repository), "version": 1, "blessed": True,
                                 "gate_metric": "recall@20", "metrics": {"recall@20": 0.0612, "ndcg@10": 0.0311},
                                 "embedding_dim": 4, "num_products": 6}
    manifest = json.loads((repository / MANIFEST_FILE).read_text())
    assert manifest["latest_version"] == 1 and manifest["versions"][0]["metadata"] == {"metrics": METRICS}
    assert vertex.calls == []


def test_the_step_registers_a_gcs_version_and_survives_a_refusal(tmp_path, vertex, gcs_emulator, caplog):
    repository = f"{gcs_emulator}/registry-{uuid.uuid4().hex[:8]}/model_repository"
    registered = _publish(tmp_path / "first", repository, REGISTRY)
    assert registered.vertex_model == f"{MODEL}@1" and registered.registry_error is None
    assert vertex.models[MODEL][0].artifact_uri == repository

    vertex.refuse = grpc.StatusCode.PERMISSION_DENIED
    with caplog.at_level(logging.ERROR, logger="fashionrec.repository.registry"):
        refused = _publish(tmp_path / "second", repository, REGISTRY)
    assert refused.version == 2 and refused.vertex_model is None
    assert refused.registry_error.startswith(f"version 2 of {repository} was published but not registered")
    assert storage.read_json(f"{repository}/{MANIFEST_FILE}")["latest_version"] == 2  # published regardless
    logged = [record.getMessage() for record in caplog.records if record.name == "fashionrec.repository.registry"]
    assert logged == [f"Error: {refused.registry_error}"]


# ----------------------------------------------------------------------------------- the settings


def test_the_registry_is_off_until_project_and_region_are_set():
    assert not PipelineConfig().registry.enabled
    config = PipelineConfig().with_settings(["registry.project=shop-ml", "registry.region=europe-west4"])
    assert config.registry == REGISTRY and config.registry.enabled
    assert not config.with_settings(["registry.project=none", "registry.region=none"]).registry.enabled


@pytest.mark.parametrize("settings, message", [
    (["registry.project=shop-ml"], "registry.region: set project and region together"),
    (["registry.region=europe-west4"], "registry.project: set project and region together"),
    (["registry.project=Shop_ML", "registry.region=europe-west4"], "registry.project: expected a Google Cloud project id"),
    (["registry.project=shop-ml", "registry.region=Europe West 4"], "registry.region: expected a Vertex AI region"),
    (["registry.model_id=1st-model"], "registry.model_id: expected 1-63 lower-case letters"),
    (["registry.display_name="], "registry.display_name: must be 1-128 characters"),
    (["registry.serving_image=nvcr.io/nvidia/tritonserver 24.12"], "registry.serving_image: expected a container image"),
    (["registry.projekt=shop-ml"], "did you mean 'project'?"),
])
def test_bad_registry_settings_name_the_field_and_what_it_accepts(settings, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        PipelineConfig().with_settings(settings)
