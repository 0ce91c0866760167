"""Static checks of the container images (``images/*.Dockerfile``, ``.dockerignore``); no Docker needed.

The Dockerfiles are read with ``dockerfile-parse`` and checked for what a build cannot be trusted to
catch late: base images pinned by tag, a numeric non-root user, pinned installs (``-c constraints.txt``,
``requirements-serving.txt``), no caches or data in the image, every ``COPY`` source present and inside
the build context, a serving image whose start command is the one ``k8s/base/deployment.yaml`` runs, a
shop image whose start command is the one ``k8s/shop/statefulset.yaml`` runs and which has the command of the
readiness canary beside Triton.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO_ROOT / "images"
COMPONENT_IMAGES = ("component.Dockerfile", "component-gpu.Dockerfile")
SERVING_IMAGES = ("serving.Dockerfile", "serving-gpu.Dockerfile")
SHOP_IMAGES = ("shop.Dockerfile",)
# Images that install the fashionrec package itself (with constraints.txt) on Python 3.11.
PACKAGE_IMAGES = COMPONENT_IMAGES + SHOP_IMAGES
DEPLOYMENT = REPO_ROOT / "k8s" / "base" / "deployment.yaml"
SHOP_STATEFULSET = REPO_ROOT / "k8s" / "shop" / "statefulset.yaml"
SERVING_REQUIREMENTS = "fashionrec/serving/requirements-serving.txt"
TRITON_IMAGE = re.compile(r"^nvcr\.io/nvidia/tritonserver:(?P<year>\d\d)\.(?P<month>\d\d)-py3$")
OLDEST_TRITON_RELEASE = (24, 10)  # Triton 2.51, the version the serving tests run


@dataclass(frozen=True)
class Instruction:
    name: str
    value: str


def _instructions(name: str) -> list[Instruction]:
    parser = DockerfileParser(path=str(DOCKER_DIR / name), cache_content=True)
    return [Instruction(item["instruction"], item["value"]) for item in parser.structure]


def _values(name: str, instruction: str) -> list[str]:
    return [i.value for i in _instructions(name) if i.name == instruction]


def _run_text(name: str) -> str:
    return "\n".join(_values(name, "RUN"))


def _base_images(name: str) -> list[str]:
    """The external images of every FROM (stage names used as bases left out) and COPY --from=IMAGE."""
    stages: set[str] = set()
    images: list[str] = []
    for instruction in _instructions(name):
        words = [word for word in instruction.value.split() if not word.startswith("--platform")]
        if instruction.name == "FROM":
            if words[0] not in stages:
                images.append(words[0])
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif instruction.name == "COPY":
            for word in words:
                if word.startswith("--from=") and word.removeprefix("--from=") not in stages:
                    images.append(word.removeprefix("--from="))
    return images


def _copy_sources(name: str) -> list[str]:
    """Sources of every COPY/ADD from the build context (not from another stage or image)."""
    sources: list[str] = []
    for value in _values(name, "COPY") + _values(name, "ADD"):
        words = shlex.split(value)
        if any(word.startswith("--from=") for word in words):
            continue
        sources.extend(word for word in words[:-1] if not word.startswith("--"))
    return sources


ALL_IMAGES = COMPONENT_IMAGES + SERVING_IMAGES + SHOP_IMAGES


def test_every_dockerfile_is_checked_here():
    assert sorted(p.name for p in DOCKER_DIR.glob("*.Dockerfile")) == sorted(ALL_IMAGES)


# BuildKit reads parser directives only from the first lines, before any other comment or instruction; the
# syntax directive names a frontend image, Docker's own being docker/dockerfile (dockerfile-parse skips comments,
# so this reads the text).
DIRECTIVE = re.compile(r"^#\s*(?P<key>[a-z]+)\s*=\s*(?P<value>\S+)\s*$")
SYNTAX_FRONTEND = re.compile(r"^docker/dockerfile:(?P<version>1(\.\d+){0,2})(@sha256:[0-9a-f]{64})?$")


def _directives(name: str) -> dict[str, str]:
    """The Dockerfile's parser directives: ``# key=value`` lines at the very top."""
    found: dict[str, str] = {}
    for line in (DOCKER_DIR / name).read_text(encoding="utf-8").splitlines():
        match = DIRECTIVE.match(line)
        if not match:
            break
        found[match["key"]] = match["value"]
    return found


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_the_syntax_directive_names_dockers_dockerfile_frontend(name):
    directives = _directives(name)
    assert "syntax" in directives, f"{name} has no # syntax= directive on its first line"
    assert SYNTAX_FRONTEND.match(directives["syntax"]), f"{name}: {directives['syntax']} is not docker/dockerfile:1[.x]"


