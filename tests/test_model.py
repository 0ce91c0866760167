import numpy as np
import pytest
import tensorflow as tf

from fashionrec.config import TrainConfig
from fashionrec.features import PAD, CatalogueFeatures
from fashionrec.model import ItemTower, TwoTowerModel, customer_vectors
from fashionrec.serving import ops


def _catalogue(num_products=4, oov=1):
    rows = num_products + oov
    tokens = np.zeros((rows, 3), np.int64)
    tokens[:num_products] = [[1, 2, 0], [2, 3, 0], [1, 0, 0], [3, 3, 2]][:num_products]
    zeros = np.zeros(rows, np.int64)
    return CatalogueFeatures(
        product_ids=np.array([f"P{i}" for i in range(num_products)]),
        token_ids=tokens, category_idx=zeros, colour_idx=zeros, brand_idx=zeros, price_bucket=zeros,
        price_z=np.zeros(rows, np.float32),
        vocabulary_sizes={"product": rows, "tokens": 5, "category": 2, "colour": 2, "brand": 2, "price_bucket": 2},
    )


def test_customer_vector_is_the_weighted_mean_and_matches_the_serving_function():
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]], np.float32)
    history = np.array([0, 1, 2])
    weights = np.array([1.0, 3.0, 0.0], np.float32)  # the last slot is padding
    expected = np.array([0.25, 1.5])  # (1*[1,0] + 3*[0,2]) / 4
    tf_result = customer_vectors(tf.constant(embeddings[history][None]), tf.constant(weights[None])).numpy()[0]
    np.testing.assert_allclose(tf_result, expected, rtol=1e-6)
    np.testing.assert_allclose(ops.customer_vector(embeddings, history[:2], weights[:2]), expected, rtol=1e-6)


def test_item_embeddings_are_normalised_and_scaled_by_the_temperature():
    tower = ItemTower(_catalogue(), TrainConfig(temperature=0.25, embedding_dim=8))
    vectors = tower(tf.constant([0, 1, 2, 3], tf.int64)).numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 2.0, rtol=1e-5)  # 1 / sqrt(0.25)


def test_unknown_products_get_their_content_embedding_only():
    tower = ItemTower(_catalogue(), TrainConfig(embedding_dim=8))
    tower(tf.constant([0], tf.int64))
    tower.id_embedding.embeddings.assign(tf.ones_like(tower.id_embedding.embeddings))
    oov_row = tf.constant([4], tf.int64)
    content_only = tf.math.l2_normalize(tower.content(oov_row), axis=-1) / np.sqrt(tower._config.temperature)
    np.testing.assert_allclose(tower(oov_row).numpy(), content_only.numpy(), rtol=1e-5)
    known = tf.constant([0], tf.int64)
    with_id = tf.math.l2_normalize(tower.content(known) + 1.0, axis=-1) / np.sqrt(tower._config.temperature)
    np.testing.assert_allclose(tower(known).numpy(), with_id.numpy(), rtol=1e-5)


def test_training_reduces_the_loss_on_a_learnable_toy_problem():
    import tf_keras

    catalogue = _catalogue()
    config = TrainConfig(embedding_dim=8, learning_rate=0.05, id_dropout=0.0)
    model = TwoTowerModel(catalogue, config, np.full(catalogue.num_rows, 0.2))
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate))
    features = {  # product 0 is always followed by 1, and 2 by 3
        "history_idx": tf.constant([[0, PAD], [2, PAD]], tf.int64),
        "history_weight": tf.constant([[1.0, 0.0], [1.0, 0.0]]),
        "target_idx": tf.constant([1, 3], tf.int64),
    }
    before = float(model.compute_loss(features).numpy())
    model.fit(tf.data.Dataset.from_tensors(features).repeat(100), epochs=1, verbose=0)
    after = float(model.compute_loss(features).numpy())
    assert after < 0.2 * before


@pytest.mark.parametrize("logq", [True, False])
def test_loss_is_finite_with_and_without_logq(logq):
    catalogue = _catalogue()
    model = TwoTowerModel(catalogue, TrainConfig(embedding_dim=8, logq_correction=logq), np.full(5, 0.2))
    features = {
        "history_idx": tf.constant([[0, 1], [2, PAD]], tf.int64),
        "history_weight": tf.constant([[1.0, 2.0], [1.0, 0.0]]),
        "target_idx": tf.constant([2, 3], tf.int64),
    }
    assert np.isfinite(model.compute_loss(features).numpy())
