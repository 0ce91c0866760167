"""fashionrec.storage on local paths and on gs:// (a real gcp-storage-emulator), with the same tests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashionrec import storage


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty folder: a local temp path, or a unique prefix in the emulator's bucket."""
    if request.param == "local":
        return str(tmp_path / "root")
    return f"{request.getfixturevalue('gcs_emulator')}/{uuid.uuid4().hex}"


def _make_tree(base: Path) -> Path:
    """model/1/{model.py,data.bin}, model/config.pbtxt, recommend/1/ (empty), manifest.json."""
    (base / "model" / "1").mkdir(parents=True)
    (base / "model" / "1" / "model.py").write_text("print('hi')\n")
    (base / "model" / "1" / "data.bin").write_bytes(bytes(range(256)) * 10)
    (base / "model" / "config.pbtxt").write_text('name: "model"\n')
    (base / "recommend" / "1").mkdir(parents=True)
    (base / "manifest.json").write_text("{}\n")
    return base


def _tree_contents(base: Path) -> dict[str, bytes | None]:
    """Relative path -> bytes for files, None for folders."""
    return {
        path.relative_to(base).as_posix(): (path.read_bytes() if path.is_file() else None)
        for path in sorted(base.rglob("*"))
    }


def test_join_keeps_the_scheme() -> None:
    assert storage.join("gs://bucket/a", "b", "c.txt") == "gs://bucket/a/b/c.txt"
    assert storage.join("/data/a", "b") == "/data/a/b"


def test_json_round_trip_and_exists(root: str) -> None:
    uri = storage.join(root, "deep", "summary.json")
    assert not storage.exists(uri)
    storage.write_json(uri, {"b": [1, 2], "a": "é"})
    assert storage.exists(uri)
    assert storage.exists(storage.join(root, "deep"))  # a folder with something in it
    assert storage.read_json(uri) == {"a": "é", "b": [1, 2]}


def test_bytes_round_trip_and_overwrite(root: str) -> None:
    uri = storage.join(root, "blob.bin")
    payload = os.urandom(300_000)
    with storage.open_output(uri) as stream:
        stream.write(payload[:1000])
        stream.write(payload[1000:])
    with storage.open_input(uri) as stream:
        assert stream.read() == payload
    with storage.open_output(uri) as stream:
        stream.write(b"short")
    with storage.open_input(uri) as stream:
        assert stream.read() == b"short"


def test_missing_input_is_file_not_found(root: str) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open_input(storage.join(root, "absent.json"))
    with pytest.raises(FileNotFoundError):
        storage.list_dir(storage.join(root, "absent"))


def test_failed_gcs_write_leaves_no_object(gcs_emulator: str) -> None:
    uri = f"{gcs_emulator}/{uuid.uuid4().hex}/half.bin"
    with pytest.raises(RuntimeError), storage.open_output(uri) as stream:
        stream.write(b"partial")
        raise RuntimeError("crash mid-write")
    assert not storage.exists(uri)


def test_parquet_round_trip(root: str) -> None:
    frame = pd.DataFrame({"product_id": ["p1", "p2"], "price": [9.5, 20.0], "is_new": [True, False]})
    uri = storage.join(root, "ingested", "catalogue.parquet")
    storage.makedirs(storage.join(root, "ingested"))
    storage.write_parquet(frame, uri)
    pd.testing.assert_frame_equal(storage.read_table(uri), frame)


def test_array_round_trip_keeps_values_dtype_and_shape(root: str) -> None:
    array = np.array([[1.5, 0.0], [2.0, 7.25]], np.float64)
    uri = storage.join(root, "transformed", "target_counts.npy")
    storage.makedirs(storage.join(root, "transformed"))
    storage.write_array(uri, array)
    read = storage.read_array(uri)
    assert read.dtype == np.float64 and read.tolist() == [[1.5, 0.0], [2.0, 7.25]]


