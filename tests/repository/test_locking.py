"""Version bookkeeping under real concurrency: several processes allocate and record versions at once.

Each test starts real Python processes that wait for one signal and then, at the same moment, publish
retrained versions, republish the served one (``catalogue refresh-prior``, which reads the served version
and records the next) and activate versions (which rewrite the manifest's ``serving_version``). Afterwards
no two operations got one number, the manifest lists exactly the versions that were reported published, and
nothing recorded by one writer was dropped by another. Locally that is the repository lock
(:func:`fashionrec.repository.manifest.repository_lock`); on ``gs://`` it is the publisher's create-only
claims and generation-conditional manifest writes, raced here against the real emulator. The emulator
accepts ``ifGenerationMatch`` but does not enforce it, so its upload handler is wrapped to do what GCS does
(``gcs_preconditions`` in tests/conftest.py; it serves one request at a time, so check-and-write there is atomic, as on GCS).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.embeddings_file import write_embeddings
from fashionrec.repository.manifest import CLAIM_PREFIX, CONFIG_FILE, read_manifest
from fashionrec.repository.publish import publish_model_repository
from fashionrec.repository.versions import ensembles

if TYPE_CHECKING:
    from conftest import GcsPreconditions

SERVING = ServingConfig()
PRODUCTS = [f"P{i}" for i in range(6)]
START_TIMEOUT_S = 120  # a worker's imports on a busy 2-core machine
RACE_TIMEOUT_S = 240

# One worker process: wait for the go file, then run its operations back to back; print what it did as JSON.
WORKER = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
import pandas as pd
from fashionrec.config import ExportConfig, ServingConfig
from fashionrec.repository import versions
from fashionrec.repository.catalogue import refresh_prior
from fashionrec.repository.manifest import read_manifest, update_manifest
from fashionrec.repository.publish import ConcurrentPublishError, publish_model_repository

serving, repository = ServingConfig(), args["repository"]
events = pd.DataFrame({"customer_id": ["C1"], "product_id": ["P1"], "event_type": "click",
                       "timestamp": "2026-12-01T10:00:00Z"})

def publish():
    return publish_model_repository(args["embeddings"], args["blessing"], repository, serving).version

def refresh():
    return refresh_prior(repository, events, serving, ExportConfig()).version

def activate():
    latest = read_manifest(repository)["latest_version"]
    versions.activate(repository, latest, serving)
    return latest

def record():
    note = f"{args['ready']}:{time.time()}"
    update_manifest(repository, lambda manifest: dict(manifest, notes=[*manifest.get("notes", []), note]))
    return note

operation = {"publish": publish, "refresh": refresh, "activate": activate, "record": record}[args["role"]]
open(args["ready"], "w").close()
while not os.path.exists(args["go"]):
    time.sleep(0.002)
done, retries, started = [], 0, time.time()
while len(done) < args["count"]:
    try:
        done.append(operation())
    except ConcurrentPublishError:  # gs://: another writer replaced the manifest first; the caller publishes again
        retries += 1
print(json.dumps({"role": args["role"], "results": done, "retries": retries, "started": started,
                  "finished": time.time()}))
"""