def test_a_misnamed_frontend_is_caught():
    assert not SYNTAX_FRONTEND.match("images/dockerfile:1")
    assert SYNTAX_FRONTEND.match("docker/dockerfile:1.7")


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_base_images_are_pinned_to_a_tag_never_latest(name):
    images = _base_images(name)
    assert images, name
    for image in images:
        repository, _, tag = image.rpartition("/")[2].partition(":")
        assert tag and tag != "latest" and "$" not in image, f"{name}: {image} is not pinned"


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_the_image_runs_as_a_numeric_non_root_user(name):
    users = _values(name, "USER")
    assert users, f"{name} sets no USER"
    final = users[-1]
    uid, _, gid = final.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), f"{name}: USER {final}"


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_no_pip_or_apt_cache_is_left_in_the_image(name):
    runs = _run_text(name)
    for command in re.findall(r"pip install[^&\n]*", runs):
        assert "--no-cache-dir" in command, f"{name}: {command}"
    if "apt-get install" in runs:
        assert "rm -rf /var/lib/apt/lists/*" in runs, name
    envs = " ".join(_values(name, "ENV"))
    assert "PIP_NO_CACHE_DIR" in envs or name in SERVING_IMAGES, name


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_every_copy_source_exists_and_is_in_the_build_context(name):
    sources = _copy_sources(name)
    assert sources, name
    ignore = DockerIgnore.read()
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist"
        assert not ignore.excludes(source), f"{name}: COPY {source} is excluded by .dockerignore"
        for path in (REPO_ROOT / source).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            assert not ignore.excludes(relative), f"{name}: {relative} would be left out of the build"


# ---------------------------------------------------------------------------------------- components


@pytest.mark.parametrize("name", PACKAGE_IMAGES)
def test_component_and_shop_images_install_fashionrec_with_the_pinned_constraints(name):
    installs = re.findall(r"pip install[^&\n]*", _run_text(name))
    assert installs and all("-c constraints.txt" in command for command in installs), installs
    assert any(command.rstrip().endswith((" .", '".[gpu]"')) for command in installs), installs  # the package
    assert not any("-e " in command for command in installs), installs  # a plain install: templates are package data
    assert {"fashionrec", "components", "pipelines", "triton_models"} <= set(_copy_sources(name))


@pytest.mark.parametrize("name", PACKAGE_IMAGES)
def test_component_and_shop_images_run_the_python_setup_py_declares(name):
    python_requires = re.search(r'python_requires="([^"]+)"', (REPO_ROOT / "setup.py").read_text())[1]
    assert python_requires == ">=3.11,<3.12"
    text = " ".join(_base_images(name)) + " " + _run_text(name)
    assert re.search(r"python:3\.11\.\d+-slim|uv python install 3\.11\.\d+", text), name


@pytest.mark.parametrize("name", PACKAGE_IMAGES)
def test_no_movielens_or_other_data_is_baked_in(name):
    text = (DOCKER_DIR / name).read_text()
    instructions = "\n".join(f"{i.name} {i.value}" for i in _instructions(name) if i.name != "COMMENT")
    assert "recbole" not in instructions.lower()  # the wheels that carry MovieLens
    assert not re.search(r"\b(ml-1m|ml-100k|\.inter|\.parquet|\.csv)\b", instructions)
    assert "MovieLens" in text  # and the file says why


def test_gpu_component_image_pins_every_cuda_library_tensorflow_asks_for():
    assert "nvidia/cuda:" in _base_images("component-gpu.Dockerfile")[1]
    assert '".[gpu]"' in _run_text("component-gpu.Dockerfile")
    assert "-c images/constraints-gpu.txt" in _run_text("component-gpu.Dockerfile")
    setup = (REPO_ROOT / "setup.py").read_text()
    tensorflow_pin = re.search(r'"tensorflow==([\d.]+)"', setup)[1]
    assert f'GPU_REQUIRES = ["tensorflow[and-cuda]=={tensorflow_pin}"]' in setup
    pins = {}
    for line in (DOCKER_DIR / "constraints-gpu.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    cuda_requirements = [Requirement(r) for r in importlib.metadata.requires("tensorflow") or []
                         if 'extra == "and-cuda"' in r]
    assert len(cuda_requirements) >= 10
    for requirement in cuda_requirements:
        assert requirement.name in pins, f"{requirement.name} is not pinned in images/constraints-gpu.txt"
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])
    assert set(pins) == {r.name for r in cuda_requirements}