def test_an_array_file_never_unpickles(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        storage.read_array(str(path))


def test_csv_is_read_as_text(root: str) -> None:
    uri = storage.join(root, "raw", "events.csv")
    with storage.open_output(uri) as stream:
        stream.write(b"customer_id,price,note\n007,1.50,\n008,2,caf\xe9\n")
    frame = storage.read_table(uri)
    assert frame["customer_id"].tolist() == ["007", "008"]  # leading zeros kept: every column is text
    assert frame["price"].tolist() == ["1.50", "2"]
    assert frame["note"].isna().tolist() == [True, False]
    assert frame["note"].iloc[1] == "caf\ufffd"  # undecodable byte replaced, not fatal


def test_a_folder_of_parquet_parts_reads_as_one_table(root: str) -> None:
    folder = storage.join(root, "log", "events")
    parts = {"date=2026-01-02/part-b.parquet": ["c3"], "date=2026-01-01/part-b.parquet": ["c2"],
             "date=2026-01-01/part-a.parquet": ["c1"], "date=2026-01-03/_tmp/part-x.parquet": ["hidden"],
             "date=2026-01-03/.part-y.parquet.tmp": ["temporary"], "date=2026-01-03/part-z.parquet": ["c4"]}
    for rel, ids in parts.items():
        storage.write_parquet(pd.DataFrame({"customer_id": ids, "weight": [1.0] * len(ids)}), storage.join(folder, rel))
    storage.write_json(storage.join(folder, "_SUCCESS"), {})
    assert storage.parquet_parts(folder) == [storage.join(folder, rel) for rel in (
        "date=2026-01-01/part-a.parquet", "date=2026-01-01/part-b.parquet", "date=2026-01-02/part-b.parquet",
        "date=2026-01-03/part-z.parquet")]  # sorted by path; "." and "_" names are not parts
    frame = storage.read_table(folder)
    assert list(frame.columns) == ["customer_id", "weight"]  # no hive `date` column
    assert frame["customer_id"].tolist() == ["c1", "c2", "c3", "c4"]
    assert frame.index.tolist() == [0, 1, 2, 3]
    assert storage.list_files(storage.join(folder, "date=2026-01-02")) == ["part-b.parquet"]


def test_parts_written_by_different_tools_read_as_one_table(root: str) -> None:
    """A shop's log parts (pyarrow: string, with attribution columns) beside a pandas-written seed part
    (large_string, without them): one table, the missing columns null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = storage.join(root, "events")
    storage.makedirs(folder)
    log_part = pa.table({"customer_id": pa.array(["c1"], pa.string()), "arm": pa.array(["b"], pa.string())})
    seed_part = pa.table({"customer_id": pa.array(["c0"], pa.large_string())})
    for name, table in (("log.parquet", log_part), ("seed.parquet", seed_part)):
        with storage.open_output(storage.join(folder, name)) as stream:
            pq.write_table(table, stream)
    frame = storage.read_table(folder)
    assert frame["customer_id"].tolist() == ["c1", "c0"] and frame["arm"].tolist()[0] == "b"
    assert pd.isna(frame["arm"].tolist()[1])


def test_a_folder_without_parts_is_a_clear_error(root: str) -> None:
    folder = storage.join(root, "events")
    storage.write_json(storage.join(folder, "notes.json"), {})
    with pytest.raises(FileNotFoundError, match="holds no Parquet parts"):
        storage.read_table(folder)
    with pytest.raises(FileNotFoundError):
        storage.read_table(storage.join(root, "absent"))
    with pytest.raises(FileNotFoundError):
        storage.list_files(storage.join(root, "absent"))


def test_makedirs_then_write(root: str) -> None:
    folder = storage.join(root, "a", "b")
    storage.makedirs(folder)
    storage.makedirs(folder)  # idempotent
    storage.write_json(storage.join(folder, "x.json"), 1)
    assert storage.list_dir(folder) == ["x.json"]


def test_list_dir_names_files_and_folders(root: str) -> None:
    for name in ("b.txt", "a.txt", "sub/c.txt", "sub/deeper/d.txt"):
        with storage.open_output(storage.join(root, name)) as stream:
            stream.write(name.encode())
    assert storage.list_dir(root) == ["a.txt", "b.txt", "sub"]
    assert storage.list_dir(root + "/") == ["a.txt", "b.txt", "sub"]
    assert storage.list_dir(storage.join(root, "sub")) == ["c.txt", "deeper"]
    with pytest.raises(NotADirectoryError):
        storage.list_dir(storage.join(root, "a.txt"))


def test_copy_tree_and_download_tree_round_trip(root: str, tmp_path: Path) -> None:
    source = _make_tree(tmp_path / "source")
    target = storage.join(root, "repository")
    written = storage.copy_tree(str(source), target)
    assert [uri.removeprefix(target + "/") for uri in written] == [
        "manifest.json", "model/1/data.bin", "model/1/model.py", "model/config.pbtxt", "recommend/1/",
    ]
    assert storage.list_dir(target) == ["manifest.json", "model", "recommend"]
    assert storage.list_dir(storage.join(target, "recommend")) == ["1"]
    assert storage.list_dir(storage.join(target, "recommend", "1")) == []  # empty folder survives
    assert storage.exists(storage.join(target, "recommend", "1"))
    back = storage.download_tree(target, str(tmp_path / "back"))
    assert _tree_contents(Path(back)) == _tree_contents(source)


def test_copy_tree_needs_a_local_folder(root: str, tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        storage.copy_tree(str(tmp_path / "absent"), root)


def test_local_copy_of_file_and_folder(root: str, tmp_path: Path) -> None:
    storage.copy_tree(str(_make_tree(tmp_path / "source")), storage.join(root, "repo"))
    with storage.local_copy(storage.join(root, "repo", "model", "config.pbtxt")) as path:
        assert Path(path).read_text() == 'name: "model"\n'
    with storage.local_copy(storage.join(root, "repo")) as path:
        assert _tree_contents(Path(path)) == _tree_contents(tmp_path / "source")
    if storage.is_gcs(root):
        assert not Path(path).exists()  # the temporary download is removed
    else:
        assert path == storage.join(root, "repo")  # local input is used in place


def test_rename_moves_one_file(root: str) -> None:
    source, target = storage.join(root, "staging", "m.json"), storage.join(root, "final", "m.json")
    storage.write_json(source, {"v": 1})
    storage.rename(source, target)
    assert not storage.exists(source)
    assert storage.read_json(target) == {"v": 1}


def test_bucket_root_and_unsupported_schemes(gcs_emulator: str) -> None:
    assert storage.exists(gcs_emulator)
    assert not storage.exists("gs://no-such-bucket-fashionrec")
    with pytest.raises(ValueError, match="unsupported"):
        storage.exists("s3://bucket/key")


def test_a_json_object_is_read_with_the_generation_a_conditional_write_expects(gcs_emulator: str) -> None:
    uri = f"{gcs_emulator}/{uuid.uuid4().hex}/manifest.json"
    assert storage.read_json_generation(uri) == (None, 0)  # absent: 0, what "must not exist yet" expects
    storage.write_if_generation(uri, b'{"v": 1}', 0)
    payload, generation = storage.read_json_generation(uri)
    assert payload == {"v": 1} and generation > 0
    storage.write_if_generation(uri, b'{"v": 2}', generation)
    assert storage.read_json(uri) == {"v": 2}


def test_conditional_writes_are_for_gcs_only(tmp_path: Path) -> None:
    """Local repositories use a file lock instead (fashionrec.repository.manifest.repository_lock)."""
    with pytest.raises(ValueError, match="gs://"):
        storage.write_if_generation(str(tmp_path / "manifest.json"), b"{}", 0)


def test_the_emulator_still_ignores_generation_preconditions(gcs_emulator: str) -> None:
    """Why the tests that race writers wrap the emulator's upload handler (``gcs_preconditions`` in
    tests/conftest.py): gcp-storage-emulator accepts ``ifGenerationMatch`` without enforcing it. When this
    fails, an upgrade enforces them and the wrapper can go."""
    uri = f"{gcs_emulator}/{uuid.uuid4().hex}/claim"
    storage.write_if_generation(uri, b"first", 0)
    storage.write_if_generation(uri, b"second", 0)  # GCS answers 412 here: ConcurrentWriteError
    with storage.open_input(uri) as stream:
        assert stream.read() == b"second"
