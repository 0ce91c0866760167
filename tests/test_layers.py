"""The package's layers, checked from the outside: what importing one module drags in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("apache_beam", "tensorflow_transform", "tfx_bsl", "tensorflow", "kfp")


def _imported_after(statement: str) -> list[str]:
    """The heavy top-level packages in ``sys.modules`` after running ``statement`` in a fresh interpreter."""
    code = f"import sys\n{statement}\nimport json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_evaluation_reads_stage_outputs_without_beam_or_tensorflow_transform():
    heavy = _imported_after("import fashionrec.evaluation.evaluate")
    assert "apache_beam" not in heavy and "tensorflow_transform" not in heavy and "tfx_bsl" not in heavy


@pytest.mark.parametrize("module", ["fashionrec.config", "fashionrec.artifacts", "fashionrec.contract.ops",
                                    "fashionrec.contract.scoring", "fashionrec.evaluation.gate"])
def test_the_lower_layers_import_no_framework(module):
    assert _imported_after(f"import {module}") == []
