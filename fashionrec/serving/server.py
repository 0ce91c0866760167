"""Run a real Triton Inference Server (from the nvidia-pytriton wheel) on a model repository.

Why not PyTriton's own proxy: production serves a plain Triton model repository (python-backend models
and an ensemble), so tests and the demo run exactly that, with the ``tritonserver`` binary the wheel
ships. This module assembles what the binary needs on a machine without NVIDIA's container: a python
backend directory with the stub for the serving venv's interpreter, ``LD_LIBRARY_PATH`` (the venv
interpreter's own libpython first, then the wheel's bundled libraries) and ``PATH`` (the venv first, so
the stub's interpreter imports the venv's numpy).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from fashionrec.config import MODEL_CONTROL_MODES, ServingConfig
from fashionrec.serving.connection import raw_client, restriction_flags, tritonclient_module
from fashionrec.serving.environment import Progress, ensure_serving_environment, print_progress, venv_python

_DEFAULTS = ServingConfig()
LOG_TAIL_LINES = 15  # lines of the server log quoted in errors (after its error lines)
# Error lines Triton always prints on a machine without a GPU; they do not explain a failure.
CPU_ONLY_NOISE = ("CudaDriverHelper", "CUDA driver version is insufficient", "unable to create stream")
READY_POLL_INTERVAL_S = 0.2
READY_CALL_TIMEOUT_S = READY_POLL_INTERVAL_S * 5  # one readiness question (connect, then answer)
SHM_DIR = Path("/dev/shm")
PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when its parent dies
_LAYOUT_SCRIPT = (
    "import json, sys, sysconfig; print(json.dumps({'purelib': sysconfig.get_paths()['purelib'], "
    "'libdir': sysconfig.get_config_var('LIBDIR'), 'minor': f'{sys.version_info[0]}.{sys.version_info[1]}'}))"
)


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; the message quotes the end of its log."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the parts of Triton live inside a serving venv."""

    venv_dir: Path
    site_packages: Path
    python_libdir: Path
    python_minor: str

    @property
    def root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def bundled_libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    @classmethod
    def of(cls, venv_dir: Path) -> TritonInstall:
        """Ask the venv's own interpreter where its packages and libpython are (they differ per venv)."""
        out = subprocess.run([str(venv_python(venv_dir)), "-c", _LAYOUT_SCRIPT], capture_output=True,
                             text=True, check=True).stdout
        found = json.loads(out)
        install = cls(venv_dir, Path(found["purelib"]), Path(found["libdir"]), found["minor"])
        if not install.binary.exists():
            raise FileNotFoundError(f"no tritonserver binary at {install.binary}: is nvidia-pytriton installed?")
        return install


def assemble_backends(install: TritonInstall, directory: Path) -> Path:
    """Build ``<directory>/python`` as Triton expects a backend: library, utils and the matching stub.

    The wheel keeps one stub per Python minor version apart from the backend library; Triton looks for
    the stub next to the library, so the folder is assembled (as PyTriton does) for the venv's minor.
    """
    stub = install.root / "python_backend_stubs" / install.python_minor / "triton_python_backend_stub"
    if not stub.exists():
        raise FileNotFoundError(f"nvidia-pytriton has no python backend stub for Python {install.python_minor}")
    backend = directory / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for source in (*sorted((install.root / "backends" / "python").glob("*.*")), stub):
        shutil.copy2(source, backend / source.name)
    return directory


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct TCP ports the OS says are free now (another process may still take one before
    Triton binds). All are held open together while chosen: ports picked one at a time can repeat, and
    tritonserver refuses two services on one port with a usage error."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port(host: str) -> int:
    """One TCP port the OS says is free now."""
    return free_ports(host, 1)[0]


