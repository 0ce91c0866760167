"""The version folder's loaders refuse what cannot be served (the Triton models load with them)."""

from pathlib import Path

import numpy as np
import pytest

from fashionrec.contract import layout


def _folder(tmp_path: Path, table: np.ndarray, ids: list[str]) -> Path:
    np.save(tmp_path / layout.EMBEDDINGS_FILE, table)
    (tmp_path / layout.PRODUCT_IDS_FILE).write_text("".join(f"{pid}\n" for pid in ids), encoding="utf-8")
    return tmp_path


def test_a_sound_catalogue_loads_with_its_ids_as_bytes(tmp_path: Path) -> None:
    table, ids = layout.load_catalogue(_folder(tmp_path, np.eye(2, 3, dtype=np.float32), ["a", "é"]))
    assert ids == [b"a", "é".encode()] and table.shape == (2, 3)


@pytest.mark.parametrize(("table", "ids", "message"), [
    (np.eye(2, 3, dtype=np.float32), ["a"], "has 2 rows but product_ids.txt has 1 ids"),
    (np.array([[1.0, np.inf], [0.0, 1.0]], np.float32), ["a", "b"], "1 of 2 rows hold NaN or infinite values"),
    (np.ones(3, np.float32), ["a", "b", "c"], "expected a float matrix"),
    (np.ones((2, 2), np.int64), ["a", "b"], "expected a float matrix"),
    (np.eye(2, dtype=np.float32), ["a", "a"], "product ids must be non-empty and unique"),
])
def test_a_catalogue_that_cannot_be_served_is_refused(tmp_path: Path, table: np.ndarray, ids: list[str],
                                                       message: str) -> None:
    with pytest.raises(layout.CorruptVersion, match=message):
        layout.load_catalogue(_folder(tmp_path, table, ids))


def test_a_truncated_or_pickled_file_is_unreadable_not_loaded(tmp_path: Path) -> None:
    folder = _folder(tmp_path, np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    path = folder / layout.EMBEDDINGS_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(layout.CorruptVersion, match="product_embeddings.npy: unreadable"):
        layout.load_catalogue(folder)
    np.save(path, np.array([{"not": "an array"}], dtype=object), allow_pickle=True)
    with pytest.raises(layout.CorruptVersion, match="unreadable"):
        layout.load_catalogue(folder)


def test_a_prior_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / layout.PRIOR_FILE, np.zeros(3, np.float32))
    with pytest.raises(layout.CorruptVersion, match="expected 4 finite values"):
        layout.load_prior(tmp_path, 4)
