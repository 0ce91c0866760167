"""The exported content tower (numpy) against TensorFlow: the real TFT transform of a small catalogue,
a real ItemTower with non-trivial weights, and an unseen product run through the TFT graph.

Why it matters: ``embed_products`` and ``catalogue add`` serve these numpy embeddings next to the
ones TensorFlow exported; any drift in tokenisation, vocabulary lookup, price bucketing, gelu or
normalisation would place new products wrongly without any error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from fashionrec import artifacts
from fashionrec import storage
from fashionrec.stages import transform as transform_files
from fashionrec.config import TrainConfig, TransformConfig
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.embeddings_file import read_embeddings
from fashionrec.stages.export import export_embeddings
from fashionrec.model.features import CatalogueFeatures, load_catalogue_features
from fashionrec.model.two_tower import ItemTower
from fashionrec.contract import content
from fashionrec.stages.train import load_item_tower
from fashionrec.artifacts import CHECKPOINT_PREFIX, TRAIN_CONFIG_FILE

TRANSFORM = TransformConfig(max_title_tokens=6, token_vocab_size=12, price_buckets=5)
# No fade-in: the fixture has no training examples, so every product would count 0 events (content only).
TRAIN = TrainConfig(embedding_dim=8, token_embedding_dim=6, feature_embedding_dim=4, content_hidden_units=12,
                    id_fade_in_events=0.0)
WORDS = "red blue linen cotton dress shirt skirt coat wool silk summer winter slim wide long short knit denim".split()
UNSEEN = content.ProductContent(  # unknown tokens, category, colour, brand; non-ASCII; a price above them all
    title="\u212aELVIN Zyzzyva-Dress \u00c9T\u00c9", description="hand-made  in 2026; Red!", category="Spacesuits",
    colour="Octarine", brand="Nobody", price=10_000.0)


def _catalogue() -> pd.DataFrame:
    """60 products; repeated prices (so quantile boundaries equal some products' prices), odd text."""
    rng = np.random.default_rng(4)
    rows = []
    for i in range(60):
        words = rng.choice(WORDS, size=rng.integers(1, 9))
        rows.append({
            "product_id": f"P{i:03d}",
            "title": " ".join(words[:3]).upper() if i % 7 == 0 else " ".join(words[:3]),
            "description": "-".join(words[3:]) + (" Ça va" if i % 5 == 0 else ""),
            "category": ["dresses", "shirts", "coats", "Skirts & more"][i % 4],
            "colour": ["red", "blue", "unknown"][i % 3],
            "brand": ["acme", "zeta"][i % 2],
            "price": float([19.99, 5.0, 49.5, 120.0, 0.0, 19.99, 33.3][i % 7]) + (i // 7) * 0.5 * (i % 2),
            "is_new": i >= 50,
        })
    return pd.DataFrame(rows)


def _randomise(tower: ItemTower, new_rows: np.ndarray) -> None:
    """Weights of scale ~1 (so gelu works in its curved range), id embeddings zero for new products."""
    rng = np.random.default_rng(8)
    weights = [rng.normal(size=w.shape).astype(np.float32) * (0.5 if w.ndim == 2 and w.shape[0] > 30 else 1.0)
               for w in tower.get_weights()]
    tower.set_weights(weights)
    ids = tower.id_embedding.embeddings.numpy()
    ids[new_rows] = 0.0
    tower.id_embedding.embeddings.assign(ids)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("content")
    ingested, transformed, model, output = (str(root / name) for name in ("ingested", "transformed", "model", "out"))
    catalogue = _catalogue()
    Path(ingested).mkdir()
    catalogue.to_parquet(Path(ingested) / artifacts.CATALOGUE_FILE)
    events = pd.DataFrame({"customer_id": ["C1", "C2", "C1"], "product_id": ["P001", "P002", "P003"],
                           "event_type": ["click"] * 3, "weight": [1.0] * 3,
                           "timestamp": pd.to_datetime(["2026-06-01", "2026-06-02", "2026-06-03"], utc=True)})
    events.to_parquet(Path(ingested) / artifacts.TRAIN_EVENTS_FILE)  # export derives a popularity prior from them
    with transform_files._tft_temp_dir(TRANSFORM) as temp_dir:
        transform_files.transform_catalogue(ingested, transformed, TRANSFORM, temp_dir)
    features = load_catalogue_features(transformed, TRANSFORM.max_title_tokens, TRANSFORM.product_oov_buckets)
    tower = ItemTower(features, TRAIN, np.zeros(features.num_rows))
    tower(tf.constant([0], tf.int64))
    new_rows = np.flatnonzero(np.isin(features.product_ids, catalogue.loc[catalogue["is_new"], "product_id"]))
    _randomise(tower, new_rows)
    tf.train.Checkpoint(item_tower=tower).write(storage.join(model, CHECKPOINT_PREFIX))
    storage.write_json(storage.join(model, TRAIN_CONFIG_FILE),
                       {"train": dataclasses.asdict(TRAIN), "transform": dataclasses.asdict(TRANSFORM)})
    summary = export_embeddings(ingested, transformed, model, output)
    return {"catalogue": catalogue, "features": features, "transformed": transformed, "model": model,
            "output": output, "summary": summary, "twin": content.ContentTower.load(output)}


def _tf_content_embeddings(tower: ItemTower, rows: np.ndarray) -> np.ndarray:
    """TensorFlow's embedding of these rows without their id embedding (what a new product gets)."""
    vectors = tower.content(tf.constant(rows, tf.int64))
    if TRAIN.normalize_embeddings:
        vectors = tf.math.l2_normalize(vectors, axis=-1)
    return (vectors / np.sqrt(TRAIN.temperature)).numpy()


def _raw(frame: pd.DataFrame) -> list[content.ProductContent]:
    return [content.ProductContent(r.title, r.category, r.price, r.description, r.colour, r.brand)
            for r in frame.itertuples()]


def test_transformed_catalogue_carries_the_price_analysers(exported: dict) -> None:
    scaling = exported["features"].price_scaling
    log_price = np.log1p(exported["catalogue"]["price"].to_numpy(np.float64))
    assert scaling.boundaries.shape == (TRANSFORM.price_buckets - 1,)
    assert np.all(np.diff(scaling.boundaries) >= 0)
    assert math.isclose(scaling.mean, log_price.mean(), rel_tol=1e-5)
    assert math.isclose(scaling.var, log_price.var(), rel_tol=1e-4)  # population variance
    z = exported["features"].price_z[: exported["features"].num_products]
    assert abs(float(z.mean())) < 1e-5 and math.isclose(float(z.std()), 1.0, rel_tol=1e-4)


def test_numpy_features_equal_the_transformed_catalogue_exactly(exported: dict) -> None:
    features: CatalogueFeatures = exported["features"]
    frame = exported["catalogue"].set_index("product_id").loc[features.product_ids].reset_index()
    twin: content.ContentTower = exported["twin"]
    encoded = twin.encode(frame["title"], frame["description"], frame["category"], frame["colour"], frame["brand"],
                          frame["price"].to_numpy())
    n = features.num_products
    np.testing.assert_array_equal(encoded.token_rows, features.token_ids[:n])
    for name, expected in (("category", features.category_idx), ("colour", features.colour_idx),
                           ("brand", features.brand_idx), ("price_bucket", features.price_bucket)):
        np.testing.assert_array_equal(getattr(encoded, name), expected[:n], err_msg=name)
    np.testing.assert_allclose(encoded.price_z, features.price_z[:n], rtol=0, atol=1e-6)
    assert (features.token_ids[:n] == len(twin.index["tokens"]) + 1).any()  # some catalogue tokens are OOV
    assert len(set(features.price_bucket[:n])) == TRANSFORM.price_buckets


def test_numpy_embeddings_equal_tensorflow_for_every_catalogue_product(exported: dict) -> None:
    features: CatalogueFeatures = exported["features"]
    tower = load_item_tower(exported["transformed"], exported["model"])
    frame = exported["catalogue"].set_index("product_id").loc[features.product_ids].reset_index()
    expected = _tf_content_embeddings(tower, np.arange(features.num_products))
    actual = exported["twin"].embed(_raw(frame))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 0.5  # not a trivially small tower
    tanh = content.ContentTower({**exported["twin"].features, "gelu": "tanh"}, exported["twin"].weights)
    assert np.abs(tanh.embed(_raw(frame)) - expected).max() > 1e-4  # the test would catch the wrong gelu


def test_exported_embeddings_of_new_products_are_their_numpy_content_embeddings(exported: dict) -> None:
    ids, embeddings, is_new = read_embeddings(str(Path(exported["output"]) / EMBEDDINGS_FILE))
    assert exported["summary"].content_tower and is_new.sum() == 10
    frame = exported["catalogue"].set_index("product_id").loc[ids].reset_index()
    twin = exported["twin"].embed(_raw(frame))
    np.testing.assert_allclose(twin[is_new], embeddings[is_new], rtol=0, atol=1e-5)
    assert np.abs(twin[~is_new] - embeddings[~is_new]).max() > 0.1  # old products also carry an id embedding


def test_an_unseen_product_through_the_tft_graph_and_the_tf_tower_equals_numpy(exported: dict) -> None:
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(storage.join(exported["transformed"], artifacts.TRANSFORM_FN_DIR))
    raw = {**{name: tf.constant([getattr(UNSEEN, name)]) for name in ("title", "description", "category", "colour",
                                                                      "brand")},
           "product_id": tf.constant(["NEW"]), "price": tf.constant([UNSEEN.price], tf.float32)}
    transformed = output.transform_raw_features(raw, drop_unused_features=True)
    tokens = tf.sparse.to_dense(transformed["token_ids"], default_value=-1).numpy() + 1
    row = np.zeros((1, TRANSFORM.max_title_tokens), np.int64)
    row[:, : tokens.shape[1]] = tokens
    base: CatalogueFeatures = exported["features"]
    unseen = dataclasses.replace(
        base, product_ids=np.array([], str), token_ids=row, price_z=transformed["price_z"].numpy(),
        **{f"{n}_idx": transformed[f"{n}_idx"].numpy() for n in content.CATEGORICAL},
        price_bucket=transformed["price_bucket"].numpy())
    trained = load_item_tower(exported["transformed"], exported["model"])
    tower = ItemTower(unseen, TRAIN, np.zeros(unseen.num_rows))  # no known products: its row 0 is content only, as for any new product
    tower(tf.constant([0], tf.int64))
    tower.set_weights(trained.get_weights())
    expected = tower(tf.constant([0], tf.int64)).numpy()

    twin: content.ContentTower = exported["twin"]
    encoded = twin.encode([UNSEEN.title], [UNSEEN.description], [UNSEEN.category], [UNSEEN.colour], [UNSEEN.brand],
                          [UNSEEN.price])
    np.testing.assert_array_equal(encoded.token_rows, row)
    oov = {name: len(twin.index[name]) for name in ("tokens", *content.CATEGORICAL)}
    assert [encoded.category[0], encoded.colour[0], encoded.brand[0]] == [oov[n] for n in content.CATEGORICAL]
    assert encoded.price_bucket[0] == TRANSFORM.price_buckets - 1
    np.testing.assert_allclose(twin.embed([UNSEEN]), expected, rtol=0, atol=1e-5)


def test_export_writes_a_self_describing_features_file(exported: dict) -> None:
    features = json.loads((Path(exported["output"]) / content.FEATURES_FILE).read_text(encoding="utf-8"))
    assert {k: features[k] for k in ("format", "max_tokens", "oov_buckets", "temperature", "normalize", "gelu")} == {
        "format": 1, "max_tokens": 6, "oov_buckets": 1, "temperature": TRAIN.temperature, "normalize": True,
        "gelu": "erf"}
    assert len(features["vocabularies"]["tokens"]) == TRANSFORM.token_vocab_size
    assert "Skirts & more" in features["vocabularies"]["category"]


def test_gelu_matches_keras_and_hand_values() -> None:
    import tf_keras

    x = np.linspace(-6, 6, 1001).astype(np.float32)
    np.testing.assert_allclose(content.gelu(x), tf_keras.activations.gelu(tf.constant(x)).numpy(), atol=2e-6)
    np.testing.assert_allclose(content.gelu(x, "tanh"),
                               tf_keras.activations.gelu(tf.constant(x), approximate=True).numpy(), atol=2e-6)
    # Phi(1) = 0.841344746..., so gelu(1) = Phi(1), gelu(-1) = -(1 - Phi(1))
    np.testing.assert_allclose(content.gelu(np.array([1.0, -1.0, 0.0])), [0.8413447461, -0.1586552539, 0.0],
                               atol=1e-10)
