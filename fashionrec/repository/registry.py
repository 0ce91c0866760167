"""What a published version is, for the tools around the repository: a KFP ``Model`` artifact and a Vertex AI
Model Registry version.

The Triton model repository is the source of truth for what is published and served. Two views point back at
one of its versions, so that a pipeline run leads to the version it served and a version to the run that made it:

* :func:`version_record`: the publish task's ``Model`` artifact (its URI is the repository, its metadata the
  version, the gate's verdict and headline metrics, the catalogue's size and embedding width), which the
  Kubeflow and Vertex AI Pipelines UIs show in the run's lineage;
* :func:`register_version`: when ``registry`` (:class:`fashionrec.config.RegistryConfig`) names a project and a
  region, a version of one Vertex AI Model Registry model, through the SDK's ``Model.upload`` with the
  repository as its artifact URI, the version number and verdict as labels and the metrics in its description.

Registering comes after the version is published and served. When it fails (credentials, network, a refusal),
the version stays published: :class:`RegistrationError` says so in one line, :func:`publish_and_register` logs
it and records it on the artifact, and the publish task succeeds. Failing it would make KFP retry the task,
and a retried publish writes the next version.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fashionrec import storage
from fashionrec.artifacts import BLESSING_FILE, EMBEDDINGS_FILE, METRICS_FILE
from fashionrec.config import EvaluateConfig, RegistryConfig, ServingConfig
from fashionrec.repository.publish import PublishedModel, publish_model_repository

LOGGER = logging.getLogger(__name__)
CANDIDATE = "model"  # the evaluated candidate's name in the evaluation's metrics.json
APP_LABEL = "fashionrec"
MAX_REASON = 300  # characters of an SDK or API error kept in the one-line RegistrationError


@dataclass(frozen=True)
class PublishedVersion:
    """One published repository version, as its lineage shows it. ``metrics``: the candidate's headline
    metrics (the gate metric, then the ones compared with the published model); ``vertex_model``: the
    registry version's resource name (``projects/P/locations/R/models/M@N``) once registered;
    ``registry_error``: why registering failed, when it did."""

    repository_uri: str
    version: int
    blessed: bool
    gate_metric: str
    metrics: dict[str, float]
    embedding_dim: int
    num_products: int
    vertex_model: str | None = None
    registry_error: str | None = None

    def metadata(self) -> dict[str, Any]:
        """The artifact metadata: every field that is set (JSON values: KFP stores them as a Struct)."""
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}


class RegistrationError(RuntimeError):
    """The version was published but not registered: one line naming the version, the registry and why."""

    def __init__(self, record: PublishedVersion, registry: RegistryConfig, reason: str) -> None:
        reason = " ".join(reason.split())[:MAX_REASON].rstrip(".")
        super().__init__(
            f"version {record.version} of {record.repository_uri} was published but not registered in Vertex AI "
            f"Model Registry (project {registry.project}, region {registry.region}, model {registry.model_id}): "
            f"{reason}; the repository is the source of truth and serves the version regardless")


def headline_metrics(metrics: Mapping[str, Mapping[str, float]], evaluate: EvaluateConfig) -> dict[str, float]:
    """The candidate's values of the gate metric and of the metrics compared with the published model, in that
    order: what decided the blessing, small enough for a label-sized view of the version."""
    candidate = metrics[CANDIDATE]
    names = dict.fromkeys((evaluate.gate_metric, *evaluate.compare_metrics))
    return {name: float(candidate[name]) for name in names if name in candidate}


def version_record(published: PublishedModel, blessing: Mapping[str, Any],
                   metrics: Mapping[str, Mapping[str, float]], evaluate: EvaluateConfig) -> PublishedVersion:
    """The lineage of ``published`` from the evaluation it passed (``blessing.json`` and ``metrics.json``)."""
    return PublishedVersion(
        repository_uri=str(published.path),
        version=published.version,
        blessed=blessing.get("blessed") is True,
        gate_metric=evaluate.gate_metric,
        metrics=headline_metrics(metrics, evaluate),
        embedding_dim=published.embedding_dim,
        num_products=published.num_products,
    )


def publish_and_register(embeddings_dir: str, evaluation_dir: str, model_repository: str, serving: ServingConfig,
                         evaluate: EvaluateConfig, registry: RegistryConfig) -> PublishedVersion:
    """The pipeline's publish step, in-process: publish the blessed embeddings as the repository's next version
    (its manifest keeps the evaluation's metrics), then register it when ``registry`` is on. Raises what
    publishing raises (NotBlessedError, ...); a failed registration is logged and recorded, never raised."""
    metrics = storage.read_json(storage.join(evaluation_dir, METRICS_FILE))
    blessing_path = storage.join(evaluation_dir, BLESSING_FILE)
    published = publish_model_repository(
        embeddings_path=storage.join(embeddings_dir, EMBEDDINGS_FILE),
        blessing_path=blessing_path,
        model_repository=model_repository,
        serving=serving,
        metadata={"metrics": metrics},
    )
    record = version_record(published, storage.read_json(blessing_path), metrics, evaluate)
    return register_if_configured(record, registry)


def register_if_configured(record: PublishedVersion, registry: RegistryConfig) -> PublishedVersion:
    """``record`` with its registry version, or with the registration error (logged as one line); as it is
    when the registry is off."""
    if not registry.enabled:
        return record
    try:
        return dataclasses.replace(record, vertex_model=register_version(record, registry))
    except RegistrationError as error:
        LOGGER.error("Error: %s", error)
        return dataclasses.replace(record, registry_error=str(error))


def register_version(record: PublishedVersion, registry: RegistryConfig) -> str:
    """Register ``record`` as the newest version of the registry's model (creating the model with its first
    version), with Application Default Credentials; returns the version's resource name.

    Raises RegistrationError, before any request for a repository Vertex AI cannot read (not ``gs://``), and
    for whatever stops the requests: missing or refused credentials, an unreachable API, a refusal. (The SDK
    retries its read of the model for two minutes on a transient error; the upload itself is sent once.)
    """
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    if not storage.is_gcs(record.repository_uri):
        raise RegistrationError(record, registry, "Vertex AI reads only a gs:// model repository")
    try:
        return _upload(record, registry, first=not _model_exists(registry))
    except (GoogleAPIError, GoogleAuthError, ValueError) as error:  # ValueError: the SDK's own checks
        raise RegistrationError(record, registry, f"{type(error).__name__}: {error}") from error


def _model_exists(registry: RegistryConfig) -> bool:
    """Whether the registry already has the model (then a new upload is a version of it)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import aiplatform

    try:
        aiplatform.Model(registry.model_id, project=registry.project, location=registry.region)
    except NotFound:
        return False
    return True


def _upload(record: PublishedVersion, registry: RegistryConfig, first: bool) -> str:
    """``Model.upload`` of the repository as the model's first version (``model_id``) or a later one
    (``parent_model``), made the default version and aliased ``v<repository version>``."""
    from google.cloud import aiplatform

    model = aiplatform.Model.upload(
        serving_container_image_uri=registry.serving_image,
        artifact_uri=record.repository_uri,
        **({"model_id": registry.model_id} if first else {"parent_model": registry.model_id}),
        is_default_version=True,
        version_aliases=[f"v{record.version}"],
        version_description=version_description(record),
        description=f"fashionrec two-tower recommender: the Triton model repository {record.repository_uri}",
        display_name=registry.display_name,
        labels=version_labels(record),
        project=registry.project,
        location=registry.region,
    )
    return str(model.versioned_resource_name)


def version_labels(record: PublishedVersion) -> dict[str, str]:
    """The registry version's labels (Google Cloud label rules: lower case, no dots, so no metric values)."""
    return {"app": APP_LABEL, "fashionrec_version": str(record.version), "blessed": str(record.blessed).lower()}


def version_description(record: PublishedVersion) -> str:
    """The registry version's description: which repository version it is, the verdict and headline metrics."""
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in record.metrics.items())
    verdict = "blessed" if record.blessed else "not blessed"
    return (f"fashionrec repository version {record.version} ({verdict}; {metrics}): {record.num_products} "
            f"products, {record.embedding_dim}-d embeddings")