def _export(folder: Path) -> tuple[str, str]:
    """A blessed export of PRODUCTS (no content tower: refresh-prior needs none)."""
    folder.mkdir(parents=True, exist_ok=True)
    embeddings = np.random.default_rng(7).normal(size=(len(PRODUCTS), 4)).astype(np.float32)
    write_embeddings(str(folder / "embeddings.parquet"), np.array(PRODUCTS), embeddings, np.zeros(len(PRODUCTS), bool),
                     np.zeros(len(PRODUCTS), np.float32))
    (folder / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    return str(folder / "embeddings.parquet"), str(folder / "blessing.json")


def _race(tmp_path: Path, repository: str, roles: list[tuple[str, int]]) -> list[dict]:
    """Run one worker process per (role, number of operations) at the same moment; their reports."""
    embeddings, blessing = _export(tmp_path / "export")
    go = tmp_path / "go"
    workers = []
    for index, (role, count) in enumerate(roles):
        ready = tmp_path / f"ready-{index}"
        args = {"role": role, "count": count, "repository": repository, "embeddings": embeddings,
                "blessing": blessing, "ready": str(ready), "go": str(go)}
        workers.append((ready, subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(ready.exists() for ready, _ in workers):
            assert all(process.poll() is None for _, process in workers), _outputs(workers)
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        go.touch()
        for _, process in workers:
            process.wait(timeout=RACE_TIMEOUT_S)
    finally:
        for _, process in workers:
            if process.poll() is None:
                process.kill()
    assert all(process.returncode == 0 for _, process in workers), _outputs(workers)
    return [json.loads(process.stdout.read().strip().splitlines()[-1]) for _, process in workers]


def _outputs(workers: list) -> str:
    return "\n".join(process.stderr.read()[-3000:] for _, process in workers if process.poll() is not None)


def _check_bookkeeping(repository: str, reports: list[dict]) -> dict:
    """Distinct numbers, all recorded, none lost; the workers really overlapped. Returns the manifest."""
    allocated = [v for report in reports if report["role"] in ("publish", "refresh") for v in report["results"]]
    assert len(allocated) == len(set(allocated)), f"a version number was taken twice: {reports}"
    manifest = read_manifest(repository)
    recorded = [int(entry["version"]) for entry in manifest["versions"]]
    assert recorded == sorted(set(allocated) | {1}), f"manifest {recorded} != published {sorted(allocated)}"
    assert manifest["latest_version"] == max(recorded)
    activated = [v for report in reports if report["role"] == "activate" for v in report["results"]]
    history = manifest["serving_history"]
    assert all(v in history for v in activated + allocated), f"serving_history {history} lost a switch"
    assert max(r["started"] for r in reports) < min(r["finished"] for r in reports), "the workers never overlapped"
    return manifest


def _pinned_ensemble_versions(repository: str) -> set[str]:
    """The version every ensemble's config is pinned to (its header names it)."""
    pins = set()
    for name in ensembles(SERVING):
        with storage.open_input(storage.join(repository, name, CONFIG_FILE)) as stream:
            pins.add(stream.readline().decode().rsplit("serving version ", 1)[1].rstrip(").\n"))
    return pins


def test_concurrent_publishes_refreshes_and_activations_on_a_local_repository(tmp_path: Path) -> None:
    repository = str(tmp_path / "repo")
    publish_model_repository(*_export(tmp_path / "first"), repository, SERVING)  # something to refresh and activate
    reports = _race(tmp_path, repository, [("publish", 3), ("refresh", 3), ("activate", 4)])
    manifest = _check_bookkeeping(repository, reports)
    recorded = {int(entry["version"]) for entry in manifest["versions"]}
    for model in (SERVING.customer_model_name, SERVING.ranking_model_name, SERVING.model_name):
        folders = {int(p.name) for p in (tmp_path / "repo" / model).iterdir() if p.name.isdigit()}
        assert folders == recorded, f"{model} holds versions {folders}, the manifest {recorded}"
    for entry in manifest["versions"]:  # each refresh read and extended the version served right before it
        update = entry.get("catalogue_update")
        if update:
            assert update["base_version"] == max(v for v in recorded if v < entry["version"]), manifest["versions"]
    assert _pinned_ensemble_versions(repository) == {str(manifest["serving_version"])}
    assert not [p for p in (tmp_path / "repo").rglob(".staging-*")], "a staged version was left behind"


@pytest.mark.parametrize("where", ["local", "gs"])
def test_concurrent_manifest_updates_lose_nothing(tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    """Two processes change the manifest over and over at once (update_manifest, as activations, rollbacks
    and experiments do): every change is kept."""
    if where == "gs":
        request.getfixturevalue("gcs_preconditions")
        repository = f"{request.getfixturevalue('gcs_emulator')}/locking-updates"
    else:
        repository = str(tmp_path / "repo")
    publish_model_repository(*_export(tmp_path / "first"), repository, SERVING)
    reports = _race(tmp_path, repository, [("record", 25), ("record", 25)])
    notes = read_manifest(repository)["notes"]
    assert sorted(notes) == sorted(note for report in reports for note in report["results"]), "a change was lost"
    assert [entry["version"] for entry in read_manifest(repository)["versions"]] == [1]
    assert max(r["started"] for r in reports) < min(r["finished"] for r in reports), "the workers never overlapped"


def test_concurrent_publishers_and_activations_on_the_emulator(tmp_path: Path, gcs_emulator: str,
                                                               gcs_preconditions: GcsPreconditions) -> None:
    repository = f"{gcs_emulator}/locking-race"
    publish_model_repository(*_export(tmp_path / "first"), repository, SERVING)
    reports = _race(tmp_path, repository, [("publish", 3), ("publish", 3), ("activate", 3)])
    manifest = _check_bookkeeping(repository, reports)
    recorded = {int(entry["version"]) for entry in manifest["versions"]}
    claims = {int(name.removeprefix(CLAIM_PREFIX)) for name in storage.list_dir(repository) if name.startswith(CLAIM_PREFIX)}
    assert recorded - {1} <= claims, "a recorded version was never claimed"
    assert gcs_preconditions.refused, "the race never made a conditional write fail: nothing was tested"
