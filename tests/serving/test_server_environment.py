"""What tritonserver is started with: distinct free ports, and the environment its python stubs get (read
from /proc on a real server)."""

from __future__ import annotations

import os
from pathlib import Path

from fashionrec.serving.server import BLAS_THREAD_VARIABLES, free_ports


def test_free_ports_never_repeat_a_port() -> None:
    """Ports chosen one at a time could repeat (a CI run once gave gRPC and metrics the same one, and
    tritonserver refused to start); chosen together they are distinct, and bindable."""
    ports = free_ports("127.0.0.1", 200)
    assert len(set(ports)) == 200
    assert all(1024 <= port <= 65535 for port in ports)


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
