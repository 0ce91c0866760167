"""One place for reading and writing files, so every stage accepts local paths (and later ``gs://``).

Stages never call ``open``/``os`` on data paths directly; they go through these helpers, which are
built on ``pyarrow.fs`` (local disk and Google Cloud Storage behind one interface).
"""

from __future__ import annotations

import json
import posixpath
from typing import IO, Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def join(base: str, *parts: str) -> str:
    """Join path parts with ``/``, keeping a URI scheme such as ``gs://`` intact."""
    return posixpath.join(base, *parts)


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), posixpath.abspath(uri)


def makedirs(uri: str) -> None:
    fs, path = _filesystem(uri)
    fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    fs, path = _filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def open_input(uri: str) -> IO[bytes]:
    fs, path = _filesystem(uri)
    return fs.open_input_stream(path)


def open_output(uri: str) -> IO[bytes]:
    fs, path = _filesystem(uri)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    return fs.open_output_stream(path)


def read_json(uri: str) -> Any:
    with open_input(uri) as stream:
        return json.loads(stream.read().decode("utf-8"))


def write_json(uri: str, payload: Any) -> None:
    with open_output(uri) as stream:
        stream.write(json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8"))


def read_table(uri: str) -> pd.DataFrame:
    """Read a CSV (every column as text, so validation sees the raw values) or Parquet file."""
    if uri.endswith(".parquet"):
        fs, path = _filesystem(uri)
        return pq.read_table(path, filesystem=fs).to_pandas()
    with open_input(uri) as stream:
        return pd.read_csv(stream, dtype=str, keep_default_na=False, na_values=[""], encoding_errors="replace")


def write_parquet(frame: pd.DataFrame, uri: str) -> None:
    with open_output(uri) as stream:
        frame.to_parquet(stream, index=False)
