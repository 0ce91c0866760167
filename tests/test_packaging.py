"""fashionrec installed as a plain wheel (not editable, sources out of reach) still publishes a model
repository that a real tritonserver serves: the Triton templates are package data and the serving
contract is copied from the installed package, never found by path arithmetic."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fashionrec.app.client import FashionrecClient
from fashionrec.config import ServingConfig
from fashionrec.serving.server import TritonServer

SOURCES = ("setup.py", "fashionrec", "components", "pipelines", "triton_models")  # what the images copy too
PUBLISH_FROM_THE_INSTALL = """
import json, sys
import numpy as np
import fashionrec, triton_models
from fashionrec.embeddings_file import write_embeddings
from fashionrec.config import ServingConfig
from fashionrec.repository.publish import publish_model_repository

embeddings = np.eye(6, 4, dtype=np.float32) + 0.1
write_embeddings("embeddings.parquet", np.array([f"P{i}" for i in range(6)]), embeddings, np.zeros(6, bool))
open("blessing.json", "w").write(json.dumps({"blessed": True, "reasons": []}))
published = publish_model_repository("embeddings.parquet", "blessing.json", "repository", ServingConfig())
print(json.dumps({"fashionrec": fashionrec.__file__, "triton_models": triton_models.__file__,
                  "version": published.version}))
"""


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """A fresh venv holding fashionrec built as a wheel; its dependencies come from the test venv's
    site-packages through a .pth file (whose own .pth files, the editable install's among them, are not
    processed, so this fashionrec is the only one it can import)."""
    root = tmp_path_factory.mktemp("plain-install")
    (root / "source").mkdir()
    for name in SOURCES:  # built from a copy: setuptools writes build/ and *.egg-info beside the sources
        source = pytestconfig.rootpath / name
        if source.is_dir():
            shutil.copytree(source, root / "source" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / "source" / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(root / "dist"), str(root / "source")], check=True, cwd=root)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    site = Path(subprocess.run([str(root / "venv" / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (wheel,) = (root / "dist").glob("fashionrec-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "venv" / "bin" / "python"


@pytest.mark.e2e
def test_a_plain_install_publishes_a_repository_triton_serves(installed_python: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(installed_python), "-c", PUBLISH_FROM_THE_INSTALL], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    venv = installed_python.parents[1]
    assert Path(found["fashionrec"]).is_relative_to(venv) and Path(found["triton_models"]).is_relative_to(venv)
    repository = tmp_path / "repository"
    serving = ServingConfig()
    for model in (serving.customer_model_name, serving.ranking_model_name, serving.blend_model_name):
        folder = repository / model / str(found["version"])
        assert (folder / "model.py").is_file() and (folder / "fashionrec" / "contract" / "ops.py").is_file()
    with TritonServer(str(repository), serving, http_port=0, grpc_port=0, metrics_port=0) as server:
        with FashionrecClient(server.grpc_url, "grpc", serving) as client:
            recommended = client.recommend(["P0", "P1"], 3)
    # P0 and P1 are in the history and not excluded; each is nearest itself, so both lead the ranking
    assert sorted(r.product_id for r in recommended[:2]) == ["P0", "P1"] and len(recommended) == 3


def test_every_folder_of_python_code_is_an_installed_package(pytestconfig: pytest.Config) -> None:
    """A folder without ``__init__.py`` is left out of the wheel by find_packages (an editable install
    hides it): every folder holding Python code under the installed top-level packages must be one."""
    root = pytestconfig.rootpath
    for top in ("fashionrec", "components", "pipelines"):
        for folder in {path.parent for path in (root / top).rglob("*.py") if "__pycache__" not in path.parts}:
            assert (folder / "__init__.py").is_file(), f"{folder.relative_to(root)} is not a package"
