"""A version published for GPU instances on a machine without a usable GPU: refused loudly, never served
from the CPU in silence. On a real tritonserver (this machine has no GPU); the other half, a GPU without
CuPy in the serving environment, is `tests/contract/test_scoring.py` (GpuUnavailableError)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fashionrec.config import ServingConfig
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving.server import TritonServer, TritonStartError

if TYPE_CHECKING:
    from conftest import Catalogue


def test_a_gpu_version_without_a_gpu_does_not_start_and_says_why(
        tmp_path: Path, catalogue: Catalogue, serving_config: ServingConfig, export_writer: Callable) -> None:
    gpu = dataclasses.replace(serving_config, instance_kind="KIND_GPU", startup_timeout_s=60.0)
    export = export_writer(tmp_path / "export", catalogue.product_ids, catalogue.embeddings, catalogue.is_new)
    published = publish_model_repository(*export, str(tmp_path / "repo"), gpu)
    with pytest.raises(TritonStartError) as refused:
        with TritonServer(published.path, gpu, http_port=0, grpc_port=0, metrics_port=0):
            pass
    message = str(refused.value)
    assert "exited with status" in message  # never ready: nothing serves the version
    assert f"{gpu.ranking_model_name} has kind KIND_GPU but no GPUs are available" in message
