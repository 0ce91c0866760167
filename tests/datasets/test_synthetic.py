import numpy as np
import pandas as pd
import pytest

from fashionrec.config import EVENT_TYPES, ShopConfig
from fashionrec.datasets.synthetic import generate_shop, launch_batch, launch_products, launched_product_id
from fashionrec.stages.ingest import validate_catalogue

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


def test_ground_truth_is_shaped_like_the_shop(shop):
    products, customers = SMALL.num_products, SMALL.num_customers
    assert shop.product_latent.shape == (products, SMALL.latent_dim) and shop.log_popularity.shape == (products,)
    assert shop.customer_tastes.shape == (customers, SMALL.latent_dim)
    assert np.allclose(np.linalg.norm(shop.customer_tastes, axis=1), 1.0, atol=1e-5)
    assert len(shop.style_words) == SMALL.num_styles and shop.customer_styles.max() < SMALL.num_styles
    assert set(shop.events["customer_id"]) <= {f"C{i:06d}" for i in range(customers)}


def test_events_follow_the_exposed_tastes(shop):
    """The exposed tastes and latents are the ones the events were drawn from: the logged (customer, product)
    pairs have a far higher affinity than random pairs, and products' titles use their style's words."""
    customers = shop.events["customer_id"].str[1:].astype(int).to_numpy()
    products = shop.events["product_id"].str[1:].astype(int).to_numpy()
    logged = np.einsum("ij,ij->i", shop.customer_tastes[customers], shop.product_latent[products]).mean()
    everything = (shop.customer_tastes @ shop.product_latent.T).mean()
    assert logged > everything + 0.3
    words = [set(shop.style_words[s]) for s in shop.product_styles]
    titles = shop.catalogue["title"].str.lower().str.split()
    uses_own = [bool(own & set(title)) for own, title in zip(words, titles, strict=True)]
    assert np.mean(uses_own) > 0.7


def test_ground_truth_without_the_event_log_is_the_same(shop):
    light = generate_shop(SMALL, with_events=False)
    pd.testing.assert_frame_equal(light.catalogue, shop.catalogue)
    assert light.events.empty and list(light.events.columns) == list(shop.events.columns)
    for name in ("product_styles", "product_latent", "log_popularity", "customer_tastes", "customer_styles"):
        np.testing.assert_array_equal(getattr(light, name), getattr(shop, name))


def test_launched_products_are_deterministic_fresh_and_canonical(shop):
    catalogue, latent = launch_products(SMALL, 40, batch=2)
    again, again_latent = launch_products(SMALL, 40, batch=2)
    pd.testing.assert_frame_equal(catalogue, again)
    np.testing.assert_array_equal(latent, again_latent)
    other, _ = launch_products(SMALL, 40, batch=3)
    assert not set(other["product_id"]) & set(catalogue["product_id"])  # another batch, other ids
    assert not (other["title"].to_numpy() == catalogue["title"].to_numpy()).all()  # and other products
    assert not set(catalogue["product_id"]) & set(shop.catalogue["product_id"]) and catalogue["product_id"].is_unique
    assert [launch_batch(pid) for pid in catalogue["product_id"]] == [2] * 40
    assert launch_batch("P000001") is None and launch_batch(launched_product_id(12, 7)) == 12
    assert list(catalogue.columns) == list(shop.catalogue.columns) and latent.shape == (40, SMALL.latent_dim)
    valid, quarantined = validate_catalogue(catalogue, "launched")
    assert quarantined.empty and len(valid) == 40
    assert set(catalogue["brand"]) <= set(shop.catalogue["brand"])  # the shop's own brands
    assert set(catalogue["category"]) | set(catalogue["colour"]) <= (set(shop.catalogue["category"])
                                                                      | set(shop.catalogue["colour"]))
    start = pd.Timestamp(SMALL.start_date, tz="UTC")
    assert (catalogue["launch_date"] == start + pd.Timedelta(days=SMALL.num_weeks * 7 + 1)).all()  # after the log


