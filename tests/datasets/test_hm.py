"""The H&M adapter on a generated fixture in the exact Kaggle layout, then through ingest."""

import numpy as np
import pandas as pd
import pytest

from fashionrec import artifacts
from fashionrec.stages import ingest
from fashionrec.config import EventWeights, IngestConfig
from fashionrec.datasets import prepare_dataset
from fashionrec.datasets.hm import article_ids, channels

ARTICLE_COLUMNS = [
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name", "product_group_name",
    "graphical_appearance_no", "graphical_appearance_name", "colour_group_code", "colour_group_name",
    "perceived_colour_value_id", "perceived_colour_value_name", "perceived_colour_master_id",
    "perceived_colour_master_name", "department_no", "department_name", "index_code", "index_name",
    "index_group_no", "index_group_name", "section_no", "section_name", "garment_group_no", "garment_group_name",
    "detail_desc",
]
MALFORMED = [  # (t_dat, customer_id, article_id) → the reason ingest must give
    ("2020-13-45", "a" * 64, "108775015", "bad_timestamp"),
    ("2020-09-01", "b" * 64, "999999999", "unknown_product"),
    ("2020-09-01", "", "108775015", "missing_field"),
]


def write_kaggle_fixture(folder, seed=0, articles=200, transactions=2000):
    """Kaggle's files, column for column; article ids as Kaggle's CSV has them (leading 0 dropped)."""
    rng = np.random.default_rng(seed)
    ids = 108775015 + np.arange(articles) * 7
    types = np.array(["Trousers", "Dress", "Sweater", "T-shirt"])
    colours = np.array(["Black", "White", "Dark Blue", "Beige"])
    frame = pd.DataFrame({column: "x" for column in ARTICLE_COLUMNS}, index=range(articles))
    frame["article_id"] = ids
    frame["product_code"] = ids // 1000
    frame["prod_name"] = [f"Item {i}" for i in range(articles)]
    frame["product_type_name"] = types[np.arange(articles) % 4]
    frame["colour_group_name"] = colours[(np.arange(articles) // 4) % 4]
    frame["department_name"] = "Jersey Basic"
    frame["detail_desc"] = [f"Soft {t.lower()} in {c.lower()}" for t, c in zip(frame["product_type_name"],
                                                                                frame["colour_group_name"])]
    frame.to_csv(folder / "articles.csv", index=False)
    customers = [f"{rng.integers(0, 2**63):016x}" * 4 for _ in range(150)]
    rows = pd.DataFrame(
        {
            "t_dat": (pd.Timestamp("2020-06-01") + pd.to_timedelta(rng.integers(0, 100, transactions), "D"))
            .strftime("%Y-%m-%d"),
            "customer_id": rng.choice(customers, transactions),
            "article_id": rng.choice(ids, transactions),
            "price": np.round(rng.uniform(0.005, 0.09, transactions), 6),
            "sales_channel_id": rng.integers(1, 3, transactions),
        }
    )
    repeats = rows.iloc[:5]  # the same customer buying the same article twice on one day
    bad = pd.DataFrame([dict(t_dat=d, customer_id=c, article_id=a, price=0.05, sales_channel_id=2)
                        for d, c, a, _ in MALFORMED])
    pd.concat([rows, repeats, bad], ignore_index=True).to_csv(folder / "transactions_train.csv", index=False)
    return rows, repeats


def test_sales_channels_become_the_canonical_channel():
    ids = pd.Series(["1", "2", " 2 ", "", None, "3"])
    mapped = [None if pd.isna(value) else value for value in channels(ids)]
    assert mapped == ["store", "online", "online", None, None, "3"]  # 3: quarantined by ingest as bad_channel


def test_article_ids_get_their_leading_zero_back():
    assert article_ids(pd.Series(["108775015", "0108775044", "abc"])).tolist() == ["0108775015", "0108775044", "abc"]


@pytest.fixture
def hm(tmp_path):
    rows, repeats = write_kaggle_fixture(tmp_path)
    raw = prepare_dataset("hm", str(tmp_path), str(tmp_path / "canonical"), shop=None)
    return tmp_path, rows, repeats, raw


def test_adapter_maps_the_kaggle_columns_and_folds_repeat_purchases(hm):
    _, rows, repeats, raw = hm
    catalogue = pd.read_parquet(raw.catalogue_uri)
    events = pd.read_parquet(raw.events_uri)
    assert catalogue["product_id"].str.len().eq(10).all()
    first = catalogue.iloc[0]
    assert (first["product_id"], first["title"], first["category"], first["colour"], first["brand"]) == (
        "0108775015", "Item 0", "Trousers", "Black", "Jersey Basic")
    assert set(events["event_type"]) == {"purchase"}
    keys = ["t_dat", "customer_id", "article_id", "sales_channel_id"]  # a purchase in a store and one online differ
    counts = pd.concat([rows, repeats]).groupby(keys).size()
    channels = pd.concat([rows, repeats]).groupby(keys).size().reset_index()["sales_channel_id"].map({1: "store",
                                                                                                     2: "online"})
    good = events.iloc[:len(counts)]  # the malformed rows come last
    assert good["channel"].value_counts().to_dict() == channels.value_counts().to_dict()
    assert len(events) == len(counts) + len(MALFORMED)
    purchase = EventWeights().purchase
    assert sorted(events["weight"].unique()) == sorted({purchase * c for c in counts.unique()})


def test_after_ingest_malformed_rows_are_quarantined_and_every_good_purchase_is_kept(hm):
    tmp_path, rows, repeats, raw = hm
    summary = ingest.ingest(raw.catalogue_uri, raw.events_uri, str(tmp_path / "ingested"), IngestConfig())
    quarantine = pd.read_parquet(tmp_path / "ingested" / artifacts.QUARANTINE_FILE)
    assert sorted(quarantine["reason"]) == sorted(reason for *_, reason in MALFORMED)
    accepted = summary.train_events + summary.holdout_events
    distinct = len(pd.concat([rows, repeats]).groupby(["t_dat", "customer_id", "article_id", "sales_channel_id"]).size())
    folded = len(rows) + len(repeats) - distinct  # repeat purchases live on in the weights
    assert folded >= len(repeats)
    assert accepted + len(quarantine) + folded == len(rows) + len(repeats) + len(MALFORMED)
    assert summary.accepted_products == 200


@pytest.mark.e2e
def test_kaggle_layout_runs_through_the_whole_pipeline(tmp_path):
    from fashionrec.config import PipelineConfig
    from fashionrec.artifacts import EMBEDDINGS_FILE
    from fashionrec.embeddings_file import read_embeddings
    from fashionrec.app.runner import run_local

    data = tmp_path / "hm"
    data.mkdir()
    write_kaggle_fixture(data, seed=1, articles=300, transactions=20_000)
    config = PipelineConfig().with_overrides({"train.epochs": 2, "evaluate.min_lift_over_baseline": -1.0,
                                              "ingest.split_time": "2020-08-25"})
    run = run_local(str(tmp_path / "workspace"), config, dataset="hm", data_dir=str(data))
    quarantine = pd.read_parquet(run.artifact("ingest-data", "ingested") / artifacts.QUARANTINE_FILE)
    assert sorted(quarantine["reason"]) == sorted(reason for *_, reason in MALFORMED)
    product_ids, embeddings, _ = read_embeddings(str(run.artifact("export-embeddings", "embeddings") / EMBEDDINGS_FILE))
    assert len(product_ids) == 300 and product_ids[0].startswith("0")
    assert np.isfinite(embeddings).all()
    trained = run.artifact("train-model", "model")
    assert (trained / "train_config.json").exists()
