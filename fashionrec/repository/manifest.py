"""The model repository's manifest and its whole-file writes: the one reader and writer of both.

``fashionrec_manifest.json`` at the repository root lists every published version (its configs,
blessing and metadata), the latest one and the one the ensembles are pinned to. Local and ``gs://``
repositories alike, through :mod:`fashionrec.storage`.

Concurrent writers (two publishers, a publish beside a rollback, a catalogue addition beside an experiment)
never take one version number twice nor drop one another's manifest entries:

- a local repository has one lock, :func:`repository_lock` (``filelock``: an flock on
  ``.fashionrec-publish.lock``, reentrant within a thread, so a publish inside ``catalogue add`` or
  configs pinned inside a publish take it again without deadlocking); every operation that allocates a
  version or rewrites the manifest holds it from its first read to its last write;
- ``gs://`` has no locks, so a number is claimed with a create-only object (the publisher's
  ``.fashionrec-claim-<v>``) and the manifest is only ever replaced over the generation that was read:
  :func:`update_manifest` re-reads and re-applies its change when another writer came first, and the
  publisher fails with ConcurrentPublishError (nothing names its version; publish again).
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from filelock import FileLock

from fashionrec import storage

MANIFEST_FILE = "fashionrec_manifest.json"
CONFIG_FILE = "config.pbtxt"
STAGING_PREFIX = ".staging-"  # not a number, so Triton skips it as a version folder
CLAIM_PREFIX = ".fashionrec-claim-"  # + a version number: a gs:// publisher's create-only claim of that number
# A plain file at the repository root (Triton ignores files there). Its name is the one publishers used with a
# bare fcntl.flock before, and it is never unlinked, so an older fashionrec and this one exclude each other.
LOCK_FILE = ".fashionrec-publish.lock"
MANIFEST_ATTEMPTS = 20  # gs:// read-change-write rounds before giving up on a manifest others keep changing
# Between rounds a writer that lost waits a random time up to BACKOFF_BASE_S * 2**round (at most BACKOFF_MAX_S):
# without it, writers that keep colliding keep colliding, and one can lose every round (seen in the race test).
BACKOFF_BASE_S = 0.02
BACKOFF_MAX_S = 1.0


class ConcurrentManifestError(RuntimeError):
    """A gs:// manifest that other writers kept replacing while this one tried to apply its change."""


def repository_lock(repository: str) -> AbstractContextManager[Any]:
    """Hold while allocating a version or rewriting a local repository's manifest or configs.

    Exclusive between processes and threads, reentrant within a thread (one lock object per path: a
    ``catalogue add`` holds it around the publish that takes it again). ``gs://`` repositories get a no-op:
    their writes are conditional instead (:func:`update_manifest`, the publisher's claims).
    """
    if storage.is_gcs(str(repository)):
        return nullcontext()
    folder = Path(str(repository).removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / LOCK_FILE, is_singleton=True, preserve_lock_file=True)


def locked(operation: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``operation(repository, ...)`` holding that repository's lock (reentrant: nested operations and
    a publish calling in take it again), so its reads and writes of configs and manifest are not
    interleaved with another writer's."""
    @functools.wraps(operation)
    def holding_the_lock(repository: str, *args: Any, **kwargs: Any) -> Any:
        with repository_lock(str(repository)):
            return operation(repository, *args, **kwargs)

    return holding_the_lock


def read_manifest(repository: str) -> dict[str, Any]:
    """The repository's manifest; empty before the first publish."""
    uri = storage.join(str(repository), MANIFEST_FILE)
    return storage.read_json(uri) if storage.exists(uri) else {}


def write_manifest(repository: str, manifest: Mapping[str, Any]) -> None:
    """Replace the manifest whole, unconditionally: only for a writer that read it under
    :func:`repository_lock` (locally) or into a private staging copy; others use :func:`update_manifest`."""
    write_text(storage.join(str(repository), MANIFEST_FILE), _manifest_text(manifest))


def update_manifest(repository: str, change: Callable[[dict[str, Any]], Mapping[str, Any]]) -> dict[str, Any]:
    """Apply ``change`` to the manifest as it is now and write the result; return it.

    Why not write a manifest the caller read earlier: another writer may have recorded a version since,
    and that entry would be lost. Locally the read and the write happen under :func:`repository_lock`; on
    ``gs://`` the write is conditional on the generation read, and when another writer came first the
    manifest is read again, after a jittered exponential backoff, and ``change`` applied again (so
    ``change`` must be a pure function of the manifest it is given); ConcurrentManifestError after
    MANIFEST_ATTEMPTS such rounds.
    """
    if not storage.is_gcs(str(repository)):
        with repository_lock(repository):
            updated = dict(change(read_manifest(repository)))
            write_manifest(repository, updated)
            return updated
    uri = storage.join(str(repository), MANIFEST_FILE)
    for attempt in range(MANIFEST_ATTEMPTS):
        current, generation = storage.read_json_generation(uri)
        updated = dict(change(current or {}))
        try:
            storage.write_if_generation(uri, _manifest_text(updated).encode("utf-8"), generation)
            return updated
        except storage.ConcurrentWriteError:
            time.sleep(random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)))
    raise ConcurrentManifestError(f"{uri} was replaced by other writers {MANIFEST_ATTEMPTS} times in a row")


def _manifest_text(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def serving_version(manifest: Mapping[str, Any]) -> int | None:
    """The version the ensembles are pinned to (older manifests: the latest published)."""
    version = manifest.get("serving_version", manifest.get("latest_version"))
    return None if version is None else int(version)


def write_text(uri: str, text: str) -> None:
    """Replace a file whole: a local temp file + rename (a polling Triton never reads half a config);
    a GCS object appears whole when its upload completes."""
    if storage.is_gcs(uri):
        with storage.open_output(uri) as stream:
            stream.write(text.encode("utf-8"))
        return
    path = Path(uri.removeprefix("file://"))
    temporary = path.with_name(f"{STAGING_PREFIX}{uuid.uuid4().hex}-{path.name}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
