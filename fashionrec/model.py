"""The two-tower model: one item tower, and customers as aggregates of item embeddings.

* Item tower: ``q_i = normalize(content(i) + id(i)) / sqrt(temperature)``. The content tower reads the
  product's tokens, category, colour, brand and price; the id embedding starts at zero and is hidden
  at random during training (id dropout), so the content part alone must place a product well. A
  product without interactions (or an OOV id) therefore gets its content embedding: cold start.
* Customer vector: ``p_u`` = weighted mean of the item embeddings of the customer's history; the same
  function (``fashionrec.serving.ops.customer_vector``) runs in Triton.
* Score: ``sigma(p_u . q_i)``. Dividing by ``sqrt(temperature)`` on both sides bakes the softmax
  temperature into the embeddings, so the exported dot product is the trained logit.
* Loss: in-batch softmax with logQ popularity correction (tensorflow-recommenders' Retrieval task).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from fashionrec.config import TrainConfig
from fashionrec.features import PAD, CatalogueFeatures


class ItemTower(tf_keras.Model):
    """Product index → embedding, from content features and a learned id embedding."""

    def __init__(self, catalogue: CatalogueFeatures, config: TrainConfig) -> None:
        super().__init__(name="item_tower")
        self._config = config
        self._num_products = catalogue.num_products
        self.product_ids = catalogue.product_ids
        self._tokens = tf.constant(catalogue.token_ids)
        self._categorical = {
            name: tf.constant(getattr(catalogue, attr))
            for name, attr in (
                ("category", "category_idx"),
                ("colour", "colour_idx"),
                ("brand", "brand_idx"),
                ("price_bucket", "price_bucket"),
            )
        }
        self._price_z = tf.constant(catalogue.price_z)[:, None]
        sizes = catalogue.vocabulary_sizes
        self.token_embedding = tf_keras.layers.Embedding(sizes["tokens"], config.token_embedding_dim, name="tokens")
        self.feature_embeddings = {
            name: tf_keras.layers.Embedding(sizes[name], config.feature_embedding_dim, name=name)
            for name in self._categorical
        }
        self.hidden = tf_keras.layers.Dense(config.content_hidden_units, activation="gelu", name="content_hidden")
        self.content_output = tf_keras.layers.Dense(config.embedding_dim, name="content_output")
        self.id_embedding = tf_keras.layers.Embedding(
            sizes["product"], config.embedding_dim, embeddings_initializer="zeros", name="product_id"
        )

    def content(self, product_idx: tf.Tensor) -> tf.Tensor:
        """Content-only embedding (before normalisation) of the given product rows."""
        tokens = tf.gather(self._tokens, product_idx)
        mask = tf.cast(tokens > 0, tf.float32)[..., None]
        pooled = tf.reduce_sum(self.token_embedding(tokens) * mask, axis=-2) / tf.maximum(
            tf.reduce_sum(mask, axis=-2), 1.0
        )
        parts = [pooled, tf.gather(self._price_z, product_idx)]
        parts += [self.feature_embeddings[n](tf.gather(t, product_idx)) for n, t in self._categorical.items()]
        return self.content_output(self.hidden(tf.concat(parts, axis=-1)))

    def call(self, product_idx: tf.Tensor, training: bool = False) -> tf.Tensor:
        known = tf.cast(product_idx < self._num_products, tf.float32)[:, None]  # OOV rows: content only
        keep = known
        if training and self._config.id_dropout > 0:
            draw = tf.random.uniform(tf.shape(known), seed=self._config.seed)
            keep *= tf.cast(draw >= self._config.id_dropout, tf.float32)
        combined = self.content(product_idx) + keep * self.id_embedding(product_idx)
        return tf.math.l2_normalize(combined, axis=-1) / np.sqrt(self._config.temperature)


def customer_vectors(item_embeddings: tf.Tensor, history_weight: tf.Tensor) -> tf.Tensor:
    """Weighted mean over the history axis; padded slots carry weight 0. Empty history → zero vector.

    ``item_embeddings``: [batch, history, dim]; ``history_weight``: [batch, history].
    """
    weights = history_weight[..., None]
    return tf.reduce_sum(item_embeddings * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1e-9)


class TwoTowerModel(tfrs.Model):
    """Next-product retrieval: customer history → the product interacted with next."""

    def __init__(self, catalogue: CatalogueFeatures, config: TrainConfig, candidate_probability: np.ndarray) -> None:
        super().__init__()
        self.item_tower = ItemTower(catalogue, config)
        self._log_q_source = tf.constant(candidate_probability.astype(np.float32))
        self._logq = config.logq_correction
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True)

    def embed_history(self, history_idx: tf.Tensor, history_weight: tf.Tensor, training: bool) -> tf.Tensor:
        """Customer vectors for padded histories, computing each distinct product's embedding once."""
        valid = history_idx != PAD
        unique, position = tf.unique(tf.reshape(tf.where(valid, history_idx, 0), [-1]))
        embeddings = tf.gather(self.item_tower(unique, training=training), position)
        embeddings = tf.reshape(embeddings, tf.concat([tf.shape(history_idx), [-1]], axis=0))
        return customer_vectors(embeddings, tf.where(valid, history_weight, 0.0))

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        customers = self.embed_history(features["history_idx"], features["history_weight"], training)
        targets = features["target_idx"]
        candidates = self.item_tower(targets, training=training)
        probability = tf.gather(self._log_q_source, targets) if self._logq else None
        return self.task(
            customers, candidates, candidate_sampling_probability=probability, candidate_ids=targets
        )
