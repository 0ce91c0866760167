"""A version is checked with the serving code's own loaders before any config names it: a corrupt one
is refused with the file and the fault, and the repository keeps serving what it served."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fashionrec.config import ServingConfig
from fashionrec.contract import layout
from fashionrec.contract.context import CONTEXT_FILE
from fashionrec.embeddings_file import write_embeddings
from fashionrec.repository import versions
from fashionrec.repository.check import InvalidVersion, check_version
from fashionrec.repository.manifest import CONFIG_FILE, MANIFEST_FILE
from fashionrec.repository.publish import publish_model_repository

SERVING = ServingConfig()
RANK, CUSTOMER, BLEND = SERVING.ranking_model_name, SERVING.customer_model_name, SERVING.blend_model_name


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """Two published versions of a 20-product catalogue; version 1 served."""
    ids = np.array([f"P{i:03d}" for i in range(20)])
    write_embeddings(str(tmp_path / "embeddings.parquet"), ids,
                     np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32), np.zeros(20, bool))
    (tmp_path / "blessing.json").write_text(json.dumps({"blessed": True}))
    (tmp_path / layout.CANDIDATE_SETS_FILE).write_text(json.dumps({"sale": ["P001", "P002"]}))
    repo = tmp_path / "repo"
    for _ in range(2):
        publish_model_repository(str(tmp_path / "embeddings.parquet"), str(tmp_path / "blessing.json"), str(repo),
                                 SERVING)
    versions.rollback(str(repo), SERVING, to_version=1)
    return repo


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan_rows(path: Path) -> None:
    table = np.load(path)
    table[::5] = np.nan
    np.save(path, table)


def _drop_last_id(path: Path) -> None:
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


FAULTS: dict[str, tuple[str, str, Callable[[Path], None], str]] = {
    # name: (model, file, corruption, what the refusal says)
    "truncated embeddings": (RANK, layout.EMBEDDINGS_FILE, _truncate, "product_embeddings.npy: unreadable"),
    "NaN rows": (RANK, layout.EMBEDDINGS_FILE, _nan_rows, "4 of 20 rows hold NaN or infinite values"),
    "ids short of rows": (CUSTOMER, layout.PRODUCT_IDS_FILE, _drop_last_id, "has 20 rows but product_ids.txt has 19"),
    "model code missing": (BLEND, "model.py", Path.unlink, "model.py is missing"),
    "contract missing": (CUSTOMER, "fashionrec/contract/ops.py", Path.unlink, "fashionrec/contract/ops.py is missing"),
    "unknown product in a candidate set": (
        RANK, layout.CANDIDATE_SETS_FILE, lambda p: p.write_text(json.dumps({"sale": ["P001", "NOPE"]})),
        "unknown product ids in candidate set 'sale': 'NOPE'"),
    "pooling unknown": (CUSTOMER, layout.AGGREGATION_FILE, lambda p: p.write_text(json.dumps({"pooling": "max"})),
                        "pooling must be one of"),
    "ranking's pooling unknown": (RANK, layout.AGGREGATION_FILE, lambda p: p.write_text(json.dumps({"pooling": "max"})),
                                  "pooling must be one of"),  # rank_products pools recommend's histories
    "ranking's context tables unreadable": (RANK, CONTEXT_FILE, lambda p: p.write_text('{"tables": {"hour": [[1]]}}'),
                                            "context.json: not a context table file"),
    "context tables unreadable": (CUSTOMER, CONTEXT_FILE, lambda p: p.write_text('{"tables": {"hour": [[1, 2]]}}'),
                                  "context.json: not a context table file"),
    "context tables of another width": (
        CUSTOMER, CONTEXT_FILE, lambda p: p.write_text(json.dumps({"tables": {"weekday": [[0.0] * 3] * 8}})),
        "context.json: tables {'weekday': 3} are not 4 wide"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_corrupt_version_is_refused_before_any_config_or_manifest_names_it(repository: Path, fault: str) -> None:
    model, name, corrupt, message = FAULTS[fault]
    before = {path: path.read_bytes() for path in [repository / MANIFEST_FILE, *repository.glob(f"*/{CONFIG_FILE}")]}
    corrupt(repository / model / "2" / name)
    with pytest.raises(InvalidVersion, match=f"version 2: {model}: .*{message}"):
        versions.activate(str(repository), 2, SERVING)
    assert {path: path.read_bytes() for path in before} == before  # still serving version 1, untouched


def test_a_sound_version_passes_and_a_missing_model_is_named(repository: Path) -> None:
    check_version(str(repository), 2, SERVING)
    for path in sorted((repository / BLEND / "2").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (repository / BLEND / "2").rmdir()
    with pytest.raises(InvalidVersion, match=f"version 2: {BLEND}/2 is missing"):
        check_version(str(repository), 2, SERVING)


def test_a_ranking_folder_without_pooling_settings_passes_as_versions_published_before_it_pooled(
        repository: Path) -> None:
    (repository / RANK / "2" / layout.AGGREGATION_FILE).unlink()  # its own model.py never reads one
    check_version(str(repository), 2, SERVING)
    (repository / CUSTOMER / "2" / layout.AGGREGATION_FILE).unlink()
    with pytest.raises(InvalidVersion, match=f"version 2: {CUSTOMER}: .*aggregation.json"):
        check_version(str(repository), 2, SERVING)