def test_launched_products_content_agrees_with_their_latent(shop):
    """Launched into the shop's own latent world: each one's latent is nearest the centroid of the shop's products
    of some style, and its texts use that style's words (as the shop's products do, 20 % with some borrowed)."""
    catalogue, latent = launch_products(SMALL, 200, batch=1)
    centroids = np.stack([shop.product_latent[shop.product_styles == s].mean(axis=0)
                          for s in range(len(shop.style_words))])
    nearest = np.argmax(latent @ centroids.T - 0.5 * (centroids ** 2).sum(axis=1), axis=1)
    texts = (catalogue["title"] + " " + catalogue["description"]).str.lower().str.replace(".", " ").str.split()
    own = [len(set(shop.style_words[s]) & set(words)) >= 2 for s, words in zip(nearest, texts, strict=True)]
    shifted = [len(set(shop.style_words[(s + 1) % len(shop.style_words)]) & set(words)) >= 2
               for s, words in zip(nearest, texts, strict=True)]
    assert np.mean(own) > 0.9 and np.mean(shifted) < 0.2
    # and the brand is one of that style's (the shop's brands belong to one style each)
    style_of_brand = dict(zip(shop.catalogue["brand"], shop.product_styles, strict=True))
    assert np.mean(catalogue["brand"].map(style_of_brand).to_numpy() == nearest) > 0.9


def test_context_moves_choices_and_ingest_accepts_it():
    """With context_strength > 0 sessions carry a device, the customer's region and a local time, and the
    effects are in the log: loungewear in the evening, each region's colours, shorter mobile sessions."""
    from fashionrec.config import IngestConfig
    from fashionrec.datasets.synthetic import LOUNGEWEAR, REGIONS
    from fashionrec.stages.ingest import validate_events

    config = ShopConfig(num_customers=800, num_products=300, num_weeks=3, context_strength=1.0)
    shop = generate_shop(config)
    events = shop.events.merge(shop.catalogue[["product_id", "category", "colour"]], on="product_id")
    assert set(events["device"]) == {"mobile", "desktop", "tablet"} and set(events["region"]) == set(REGIONS)
    offsets = events["region"].map({name: hours for name, (hours, _) in REGIONS.items()})
    wall = events["timestamp"].dt.tz_localize(None) + pd.to_timedelta(offsets, unit="h")
    assert (pd.to_datetime(events["local_time"]) == wall.dt.floor("s")).all()
    evening = pd.to_datetime(events["local_time"]).dt.hour >= 18
    lounge = events["category"].isin(LOUNGEWEAR)
    assert lounge[evening].mean() > 1.5 * lounge[~evening].mean()
    for region, (_, colours) in REGIONS.items():
        favoured = events["colour"].isin(colours)
        assert favoured[events["region"] == region].mean() > 1.5 * favoured[events["region"] != region].mean()
    raw = shop.events.assign(timestamp=shop.events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    accepted, quarantined = validate_events(raw, "events", set(shop.catalogue["product_id"]), IngestConfig())
    assert len(quarantined) == 0 and list(accepted["device"]) == list(shop.events["device"])
    plain = generate_shop(ShopConfig(num_customers=800, num_products=300, num_weeks=3))
    assert "device" not in plain.events and len(shop.events) < len(plain.events)  # mobile sessions lose one event


@pytest.mark.parametrize("config", [SMALL, ShopConfig(num_customers=300, num_products=200, num_weeks=3,
                                                      context_strength=1.0)], ids=["plain", "context"])
def test_racing_a_day_in_chunks_gives_the_same_shop_as_racing_it_whole(config, monkeypatch):
    """The day's sessions race in row chunks (EVENT_CHUNK_CELLS) only to bound memory: chunks of a few rows, or of
    a few dozen, give the very same log as one chunk a day (the whole day at once, as the generator always did)."""
    from fashionrec.datasets import synthetic

    monkeypatch.setattr(synthetic, "EVENT_CHUNK_CELLS", 10**12)
    whole = generate_shop(config).events
    for cells in (1, 5_000):  # 2 to 4 rows a chunk; 16 to 25
        monkeypatch.setattr(synthetic, "EVENT_CHUNK_CELLS", cells)
        pd.testing.assert_frame_equal(generate_shop(config).events, whole, check_exact=True)
