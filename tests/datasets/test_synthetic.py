import numpy as np
import pandas as pd
import pytest

from fashionrec.config import EVENT_TYPES, ShopConfig
from fashionrec.datasets.synthetic import generate_shop

SMALL = ShopConfig(num_customers=400, num_products=300, num_weeks=6)


@pytest.fixture(scope="module")
def shop():
    return generate_shop(SMALL)


def test_same_seed_gives_identical_data(shop):
    again = generate_shop(SMALL)
    pd.testing.assert_frame_equal(shop.catalogue, again.catalogue)
    pd.testing.assert_frame_equal(shop.events, again.events)


def test_catalogue_has_the_canonical_columns_and_unique_ids(shop):
    assert list(shop.catalogue.columns) == [
        "product_id", "title", "description", "category", "colour", "brand", "price", "launch_date"
    ]
    assert shop.catalogue["product_id"].is_unique
    assert (shop.catalogue["price"] > 0).all()


def test_products_launch_every_week_of_the_log(shop):
    start = pd.Timestamp(SMALL.start_date, tz="UTC")
    launched = shop.catalogue["launch_date"][shop.catalogue["launch_date"] >= start]
    weeks = ((launched - start).dt.days // 7).unique()
    assert set(weeks) == set(range(SMALL.num_weeks))


def test_no_event_before_its_product_launched(shop):
    launch = shop.catalogue.set_index("product_id")["launch_date"]
    assert (shop.events["timestamp"] >= shop.events["product_id"].map(launch).dt.floor("D")).all()


def test_events_use_the_four_event_types(shop):
    assert set(shop.events["event_type"]) == set(EVENT_TYPES)


def test_customers_stick_to_styles_that_their_content_reveals(shop):
    """Taste must be learnable from content: a customer's products share styles far more than chance."""
    style_of = dict(zip(shop.catalogue["product_id"], shop.product_styles, strict=True))
    styles = shop.events["product_id"].map(style_of)
    top_share = styles.groupby(shop.events["customer_id"]).agg(lambda s: s.value_counts(normalize=True).iloc[0])
    chance = 1 / len(np.unique(shop.product_styles))
    assert top_share.mean() > 3 * chance


def test_written_shop_reads_back_through_ingest_unchanged(shop, tmp_path):
    from fashionrec.datasets.synthetic import write_shop
    from fashionrec.storage import read_table

    paths = write_shop(shop, str(tmp_path / "raw"))
    events = read_table(paths["events"])
    assert len(events) == len(shop.events)
    assert events["timestamp"].iloc[0] == shop.events["timestamp"].iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ")
