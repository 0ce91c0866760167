"""The Python environment Triton's python backend runs the models in.

Why a separate venv: the backend stub embeds an interpreter that must import numpy < 2 (numpy 2 makes
the models return empty outputs under Triton 2.51), while the rest of fashionrec needs numpy 2. In
production Triton runs in its own container; locally this venv plays that container. It also provides
the ``tritonserver`` binary itself, from the ``nvidia-pytriton`` wheel.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

VENV_ENV_VAR = "FASHIONREC_SERVING_VENV"
DEFAULT_VENV = Path("~/.cache/fashionrec/serving-venv")
REQUIREMENTS_RESOURCE = "requirements-serving.txt"
MARKER_FILE = ".fashionrec-serving.json"

Progress = Callable[[str], None]


def print_progress(message: str) -> None:
    """Default progress report: a line on stderr (stdout stays clean for scripts)."""
    print(message, file=sys.stderr, flush=True)


def serving_venv_path(venv_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the serving venv lives: the argument, else $FASHIONREC_SERVING_VENV, else the user cache."""
    chosen = venv_dir or os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV
    return Path(chosen).expanduser().absolute()


def requirements_text() -> str:
    """The pinned requirements shipped with the package (a pip freeze of a working serving env)."""
    return resources.files(__package__).joinpath(REQUIREMENTS_RESOURCE).read_text(encoding="utf-8")


def pinned_version(package: str, text: str | None = None) -> str:
    """The ``==`` pin of ``package`` in the serving requirements; KeyError when it is not pinned."""
    for line in (text if text is not None else requirements_text()).splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name.strip().lower().replace("_", "-") == package.lower().replace("_", "-"):
            return version.strip()
    raise KeyError(f"{package} is not pinned in {REQUIREMENTS_RESOURCE}")


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of a venv."""
    return venv_dir / "bin" / "python"


def ensure_serving_environment(
    venv_dir: str | os.PathLike[str] | None = None,
    pytriton_version: str | None = None,
    progress: Progress = print_progress,
) -> Path:
    """Create the serving venv if it is missing or stale, and return its path.

    Idempotent and fast when present: a marker file holds the hash of the pinned requirements it was
    built from, so a present, matching venv costs one small file read. A file lock makes concurrent
    callers (parallel tests, two CLIs) build it once. ``pytriton_version`` (ServingConfig's) must agree
    with the pins, so a config change cannot silently run another Triton than the one configured.
    """
    target = serving_venv_path(venv_dir)
    text = requirements_text()
    if pytriton_version is not None and pinned_version("nvidia-pytriton", text) != pytriton_version:
        raise ValueError(
            f"ServingConfig.pytriton_version={pytriton_version} but {REQUIREMENTS_RESOURCE} pins "
            f"nvidia-pytriton=={pinned_version('nvidia-pytriton', text)}"
        )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if _marker_digest(target) == digest:
        return target
    with _locked(target):
        if _marker_digest(target) != digest:
            _build(target, text, progress)
            (target / MARKER_FILE).write_text(json.dumps({"requirements_sha256": digest}), encoding="utf-8")
    return target


def _marker_digest(target: Path) -> str | None:
    """The requirements hash recorded in a venv's marker, or None without a usable venv."""
    try:
        recorded = json.loads((target / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded.get("requirements_sha256") if venv_python(target).exists() else None


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the venv while building it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path, requirements: str, progress: Progress) -> None:
    """Create the venv (if needed) with this interpreter and pip-install the pinned requirements."""
    if not venv_python(target).exists():
        progress(f"Creating the Triton serving environment in {target} ...")
        venv.EnvBuilder(with_pip=True).create(target)
    pinned = target / REQUIREMENTS_RESOURCE
    pinned.write_text(requirements, encoding="utf-8")
    progress(f"Installing nvidia-pytriton and numpy<2 into {target} (first time only, about a minute) ...")
    command = [str(venv_python(target)), "-m", "pip", "install", "--quiet", "-r", str(pinned)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"installing the serving environment failed:\n{result.stdout}\n{result.stderr}")
    progress("Serving environment ready.")