def _client_host(host: str) -> str:
    """The address a local client dials for a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class TritonServer:
    """A tritonserver process serving ``model_repository``, as a context manager.

    Ports default to ServingConfig's; pass 0 to pick free ones (tests). ``http_url``/``grpc_url`` are
    ``host:port`` as tritonclient expects them. The server logs to ``log_path`` (default: a file in its
    private work folder, removed on stop; its tail is quoted in start-up errors).
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        serving: ServingConfig = _DEFAULTS,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        model_control_mode: str | None = None,
        venv_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        progress: Progress = print_progress,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_repository = Path(model_repository).absolute()
        self.serving = serving
        self.model_control_mode = model_control_mode or serving.model_control_mode
        if self.model_control_mode not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control_mode must be one of {MODEL_CONTROL_MODES}, got {self.model_control_mode!r}")
        self._requested_ports = (
            serving.http_port if http_port is None else http_port,
            serving.grpc_port if grpc_port is None else grpc_port,
            serving.metrics_port if metrics_port is None else metrics_port,
        )
        self.ports = self._requested_ports
        self._venv_dir = venv_dir
        self._log_path = Path(log_path).absolute() if log_path else None
        self._progress = progress
        self._extra_args = tuple(extra_args)  # more tritonserver flags, e.g. a deployment's --metrics-config
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.shm_prefix = f"fashionrec_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.log_path: Path | None = None

    # -- addresses -------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{_client_host(self.serving.host)}:{self.ports[0]}"

    @property
    def grpc_url(self) -> str:
        return f"{_client_host(self.serving.host)}:{self.ports[1]}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_client_host(self.serving.host)}:{self.ports[2]}/metrics"

    # -- life cycle ------------------------------------------------------------------------------
    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> TritonServer:
        """Launch tritonserver and block until it is ready; raise TritonStartError (log tail) if not."""
        if self._process is not None:
            raise RuntimeError("this TritonServer is already started")
        if not self.model_repository.is_dir():
            raise FileNotFoundError(f"model repository {self.model_repository} does not exist")
        install = TritonInstall.of(
            ensure_serving_environment(self._venv_dir, self.serving.pytriton_version, self._progress))
        remove_orphaned_shm()  # of servers whose wrapper was killed before it could clean up
        self._workdir = Path(tempfile.mkdtemp(prefix="fashionrec-triton-"))
        self.log_path = self._log_path or self._workdir / "tritonserver.log"
        spare = iter(free_ports(self.serving.host, self._requested_ports.count(0)))
        http, grpc, metrics = (port or next(spare) for port in self._requested_ports)
        self.ports = (http, grpc, metrics)
        command = self._command(install, assemble_backends(install, self._workdir / "backends"))
        self._progress(f"Starting tritonserver on {self.model_repository} (log: {self.log_path}) ...")
        with open(self.log_path, "ab") as log:
            # cwd: the python stubs put theirs first on sys.path; started from a fashionrec checkout they
            # would import its fashionrec.contract instead of the copy in each version folder
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self._workdir,
                                             env=self._environment(install), start_new_session=True,
                                             preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ServingConfig.shutdown_timeout_s; return the exit status."""
        process, self._process = self._process, None
        returncode = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=self.serving.shutdown_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
            _kill_group(process.pid)  # python stubs that outlived tritonserver (its group: start_new_session)
            self._remove_shm_leftovers()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return returncode

    @property
    def pid(self) -> int | None:
        """tritonserver's process id (also its process group's, which its python stubs share); None if stopped."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """None while the server runs (or was never started), else its exit status."""
        return None if self._process is None else self._process.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The server log's error lines, then its last lines, without the start-up tables ('' before start).

        Why filtered: a failed model load is reported in error lines followed by long status tables,
        so a plain tail would show the tables and hide the reason.
        """
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        prose = [line for line in text if line.strip() and not line.startswith(("|", "+"))]
        errors = [line for line in prose if _is_error_line(line)]
        return "\n".join([*errors[-lines:], "...", *prose[-lines:]] if errors else prose[-lines:])

    # -- internals -------------------------------------------------------------------------------
    def _command(self, install: TritonInstall, backends: Path) -> list[str]:
        """tritonserver's arguments: loopback (or configured) binds, own shm prefix, strict start."""
        host = self.serving.host
        http, grpc, metrics = self.ports
        command = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={install.root / 'caches'}",
            f"--http-address={host}", f"--http-port={http}",
            f"--grpc-address={host}", f"--grpc-port={grpc}",
            f"--metrics-address={host}", f"--metrics-port={metrics}",
            "--allow-gpu-metrics=false",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--model-control-mode={self.model_control_mode}",
            "--disable-auto-complete-config",
            "--exit-on-error=true",
            f"--exit-timeout-secs={int(self.serving.shutdown_timeout_s)}",
        ]
        if self.serving.response_cache_mb:  # the ensembles publish `response_cache { enable: true }`
            command.append(f"--cache-config=local,size={self.serving.response_cache_mb * 2**20}")
        command += restriction_flags(self.serving)  # the admin APIs answer only with the key, when one is set
        if self.model_control_mode == "explicit":
            command.append("--load-model=*")
        if self.model_control_mode == "poll":
            command.append(f"--repository-poll-secs={self.serving.repository_poll_secs}")
        return [*command, *self._extra_args]

    def _environment(self, install: TritonInstall) -> dict[str, str]:
        """PATH and LD_LIBRARY_PATH so the stub embeds the venv's interpreter with the right libpython;
        each stub's BLAS threads from ``serving.blas_threads``."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(filter(None, [str(install.venv_dir / "bin"), env.get("PATH")]))
        env.update({name: str(self.serving.blas_threads) for name in BLAS_THREAD_VARIABLES})
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(install.python_libdir), str(install.bundled_libs), env.get("LD_LIBRARY_PATH")]))
        return env

    def _wait_ready(self) -> None:
        """Ask Triton's readiness (tritonclient over HTTP: ``/v2/health/ready``) until true and its metrics
        port accepts connections (Triton opens it last: a scrape right after readiness could be refused),
        the process exits, or startup_timeout_s passes; one client for the whole wait, closed afterwards."""
        deadline = time.monotonic() + self.serving.startup_timeout_s
        client = raw_client(tritonclient_module("http"), self.http_url, "http", READY_CALL_TIMEOUT_S)
        try:
            while time.monotonic() < deadline:
                if self.returncode is not None:
                    raise TritonStartError(self._failure(f"tritonserver exited with status {self.returncode}"))
                if _is_ready(client) and self._metrics_up():
                    return
                time.sleep(READY_POLL_INTERVAL_S)
        finally:
            client.close()
        raise TritonStartError(self._failure(f"tritonserver not ready after {self.serving.startup_timeout_s} s"))

    def _metrics_up(self) -> bool:
        """The metrics port accepts connections, or the extra arguments turned metrics off."""
        if "--allow-metrics=false" in self._extra_args:
            return True
        return _accepts(_client_host(self.serving.host), self.ports[2])

    def _failure(self, reason: str) -> str:
        return f"{reason} (repository {self.model_repository}).\nFrom its log {self.log_path}:\n{self.log_tail()}"

    def _remove_shm_leftovers(self) -> None:
        """A killed server leaves its python-backend shm regions; ours have a unique prefix. Regions of
        servers whose wrapper process is gone (killed before it could clean up) go too."""
        for leftover in glob.glob(str(SHM_DIR / f"{self.shm_prefix}*")):
            Path(leftover).unlink(missing_ok=True)
        remove_orphaned_shm()


def remove_orphaned_shm() -> list[str]:
    """Remove the python-backend shm regions of fashionrec servers whose wrapper process no longer runs
    (their names carry its pid: ``fashionrec_<pid>_<id>_...``); return their names."""
    removed = []
    for region in glob.glob(str(SHM_DIR / "fashionrec_*_*")):
        owner = Path(region).name.split("_")[1]
        if owner.isdigit() and not _alive(int(owner)):
            Path(region).unlink(missing_ok=True)
            removed.append(Path(region).name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGKILL to tritonserver when the wrapper dies, however it
    dies (kill -9 included), so no server is left holding the ports; its python stubs notice their
    parent's death and exit. Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing. (The signal follows
    the thread that started the server: start it from a thread that lives as long as the server, e.g.
    the main one.)"""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (the stubs of a stopped tritonserver); gone already: fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def _is_error_line(line: str) -> bool:
    """A Triton log line at error level (``E1128 17:49:06.2 ...``) that is not CPU-only noise."""
    return line[:1] == "E" and line[1:5].isdigit() and not any(noise in line for noise in CPU_ONLY_NOISE)


def _accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted now."""
    try:
        with socket.create_connection((host, port), timeout=READY_CALL_TIMEOUT_S):
            return True
    except OSError:
        return False


def _is_ready(client: Any) -> bool:
    """True when Triton says it is ready; False while it is not, or cannot be reached yet.

    What a starting server raises: OSError (connection refused, timed out), an HTTPException (it closed
    the connection) or InferenceServerException (an error answer); each means "not yet", not a failure.
    """
    from tritonclient.utils import InferenceServerException

    try:
        return bool(client.is_server_ready())
    except (OSError, http.client.HTTPException, InferenceServerException):
        return False
