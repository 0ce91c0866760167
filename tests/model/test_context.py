"""The context adjustment in TensorFlow: the same sums as the serving contract, and learned when it matters."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fashionrec.config import TrainConfig
from fashionrec.contract.context import ContextTables
from fashionrec.model.context import ContextAdjustment
from fashionrec.model.features import PAD
from fashionrec.model.two_tower import TwoTowerModel
from tests.model.test_two_tower import EVENTS, _catalogue


def test_the_adjustment_adds_the_same_rows_as_the_serving_contract() -> None:
    layer = ContextAdjustment({"device": 2, "hour": 24}, dim=3)
    rng = np.random.default_rng(0)
    for feature, table in layer.tables.items():
        table.assign(rng.normal(size=table.shape).astype(np.float32))  # row 0 too: the mask must hide it
    vectors = rng.normal(size=(4, 3)).astype(np.float32)
    rows = {"target_device": tf.constant([1, 2, 0, 1], tf.int64), "target_hour": tf.constant([21, 0, 0, 24], tf.int64)}
    trained = layer(tf.constant(vectors), rows).numpy()
    served = layer.tables_for_serving({"device": ("mobile", "desktop"), "region": ("GB",)})
    assert isinstance(served, ContextTables) and served.features == ("device", "hour")
    assert served.vocabularies == {"device": ("mobile", "desktop")}
    context = {"device": ["mobile", "desktop", "", "mobile"], "hour": [20, -1, -1, 23]}  # rows: 1 + hour
    np.testing.assert_array_equal(served.adjust(vectors, context), trained)
    np.testing.assert_array_equal(trained[2], vectors[2])  # unknown everywhere: untouched


def test_a_model_learns_what_the_device_says_about_the_next_product() -> None:
    """The same history is followed by product 1 on mobile and by product 3 on desktop: only the context
    can tell them apart, so the context model's loss falls far below the context-free one's."""
    import tf_keras

    features = {"history_idx": tf.constant([[0, PAD], [0, PAD]] * 4, tf.int64),
                "history_weight": tf.constant([[1.0, 0.0]] * 8),
                "target_idx": tf.constant([1, 3] * 4, tf.int64),
                "target_device": tf.constant([1, 2] * 4, tf.int64)}
    losses = {}
    for name, sizes in (("context", {"device": 2}), ("context-free", None)):
        config = TrainConfig(embedding_dim=8, learning_rate=0.05, id_dropout=0.0, logq_correction=False)
        model = TwoTowerModel(_catalogue(), config, np.full(5, 0.2), EVENTS, sizes)
        model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate))
        model.fit(tf.data.Dataset.from_tensors(features).repeat(150), epochs=1, verbose=0)
        losses[name] = float(model.compute_loss(features).numpy())
    assert losses["context"] < 0.5 * losses["context-free"], losses
