"""The package's layers, checked from the outside: what importing one module drags in."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("apache_beam", "tensorflow_transform", "tfx_bsl", "tensorflow", "kfp")


def _imported_after(statement: str) -> list[str]:
    """The heavy top-level packages in ``sys.modules`` after running ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nimport json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_evaluation_reads_stage_outputs_without_tensorflow_transform():
    heavy = _imported_after("import fashionrec.evaluation.evaluate")  # Beam ranks the holdout; TFT is the transform's
    assert "tensorflow_transform" not in heavy and "tfx_bsl" not in heavy


@pytest.mark.parametrize("module", ["fashionrec.config", "fashionrec.artifacts", "fashionrec.contract.ops",
                                    "fashionrec.contract.scoring", "fashionrec.evaluation.gate"])
def test_the_lower_layers_import_no_framework(module):
    assert _imported_after(f"import {module}") == []


# The layers, lowest first: a module may import its own layer and the ones below, never one above.
LAYERS = (
    ("contract", ("fashionrec.contract",)),  # runs inside Triton: numpy and the standard library only
    ("foundation", ("fashionrec.config", "fashionrec.artifacts", "fashionrec.storage", "fashionrec.progress",
                    "fashionrec.messages", "fashionrec.embeddings_file")),
    ("model", ("fashionrec.model",)),
    ("stages", ("fashionrec.stages", "fashionrec.datasets")),
    ("serving", ("fashionrec.serving",)),  # a tritonserver process and connections to it
    ("repository", ("fashionrec.repository",)),
    ("evaluation", ("fashionrec.evaluation",)),
    ("kfp", ("components", "pipelines")),
    ("online", ("fashionrec.online",)),  # the shop's front door: an ASGI service in front of Triton
    ("app", ("fashionrec.app",)),
)
CONTRACT_MAY_IMPORT = {"numpy", "cupy", "__future__"}  # besides the standard library and itself
PACKAGES = ("fashionrec", "components", "pipelines")


def _layer(module: str) -> int | None:
    """The layer index of a project module (None: not a project module, or the package root)."""
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (function-level imports included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def test_every_project_module_sits_in_a_layer(pytestconfig: pytest.Config) -> None:
    unplaced = [m for m in _modules(pytestconfig.rootpath) if _layer(m) is None and m not in PACKAGES]
    assert unplaced == []


def test_modules_import_only_their_own_layer_and_the_ones_below(pytestconfig: pytest.Config) -> None:
    upward = []
    for module, path in _modules(pytestconfig.rootpath).items():
        own = _layer(module)
        for imported in _imports(path, module):
            target = _layer(imported)
            if own is not None and target is not None and target > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {imported} ({LAYERS[target][0]})")
    assert upward == []


def test_the_contract_imports_only_numpy_the_standard_library_and_itself(pytestconfig: pytest.Config) -> None:
    for module, path in _modules(pytestconfig.rootpath).items():
        if _layer(module) != 0:
            continue
        for imported in _imports(path, module):
            top = imported.split(".")[0]
            assert (imported.startswith("fashionrec.contract") or top in CONTRACT_MAY_IMPORT
                    or top in sys.stdlib_module_names), f"{module} imports {imported}"
