"""The environment tritonserver gives its python stubs, read from /proc on a real server."""

from __future__ import annotations

import os
from pathlib import Path

from fashionrec.serving.server import BLAS_THREAD_VARIABLES


def test_every_python_stub_runs_with_the_configured_blas_threads(triton, serving_config) -> None:
    """The stubs inherit tritonserver's environment: ``serving.blas_threads`` for every BLAS numpy may use."""
    group = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
             if pid != triton.pid and _pgid(pid) == triton.pid]
    stubs = [pid for pid in group if b"triton_python_backend_stub" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert stubs, "no python stub in tritonserver's process group"
    for pid in stubs:
        environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if item)
        assert {name: environ.get(name.encode()) for name in BLAS_THREAD_VARIABLES} == {
            name: str(serving_config.blas_threads).encode() for name in BLAS_THREAD_VARIABLES}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