# ------------------------------------------------------------------------------------------- serving


def _deployment_container(name: str = "tritonserver") -> dict:
    """A container of Triton's pod: Triton itself, or the readiness canary beside it."""
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return {**container, "pod_security": deployment["spec"]["template"]["spec"]["securityContext"]}


@pytest.mark.parametrize("name", SERVING_IMAGES)
def test_serving_images_are_triton_2_51_or_newer_with_the_python_backend_requirements(name):
    (image,) = _base_images(name)
    release = TRITON_IMAGE.match(image)
    assert release, image
    assert (int(release["year"]), int(release["month"])) >= OLDEST_TRITON_RELEASE
    assert SERVING_REQUIREMENTS in _copy_sources(name)
    assert re.search(r"pip install --no-cache-dir\s+(\\\s*)?-r /opt/fashionrec/requirements-serving.txt",
                     _run_text(name)), name


def test_cpu_and_gpu_serving_share_the_base_and_gpu_adds_a_pinned_cupy():
    assert _base_images("serving.Dockerfile") == _base_images("serving-gpu.Dockerfile")
    gpu = _run_text("serving-gpu.Dockerfile")
    assert re.search(r"cupy-cuda12x==\d+\.\d+\.\d+", gpu)
    # numpy stays the python backend's pin (CuPy must not pull numpy 2).
    assert "-c /opt/fashionrec/requirements-serving.txt cupy-cuda12x==" in gpu
    assert "cupy" not in _run_text("serving.Dockerfile")


@pytest.mark.parametrize("name", SERVING_IMAGES)
def test_serving_image_starts_tritonserver_as_the_deployment_does(name):
    container = _deployment_container()
    # The Deployment gives only `args`: the image must keep NVIDIA's entrypoint, which execs them.
    assert "command" not in container
    assert _values(name, "ENTRYPOINT") == []
    (cmd,) = _values(name, "CMD")
    shell, flag, script = json.loads(cmd)
    assert (shell, flag) == ("sh", "-c") and script.startswith("exec tritonserver ")
    image_args = shlex.split(script.removeprefix("exec "))
    deployment_args = [re.sub(r"\$\((\w+)\)", r"$\1", arg) for arg in container["args"]]  # $(VAR): k8s; $VAR: sh
    assert image_args == deployment_args
    assert any(env["name"] == "MODEL_REPOSITORY" for env in container["env"])
    assert "MODEL_REPOSITORY=" in " ".join(_values(name, "ENV"))
    exposed = {int(port) for value in _values(name, "EXPOSE") for port in value.split()}
    assert exposed == {port["containerPort"] for port in container["ports"]}
    # The user the image switches to is the one the pod is forced to run as.
    pod = container["pod_security"]
    assert _values(name, "USER")[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}"


# ---------------------------------------------------------------------------------------------- shop


def _shop_container() -> dict:
    statefulset = yaml.safe_load(SHOP_STATEFULSET.read_text())
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return {**container, "pod_security": statefulset["spec"]["template"]["spec"]["securityContext"]}


def test_the_shop_image_shares_the_component_images_base():
    assert _base_images("shop.Dockerfile") == _base_images("component.Dockerfile")
    assert "fashionrec.online.service" in _run_text("shop.Dockerfile")  # the service imports in the image


@pytest.mark.parametrize("name", SHOP_IMAGES)
def test_shop_image_starts_the_shop_as_the_statefulset_does(name):
    container = _shop_container()
    # The StatefulSet gives only `args`, which replace the CMD: the image has no ENTRYPOINT to prepend.
    assert "command" not in container
    assert _values(name, "ENTRYPOINT") == []
    (cmd,) = _values(name, "CMD")
    shell, flag, script = json.loads(cmd)
    assert (shell, flag) == ("sh", "-c") and script.startswith("exec fashionrec shop serve ")
    image_args = shlex.split(script.removeprefix("exec "))
    manifest_args = [re.sub(r"\$\((\w+)\)", r"$\1", arg) for arg in container["args"]]  # $(VAR): k8s; $VAR: sh
    assert image_args == manifest_args
    assert "online.host=0.0.0.0" in image_args
    # Every variable the CMD reads is given by the StatefulSet; those that are not inputs have a default in the image.
    variables = set(re.findall(r"\$(\w+)", script))
    assert variables <= {env["name"] for env in container["env"]}, variables
    image_env = " ".join(_values(name, "ENV"))
    assert {v for v in variables if f"{v}=" not in image_env} == {"CATALOGUE", "MODEL_REPOSITORY"}
    exposed = {int(port) for value in _values(name, "EXPOSE") for port in value.split()}
    assert exposed == {port["containerPort"] for port in container["ports"]} == {8080}
    # The user the image switches to is the one the pod is forced to run as.
    pod = container["pod_security"]
    assert _values(name, "USER")[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}"


