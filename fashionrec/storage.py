"""One place for reading and writing files, so every stage accepts local paths and ``gs://`` URIs.

Stages never call ``open``/``os`` on data paths directly; they go through these helpers. Local paths
(and ``file://`` URIs) use the standard library; ``gs://bucket/key`` URIs use ``google-cloud-storage``,
the client Beam's own ``gcsio`` uses, so one set of credentials (Application Default Credentials)
serves both. With ``STORAGE_EMULATOR_HOST`` set (e.g. ``http://127.0.0.1:9023``) that client talks to
the emulator with anonymous credentials; nothing else needs configuring.

Why not ``pyarrow.fs``: ``FileSystem.from_uri("gs://...")`` ignores ``STORAGE_EMULATOR_HOST`` (it asks
for OAuth tokens from Google), and its non-recursive listing leaves out folders that have no marker
object, which is the usual case on GCS.

Why not fsspec/gcsfs (measured with gcsfs 2026.10.1, fsspec 2026.9.0, which resolve with constraints.txt,
against the test emulator): listing, ``exists``, recursive put/get and pandas' ``gs://`` Parquet worked, but
(1) by default each new bucket costs a 60 s timeout against the emulator (gcsfs probes the bucket type over
gRPC unless ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``), and pandas under the emulator hangs unless every
call passes ``storage_options={"token": "anon"}``; (2) writes take no generation precondition beyond
"create only" (documented as experimental), so the manifest's compare-and-swap (:func:`write_if_generation`)
would still need this client; (3) a ``with fs.open(uri, "wb")`` block that raises still uploads what was
written, breaking :func:`open_output`'s all-or-nothing contract; (4) ``mv`` tries a ``moveTo`` call first
(501 on the emulator: 33 s of retries before copy-and-delete); (5) an empty folder is not uploaded as a
marker, and pandas adds hive ``date=...`` folders as a column, unlike :func:`read_table`. Four new packages
for the same client underneath, and more code to route around them than this module has.

Why not ``tf.io.gfile``: TensorFlow 2.21's ``gs://`` filesystem ignores ``STORAGE_EMULATOR_HOST`` (it
resolves ``www.googleapis.com``: the emulator cannot be reached), has no conditional writes, and importing
TensorFlow (~3 s) into this foundation module would drag it into every stage and the shop
(tests/test_layers.py keeps the lower layers framework-free).

GCS semantics callers must know (there are no folders, only object names containing ``/``):

- A single object write is all-or-nothing: :func:`open_output` uploads when the stream is closed and
  uploads nothing when the ``with`` block raises. Readers see the old object or the new one, never half.
  :func:`open_input` reads the generation it found, so on GCS a concurrent overwrite makes the read
  fail (404) instead of mixing two versions (the emulator ignores generations; not tested there).
- Several objects are never written atomically, and there is no atomic rename (:func:`rename` is copy
  then delete; renaming a folder is one copy per object). So a publisher that readers poll must order
  its writes: upload every file of the new version folders first (:func:`copy_tree`), then the small
  files that point at them (``config.pbtxt`` if it changed), then the manifest last. A reader that
  trusts only what the manifest names never sees a half-written version; a reader that scans folders
  (Triton polling) can, for a moment, see a version folder still filling up.
- :func:`makedirs` does nothing on GCS, and a "folder" exists only while some object name starts with
  it, so ``exists`` of a folder that was made but not yet written to is ``False`` there. Empty local
  folders are uploaded as zero-byte ``name/`` marker objects (the convention of the Cloud console,
  gcsfuse and Triton) and come back as empty folders from :func:`download_tree`.
- There are no file locks: two writers to one object race and the last close wins, unless the writer
  states which generation it expects (:func:`write_if_generation`: 0 = the object must not exist yet),
  which GCS enforces; a writer that lost the race gets :class:`ConcurrentWriteError`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:  # imported lazily: ~0.7 s that local-only runs need not pay
    from google.cloud import storage as gcs

GCS_PREFIX = "gs://"
FILE_PREFIX = "file://"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # read by google-cloud-storage itself


def is_gcs(uri: str) -> bool:
    """True for ``gs://bucket/...`` URIs, False for local paths."""
    return uri.startswith(GCS_PREFIX)


