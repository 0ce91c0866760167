"""Publishing to a gs:// repository without a lock: claims and generation preconditions.

The GCS emulator accepts ``ifGenerationMatch`` but does not enforce it, so its upload handler is
wrapped (``gcs_preconditions`` in tests/conftest.py) to do what GCS does (answer 412 when the object's
generation is not the expected one; 0 means "must not exist") and to record every conditional upload; the races are staged inside that handler,
at the moment the request arrives. Everything else is the real emulator and the real client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from google.cloud import storage as gcs

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.embeddings_file import write_embeddings
from fashionrec.repository.manifest import CLAIM_PREFIX, CONFIG_FILE, MANIFEST_FILE
from fashionrec.repository.publish import ConcurrentPublishError, publish_model_repository

if TYPE_CHECKING:
    from conftest import GcsPreconditions

SERVING = ServingConfig()


@pytest.fixture
def export(tmp_path: Path) -> tuple[str, str]:
    embeddings = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    write_embeddings(str(tmp_path / "embeddings.parquet"), np.array([f"P{i}" for i in range(6)]), embeddings,
                     np.zeros(6, bool))
    (tmp_path / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    return str(tmp_path / "embeddings.parquet"), str(tmp_path / "blessing.json")


def _generation(uri: str) -> int:
    bucket, _, key = uri.removeprefix("gs://").partition("/")
    return int(gcs.Client().bucket(bucket).get_blob(key).generation)


def _key(repository: str, name: str) -> str:
    return f"{repository.removeprefix('gs://').partition('/')[2]}/{name}"


def test_each_publish_claims_its_number_and_replaces_only_the_manifest_it_read(
        gcs_emulator: str, gcs_preconditions: GcsPreconditions, export: tuple[str, str]) -> None:
    repository = f"{gcs_emulator}/claims-in-order"
    assert publish_model_repository(*export, repository, SERVING).version == 1
    first_manifest = _generation(f"{repository}/{MANIFEST_FILE}")
    assert publish_model_repository(*export, repository, SERVING).version == 2
    assert gcs_preconditions.conditional == [
        (_key(repository, f"{CLAIM_PREFIX}1"), 0), (_key(repository, MANIFEST_FILE), 0),
        (_key(repository, f"{CLAIM_PREFIX}2"), 0), (_key(repository, MANIFEST_FILE), first_manifest),
    ]
    manifest = storage.read_json(f"{repository}/{MANIFEST_FILE}")
    assert [entry["version"] for entry in manifest["versions"]] == [1, 2] and manifest["serving_version"] == 2


def test_a_number_another_publisher_claims_first_is_skipped(
        gcs_emulator: str, gcs_preconditions: GcsPreconditions, export: tuple[str, str]) -> None:
    repository = f"{gcs_emulator}/claim-race"
    publish_model_repository(*export, repository, SERVING)
    gcs_preconditions.races[_key(repository, f"{CLAIM_PREFIX}2")] = b'{"claimed_at": "by another run"}'
    assert publish_model_repository(*export, repository, SERVING).version == 3
    assert [name for name, _ in gcs_preconditions.conditional[2:4]] == [
        _key(repository, f"{CLAIM_PREFIX}2"), _key(repository, f"{CLAIM_PREFIX}3")]


def test_a_requested_number_another_publisher_holds_is_refused(
        gcs_emulator: str, gcs_preconditions: GcsPreconditions, export: tuple[str, str]) -> None:
    repository = f"{gcs_emulator}/requested-race"
    gcs_preconditions.races[_key(repository, f"{CLAIM_PREFIX}5")] = b"{}"
    with pytest.raises(ConcurrentPublishError, match="version 5 is being published by another run"):
        publish_model_repository(*export, repository, SERVING, version=5)
    assert not storage.exists(f"{repository}/{MANIFEST_FILE}")


def test_a_manifest_changed_meanwhile_fails_the_publish_and_switches_nothing(
        gcs_emulator: str, gcs_preconditions: GcsPreconditions, export: tuple[str, str]) -> None:
    repository = f"{gcs_emulator}/manifest-race"
    publish_model_repository(*export, repository, SERVING)
    pinned = storage.read_json(f"{repository}/{MANIFEST_FILE}")
    configs = {model: _read_text(f"{repository}/{model}/{CONFIG_FILE}") for model in
               (SERVING.model_name, SERVING.ranking_model_name, SERVING.customer_model_name)}
    theirs = json.dumps(dict(pinned, note="written by another publisher")).encode()
    gcs_preconditions.races[_key(repository, MANIFEST_FILE)] = theirs
    with pytest.raises(ConcurrentPublishError, match="nothing names or serves version 2"):
        publish_model_repository(*export, repository, SERVING)
    assert storage.read_json(f"{repository}/{MANIFEST_FILE}") == json.loads(theirs)  # theirs stands
    assert {model: _read_text(f"{repository}/{model}/{CONFIG_FILE}") for model in configs} == configs
    assert publish_model_repository(*export, repository, SERVING).version == 3  # 2 stays claimed


def _read_text(uri: str) -> str:
    with storage.open_input(uri) as stream:
        return stream.read().decode("utf-8")