def test_the_readiness_canary_beside_triton_runs_a_command_the_shop_image_has():
    """Triton's pod runs `fashionrec serve-canary` in the shop image (which installs the whole package), named and
    pinned as the shop's StatefulSet names it."""
    from fashionrec.app.cli import main

    canary = _deployment_container("canary")
    assert canary["image"] == _shop_container()["image"]
    # No ENTRYPOINT in the image: the args replace its CMD and are the command.
    assert "command" not in canary and _values("shop.Dockerfile", "ENTRYPOINT") == []
    assert canary["args"][:2] == ["fashionrec", "serve-canary"] and "serve-canary" in main.commands
    assert "fashionrec.app.cli" in _run_text("shop.Dockerfile")  # the CLI imports in the image
    pod = canary["pod_security"]
    assert _values("shop.Dockerfile", "USER")[-1] == f"{pod['runAsUser']}:{pod['runAsGroup']}"


def test_the_shop_image_owns_the_journal_folder_the_statefulset_mounts():
    container = _shop_container()
    journal = next(arg.partition("=")[2] for arg in container["args"] if arg.startswith("online.journal_dir="))
    mount = next(m["mountPath"] for m in container["volumeMounts"] if journal.startswith(m["mountPath"] + "/"))
    runs = _run_text("shop.Dockerfile")
    assert f"mkdir -p {journal}" in runs and f"chown -R 1000:1000 {mount}" in runs


# ------------------------------------------------------------------------------------- .dockerignore


@dataclass(frozen=True)
class DockerIgnore:
    """``.dockerignore`` with Docker's rules: patterns in order, the last match wins, ``!`` re-includes,
    a pattern that matches a folder excludes everything below it, ``*`` stays within one path segment
    and ``**`` spans any number."""

    patterns: tuple[tuple[bool, re.Pattern[str]], ...]

    @classmethod
    def read(cls) -> DockerIgnore:
        rules = []
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            rules.append((negated, re.compile(_glob_to_regex(line.lstrip("!").strip("/")))))
        return cls(tuple(rules))

    def excludes(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negated, pattern in self.patterns:
            if any(pattern.fullmatch(candidate) for candidate in candidates):
                excluded = not negated
        return excluded


def _glob_to_regex(glob: str) -> str:
    regex, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif glob[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif glob[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(glob[i]), i + 1
    return regex


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".venv-serving/lib/python3.11/site-packages/numpy/__init__.py", ".git/HEAD",
    "fashionrec-run/model_repository/recommend/1/model.py", "fashionrec-run/pipeline_root/x/raw_data/events.parquet",
    "runs/2026-11-28/report.html", "data/ml-1m/ml-1m.inter", "tests/data/catalogue.csv", "benchmarks/tune.py",
    "fashionrec/__pycache__/cli.cpython-311.pyc", "fashionrec.egg-info/PKG-INFO", "fashionrec/data/events.parquet",
    "ml-1m.item", "pipeline.yaml", "k8s/base/deployment.yaml",
])
def test_dockerignore_keeps_environments_data_and_workspaces_out(path):
    assert DockerIgnore.read().excludes(path)


@pytest.mark.parametrize("path", ["setup.py", "constraints.txt", "fashionrec/cli.py", "fashionrec/datasets/synthetic.py",
                                  SERVING_REQUIREMENTS, "triton_models/recommend/config.pbtxt",
                                  "components/stages.py", "pipelines/training.py", "images/constraints-gpu.txt"])
def test_dockerignore_lets_the_sources_in(path):
    assert not DockerIgnore.read().excludes(path)


def test_the_build_and_push_commands_are_documented():
    readme = (DOCKER_DIR / "README.md").read_text()
    for name in ALL_IMAGES:
        assert f"docker build -f images/{name}" in readme, name
    assert "docker push" in readme