def join(base: str, *parts: str) -> str:
    """Join path parts with ``/``, keeping a URI scheme such as ``gs://`` intact."""
    return posixpath.join(base, *parts)


# ----------------------------------------------------------------------------------------------------
# Addressing


def _local_path(uri: str) -> str:
    """The absolute local path behind a plain path or ``file://`` URI; other schemes are an error."""
    path = uri.removeprefix(FILE_PREFIX)
    if "://" in path:
        raise ValueError(f"unsupported URI scheme (only local paths and gs:// are): {uri}")
    return os.path.abspath(path)


def _split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``); the key may be empty (the bucket root)."""
    bucket, _, key = uri.removeprefix(GCS_PREFIX).partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def _folder_prefix(key: str) -> str:
    """The object-name prefix of everything inside folder ``key`` ('' for the bucket root)."""
    stripped = key.strip("/")
    return f"{stripped}/" if stripped else ""


@functools.lru_cache(maxsize=4)
def _client_for(emulator_host: str | None) -> gcs.Client:
    """One client per endpoint: the library reads STORAGE_EMULATOR_HOST when the client is built."""
    del emulator_host  # only the cache key; google-cloud-storage reads the variable itself
    from google.cloud import storage as gcs

    return gcs.Client()


def _client() -> gcs.Client:
    return _client_for(os.environ.get(EMULATOR_ENV))


def _blob(uri: str) -> gcs.Blob:
    bucket, key = _split_gcs(uri)
    if not key or key.endswith("/"):
        raise IsADirectoryError(f"{uri} names a folder, not an object")
    return _client().bucket(bucket).blob(key)


# ----------------------------------------------------------------------------------------------------
# Folders


def makedirs(uri: str) -> None:
    """Create a folder and its parents locally; a no-op on GCS, where folders do not exist."""
    if not is_gcs(uri):
        os.makedirs(_local_path(uri), exist_ok=True)


def exists(uri: str) -> bool:
    """True if a file or a non-empty folder (or marker) is there; on GCS a bare bucket URI checks the bucket."""
    if not is_gcs(uri):
        return os.path.exists(_local_path(uri))
    bucket_name, key = _split_gcs(uri)
    bucket = _client().bucket(bucket_name)
    if not key.strip("/"):
        return bucket.exists()
    if not key.endswith("/") and bucket.blob(key).exists():
        return True
    return any(True for _ in _client().list_blobs(bucket_name, prefix=_folder_prefix(key), max_results=1))


def list_dir(uri: str) -> list[str]:
    """Sorted names (not paths) of the files and folders directly inside ``uri``, like ``os.listdir``.

    Raises FileNotFoundError when nothing is there and NotADirectoryError when ``uri`` is a file.
    """
    if not is_gcs(uri):
        return sorted(os.listdir(_local_path(uri)))
    bucket, key = _split_gcs(uri)
    prefix = _folder_prefix(key)
    listing = _client().list_blobs(bucket, prefix=prefix, delimiter="/")
    names = [blob.name[len(prefix):] for blob in listing]  # iterate first: prefixes fill in while paging
    folders = [sub[len(prefix):].rstrip("/") for sub in listing.prefixes]
    children = sorted({name for name in names if name} | set(folders))
    if children or "" in names or not prefix:  # "" is the folder's own marker: an empty folder
        return children
    if exists(uri):
        raise NotADirectoryError(f"{uri} is a file")
    raise FileNotFoundError(f"no such folder: {uri}")


# ----------------------------------------------------------------------------------------------------
# Single files


def open_input(uri: str) -> IO[bytes]:
    """A binary, seekable stream; FileNotFoundError if absent. On GCS it reads one generation only."""
    if not is_gcs(uri):
        return open(_local_path(uri), "rb")
    blob = _blob(uri)
    current = blob.bucket.get_blob(blob.name)  # fills in the generation, so an overwrite cannot mix in
    if current is None:
        raise FileNotFoundError(f"no such object: {uri}")
    return current.open("rb")


def open_output(uri: str) -> IO[bytes]:
    """A binary stream that creates/overwrites ``uri``; local parent folders are created.

    On GCS the object appears when the stream is closed, and not at all if the ``with`` block raises.
    """
    if not is_gcs(uri):
        path = _local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")
    return _blob(uri).open("wb", ignore_flush=True)  # pyarrow/pandas call flush() mid-write


class ConcurrentWriteError(RuntimeError):
    """A conditional GCS write found another generation of the object than the one it expected."""


def read_json_generation(uri: str) -> tuple[Any, int]:
    """A GCS JSON object and the generation it was read at; (None, 0) when it does not exist (0 is the
    generation a conditional write expects of an object that must not exist yet)."""
    blob = _blob(uri)
    current = blob.bucket.get_blob(blob.name)
    if current is None:
        return None, 0
    generation = int(current.generation)  # before the download, which refreshes the properties from its headers
    return json.loads(current.download_as_bytes(if_generation_match=generation).decode("utf-8")), generation


def write_if_generation(uri: str, data: bytes, generation: int) -> None:
    """Write a GCS object only if its generation is still ``generation`` (0: only if it does not exist);
    ConcurrentWriteError otherwise, leaving the object as the other writer left it."""
    from google.api_core.exceptions import PreconditionFailed

    if not is_gcs(uri):
        raise ValueError(f"conditional writes are for gs:// objects (local folders use a file lock): {uri}")
    try:
        _blob(uri).upload_from_string(data, if_generation_match=generation)
    except PreconditionFailed as error:
        raise ConcurrentWriteError(f"{uri} changed since generation {generation} was read") from error


def read_json(uri: str) -> Any:
    with open_input(uri) as stream:
        return json.loads(stream.read().decode("utf-8"))


def write_json(uri: str, payload: Any) -> None:
    with open_output(uri) as stream:
        stream.write(json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_array(uri: str) -> np.ndarray:
    """A numpy array from a ``.npy`` file (no pickles)."""
    with open_input(uri) as stream:
        return np.load(io.BytesIO(stream.read()), allow_pickle=False)


def write_array(uri: str, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    with open_output(uri) as stream:
        stream.write(buffer.getvalue())


def read_table(uri: str) -> pd.DataFrame:
    """Read a CSV (every column as text, so validation sees the raw values) or Parquet file, or a folder
    of Parquet parts (:func:`parquet_parts`) as one table.

    Rows always come back numbered 0..n-1: a pandas index stored in the Parquet file (e.g. of a filtered
    frame) is not data and would misalign row-wise checks. A folder's parts are concatenated in sorted
    path order (e.g. ``date=2026-01-01/part-...``); hive partition folders (``date=...``) add no column.
    """
    if _is_local_folder(uri):
        return _read_parts(uri)
    try:
        return _read_file(uri)
    except FileNotFoundError:
        if is_gcs(uri) and _has_objects_under(uri):  # no object by that name, but a "folder" of them
            return _read_parts(uri)
        raise


def _read_file(uri: str) -> pd.DataFrame:
    if uri.endswith(".parquet"):
        if not is_gcs(uri):
            return pq.read_table(_local_path(uri)).to_pandas().reset_index(drop=True)
        with open_input(uri) as stream:
            return pq.read_table(stream).to_pandas().reset_index(drop=True)
    with open_input(uri) as stream:
        return pd.read_csv(stream, dtype=str, keep_default_na=False, na_values=[""], encoding_errors="replace")


def _is_local_folder(uri: str) -> bool:
    return not is_gcs(uri) and os.path.isdir(_local_path(uri))


def _has_objects_under(uri: str) -> bool:
    bucket, key = _split_gcs(uri)
    return any(True for _ in _client().list_blobs(bucket, prefix=_folder_prefix(key), max_results=1))


def list_files(uri: str) -> list[str]:
    """Sorted ``/``-separated paths, relative to folder ``uri``, of every file under it (recursively).

    FileNotFoundError when there is no such folder (on GCS: when no object name starts with it).
    GCS folder markers (``name/`` objects) are not files and are left out.
    """
    if not is_gcs(uri):
        root = _local_path(uri)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no such folder: {uri}")
        return [rel for rel in _relative_files(root) if not rel.endswith("/")]
    bucket, key = _split_gcs(uri)
    prefix = _folder_prefix(key)
    names = [blob.name[len(prefix):] for blob in _client().list_blobs(bucket, prefix=prefix)]
    if not names:
        raise FileNotFoundError(f"no such folder: {uri}")
    return sorted(name for name in names if name and not name.endswith("/"))


def parquet_parts(uri: str) -> list[str]:
    """The URIs of the Parquet parts under folder ``uri`` (recursively), in sorted path order.

    A part is a ``*.parquet`` file; names with a component starting with ``.`` or ``_`` are not parts
    (temporary files being written, ``_SUCCESS`` markers, ``_temporary/`` folders). FileNotFoundError,
    saying so, when the folder is absent or holds no parts.
    """
    parts = [join(uri, rel) for rel in list_files(uri)
             if rel.endswith(".parquet") and not any(piece.startswith((".", "_")) for piece in rel.split("/"))]
    if not parts:
        raise FileNotFoundError(f"{uri} holds no Parquet parts (*.parquet files, searched recursively)")
    return parts


def _read_parts(uri: str) -> pd.DataFrame:
    """Every part of folder ``uri`` as one table, each part read as a single file (no partition columns)."""
    tables = []
    for part in parquet_parts(uri):
        if is_gcs(part):
            with open_input(part) as stream:
                tables.append(pq.read_table(stream))
        else:
            tables.append(pq.read_table(_local_path(part), partitioning=None))
    # "permissive": parts written by different tools may differ in width (string / large_string) or miss columns
    table = pa.concat_tables(tables, promote_options="permissive")  # pandas metadata: the first part's
    return table.to_pandas().reset_index(drop=True)


def write_parquet(frame: pd.DataFrame, uri: str) -> None:
    with open_output(uri) as stream:
        frame.to_parquet(stream, index=False)


def rename(source: str, target: str) -> None:
    """Move one file. Atomic locally (``os.replace``); on GCS a server-side copy then a delete, so for
    a moment both names exist (each complete). Both URIs must be local, or both on GCS."""
    if is_gcs(source) != is_gcs(target):
        raise ValueError(f"rename needs both URIs local or both gs://: {source} -> {target}")
    if not is_gcs(source):
        path = _local_path(target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(_local_path(source), path)
        return
    old, new = _blob(source), _blob(target)
    token, _, _ = new.rewrite(old)
    while token is not None:  # large objects across locations/storage classes take several calls
        token, _, _ = new.rewrite(old, token=token)
    old.delete()


# ----------------------------------------------------------------------------------------------------
# Folder trees


def remove(uri: str) -> None:
    """Delete a file or a whole folder; nothing there is no error. On GCS: every object under the name."""
    if not is_gcs(uri):
        path = _local_path(uri)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        return
    bucket_name, key = _split_gcs(uri)
    bucket = _client().bucket(bucket_name)
    blobs = list(_client().list_blobs(bucket_name, prefix=_folder_prefix(key)))
    if bucket.blob(key).exists():
        blobs.append(bucket.blob(key))
    for blob in blobs:
        blob.delete()


def copy_tree(local_dir: str, uri: str) -> list[str]:
    """Copy local folder ``local_dir`` (recursively) into ``uri``; return the URIs written, in order.

    Files go up in sorted path order, one object each (see the module notes on ordering); an empty
    folder becomes a ``name/`` marker object. Existing objects with the same names are overwritten.
    """
    source = _local_path(local_dir)
    if not os.path.isdir(source):
        raise NotADirectoryError(f"not a local folder: {local_dir}")
    if not is_gcs(uri):
        target = _local_path(uri)
        shutil.copytree(source, target, dirs_exist_ok=True)
        return [join(uri, rel) for rel in _relative_files(source)]
    written = []
    bucket_name, key = _split_gcs(uri)
    bucket = _client().bucket(bucket_name)
    prefix = _folder_prefix(key)
    if not os.listdir(source) and prefix:  # an empty folder still exists remotely, as its own marker
        bucket.blob(prefix).upload_from_string(b"")
        written.append(f"{GCS_PREFIX}{bucket_name}/{prefix}")
    for rel in _relative_files(source):
        if rel.endswith("/"):
            bucket.blob(prefix + rel).upload_from_string(b"")
        else:
            bucket.blob(prefix + rel).upload_from_filename(os.path.join(source, rel))
        written.append(f"{GCS_PREFIX}{bucket_name}/{prefix}{rel}")
    return written


def _relative_files(root: str) -> list[str]:
    """Sorted ``/``-separated paths under ``root`` of files, plus ``name/`` for empty folders."""
    found = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        rel = "" if rel == "." else f"{rel}/"
        found.extend(rel + name for name in files)
        if not dirs and not files and rel:
            found.append(rel)
    return sorted(found)


def download_tree(uri: str, local_dir: str) -> str:
    """Copy everything under ``uri`` into local folder ``local_dir`` (created); return ``local_dir``.

    FileNotFoundError if nothing is there. Object names that would land outside ``local_dir``
    (``..`` parts, absolute names) are refused with ValueError.
    """
    target = _local_path(local_dir)
    if not is_gcs(uri):
        shutil.copytree(_local_path(uri), target, dirs_exist_ok=True)
        return local_dir
    bucket, key = _split_gcs(uri)
    prefix = _folder_prefix(key)
    blobs = list(_client().list_blobs(bucket, prefix=prefix))
    if not blobs:
        raise FileNotFoundError(f"no such folder: {uri}")
    os.makedirs(target, exist_ok=True)
    for blob in blobs:
        rel = blob.name[len(prefix):]
        destination = _inside(target, rel)
        if rel.endswith("/") or not rel:
            os.makedirs(destination, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            blob.download_to_filename(destination)
    return local_dir


def _inside(root: str, rel: str) -> str:
    """``root/rel`` after checking it stays inside ``root`` (object names may contain ``..``)."""
    path = os.path.normpath(os.path.join(root, rel))
    if path != root and not path.startswith(root.rstrip(os.sep) + os.sep):
        raise ValueError(f"object name {rel!r} would be written outside {root}")
    return path


@contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """Yield a local path holding the file or folder at ``uri``, for libraries that only read local files.

    Local input is yielded as is (no copy). A gs:// object or folder is downloaded into a temporary
    folder, under its own base name, and removed on exit; changes made to the copy are discarded.
    """
    if not is_gcs(uri):
        yield _local_path(uri)
        return
    bucket_name, key = _split_gcs(uri)
    is_object_name = bool(key) and not key.endswith("/")
    blob = _client().bucket(bucket_name).get_blob(key) if is_object_name else None
    with tempfile.TemporaryDirectory(prefix="fashionrec-") as temp_dir:
        path = os.path.join(temp_dir, posixpath.basename(key.rstrip("/")) or bucket_name)
        if blob is not None:
            blob.download_to_filename(path)
        else:
            download_tree(uri, path)
        yield path


@contextmanager
def local_output(uri: str) -> Iterator[str]:
    """Yield a local folder to write into; for gs:// it is uploaded to ``uri`` when the block succeeds.

    For libraries that only write local files (TensorFlow cannot reach every GCS endpoint): a stage
    writes as usual and nothing is uploaded if it fails, so ``uri`` never holds a half-written output.
    """
    if not is_gcs(uri):
        makedirs(uri)
        yield _local_path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="fashionrec-out-") as temp_dir:
        yield temp_dir
        copy_tree(temp_dir, uri)


def upload_file(local_path: str, uri: str) -> None:
    """Copy one local file to ``uri`` (local or gs://) as a single all-or-nothing write."""
    with open(local_path, "rb") as source, open_output(uri) as target:
        shutil.copyfileobj(source, target)
