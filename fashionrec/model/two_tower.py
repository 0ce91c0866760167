"""The two-tower model: one item tower, and customers as aggregates of item embeddings.

* Item tower: ``q_i = normalize(content(i) + id(i)) / sqrt(temperature)`` (``normalize_embeddings``;
  without it the norm is free to carry popularity). The content tower reads the
  product's tokens, category, colour, brand and price; the id embedding starts at zero and is hidden
  at random during training (id dropout), so the content part alone must place a product well. A
  product without interactions (or an OOV id) therefore gets its content embedding: cold start. The id
  part fades in with the product's training events n, scaled by ``n / (n + id_fade_in_events)``.
* Customer vector: ``p_u`` = weighted mean of the item embeddings of the customer's history. The
  weights (``TrainConfig.pooling``) are 1 (mean), the event type's weight (weighted), or that weight
  halved every ``recency_half_life_days`` of the event's age and, optionally, every
  ``recency_half_life_events`` newer events (recency); ``fashionrec.contract.ops``
  computes exactly the same in Triton. ``attention`` learns a query vector on top of recency weights
  (an experiment: it has no serving twin yet).
* Score: ``sigma(p_u . q_i)``. Dividing by ``sqrt(temperature)`` on both sides bakes the softmax
  temperature into the embeddings, so the exported dot product is the trained logit. (Served scores
  also add the export stage's popularity prior, :mod:`fashionrec.model.popularity`.)
* Context: with context features (``context_features`` the data carries), the customer vector is moved
  by the target event's context, ``p_u + sum_f T_f[context_f]`` (:mod:`fashionrec.model.context`); the
  score stays a dot product, so serving adds the same rows (:mod:`fashionrec.contract.context`).
* Position bias: with ``position_debiasing="ips"`` each example's loss is weighted by the inverse of its
  target event's examination probability (clipped), so clicks on products shown where few look count
  for more: :func:`inverse_examination`.
* Objective (``objective``): ``next_event`` predicts each training event from the ``history_length``
  events before it (the loss below). ``future_set`` cuts each customer's sequence at a random event in
  every epoch: the events before the cut are pooled (their ages and the context taken at the first event
  after it), and every product after it is a target of a full softmax over the catalogue in which the
  pooled products are masked out (:func:`future_set_loss`). That is what the standard protocol scores:
  the whole next period, everything seen excluded. It mirrors Liang et al.'s multinomial denoising
  autoencoder (2018), with a time cut in place of random dropout and the towers in place of its encoder.
* Loss: in-batch softmax with logQ popularity correction (tensorflow-recommenders' Retrieval task),
  optionally with ``extra_negatives`` uniformly sampled products appended to the in-batch candidates
  (mixed negative sampling; their sampling probability enters the logQ correction too). Each step
  runs the item tower once, over the distinct products of the batch's histories and candidates. Or,
  with ``negatives="all_products"``, a full softmax over the catalogue (no sampling, so no logQ).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from fashionrec.config import POOLINGS, TrainConfig
from fashionrec.contract.ops import SECONDS_PER_DAY
from fashionrec.model.context import ContextAdjustment
from fashionrec.model.features import PAD, CatalogueFeatures

# How much faster XLA runs a next-event step of fixed shapes (every product row embedded) than the eager
# step over a batch's distinct products, per product embedded (measured on two CPU cores; embeds_every_row).
XLA_STEP_SPEEDUP = 2.0


class ItemTower(tf_keras.Model):
    """Product index → embedding, from content features and a learned id embedding."""

    def __init__(self, catalogue: CatalogueFeatures, config: TrainConfig, interaction_counts: np.ndarray) -> None:
        """``interaction_counts``: each product row's training events (``train.target_counts``), for the fade-in."""
        super().__init__(name="item_tower")
        self._config = config
        self._num_products = catalogue.num_products
        self.interaction_counts = tf.constant(np.asarray(interaction_counts, np.float32))
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

    def content_tables(self) -> list[tf.Variable]:
        """The embedding tables of the content features (sized by vocabularies, not by the catalogue)."""
        return [self.token_embedding.embeddings] + [e.embeddings for e in self.feature_embeddings.values()]

    def call(self, product_idx: tf.Tensor, training: bool = False) -> tf.Tensor:
        keep = tf.cast(product_idx < self._num_products, tf.float32)[:, None]  # OOV rows: content only
        if self._config.id_fade_in_events > 0:  # n / (n + k): the id part grows with the product's events
            events = tf.gather(self.interaction_counts, product_idx)[:, None]
            keep *= events / (events + self._config.id_fade_in_events)
        if training and self._config.id_dropout > 0:
            draw = tf.random.uniform(tf.shape(keep), seed=self._config.seed)
            keep *= tf.cast(draw >= self._config.id_dropout, tf.float32)
        combined = self.content(product_idx) + keep * self.id_embedding(product_idx)
        if self._config.normalize_embeddings:
            combined = tf.math.l2_normalize(combined, axis=-1)
        return combined / np.sqrt(self._config.temperature)


def pooling_weights(
    history_weight: tf.Tensor, history_age_days: tf.Tensor, pooling: str, half_life_days: float,
    half_life_events: float = 0.0, valid: tf.Tensor | None = None,
) -> tf.Tensor:
    """The TensorFlow twin of ``ops.history_weights`` (attention starts from the recency weights).

    Histories are [batch, history], oldest first and left-aligned: ``valid`` marks the real events
    (default: all), and an event's count of newer events is counted among those. Slots outside ``valid``
    weigh 0 whatever the pooling (the caller zeroes their ``history_weight`` too).
    """
    if pooling == "mean":
        return tf.ones_like(history_weight) if valid is None else tf.cast(valid, history_weight.dtype)
    if pooling == "weighted":
        return history_weight
    if pooling not in ("recency", "attention"):
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    weights = history_weight * tf.pow(2.0, -tf.maximum(history_age_days, 0.0) / half_life_days)
    if half_life_events > 0:
        valid = tf.ones_like(history_weight, tf.bool) if valid is None else valid
        length = tf.reduce_sum(tf.cast(valid, tf.float32), axis=-1, keepdims=True)
        slot = tf.cast(tf.range(tf.shape(history_weight)[-1]), tf.float32)
        newer_events = tf.maximum(length - 1.0 - slot, 0.0)
        weights *= tf.pow(2.0, -newer_events / half_life_events)
    return weights


def inverse_examination(examination: tf.Tensor, max_weight: float) -> tf.Tensor:
    """Inverse-propensity weights ``min(1 / examination, max_weight)``: a click at a slot looked at half as
    often stands for two. Clipping trades a little bias for bounded variance (Joachims et al., 2017)."""
    return tf.minimum(1.0 / tf.maximum(examination, 1.0 / max_weight), max_weight)


def customer_vectors(item_embeddings: tf.Tensor, history_weight: tf.Tensor) -> tf.Tensor:
    """Weighted mean over the history axis; padded slots carry weight 0. Empty history → zero vector.

    ``item_embeddings``: [batch, history, dim]; ``history_weight``: [batch, history].
    """
    weights = history_weight[..., None]
    return tf.reduce_sum(item_embeddings * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1e-9)


def row_totals(rows: tf.Tensor, values: tf.Tensor, width: tf.Tensor | int) -> tf.Tensor:
    """[batch, width]: for each sequence, the sum of its slots' ``values`` by the row each slot holds (``rows``
    and ``values``: [batch, slots]). Slots holding a row outside [0, width), padding included, add nothing."""
    batch = tf.shape(rows, out_type=tf.int64)[0]
    width = tf.cast(width, tf.int64)
    inside = tf.logical_and(rows >= 0, rows < width)
    cells = tf.where(inside, tf.range(batch)[:, None] * width + rows, -1)  # negative ids are dropped
    totals = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]), tf.reshape(cells, [-1]), batch * width)
    return tf.reshape(totals, tf.stack([batch, width]))


def pooled_rows(rows: tf.Tensor, weights: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """``customer_vectors`` of histories given as ``rows`` of ``table`` ([batch, slots] each; [rows, dim]).

    The weights are first summed per row into a [batch, rows] matrix (``row_totals``), then multiplied by
    the table: for long histories over a small table (the future-set objective's sequences, a whole
    catalogue embedded each step) this is one dense matmul forward and back, instead of a [batch, slots,
    dim] gather whose gradient scatters every slot."""
    matrix = row_totals(rows, weights, tf.shape(table)[0])
    return tf.matmul(matrix, table) / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-9)


def embeds_every_row(target_counts: np.ndarray, batch_slots: int) -> bool:
    """Whether a next-event step should embed every product row rather than its batch's distinct products.

    A batch of ``batch_slots`` product slots (examples × (history + target)) holds about
    ``sum_i 1 - (1 - p_i) ** batch_slots`` distinct products, p_i a product's share of the training targets.
    Embedding every row does more work than that, but has fixed shapes, so XLA compiles the step, which
    then runs about twice as fast (MovieLens-1M on two CPU cores: 51-77 ms against 105-155 ms a step of
    1,024 examples, 3,884 rows). So every row wins while the catalogue is under ``XLA_STEP_SPEEDUP`` times
    the expected distinct products: on ML-1M and the embedded shop, not on a 100k-product catalogue."""
    shares = np.asarray(target_counts, np.float64) / max(float(np.sum(target_counts)), 1.0)
    expected_distinct = float(np.sum(-np.expm1(batch_slots * np.log1p(-np.minimum(shares, 1.0 - 1e-12)))))
    return len(shares) <= XLA_STEP_SPEEDUP * expected_distinct


def future_set_cuts(valid: tf.Tensor, seed: int, step: tf.Tensor | int) -> tf.Tensor:
    """Each sequence's cut, drawn uniformly from events 1 to length - 1 (``valid``: [batch, slots], the real
    events left-aligned), so that at least one event lies on each side of it.

    The draw is a function of ``(seed, step)`` alone (a stateless generator), so training is reproducible
    however the step runs and whatever else draws random numbers. (XLA's generator is another
    implementation: a compiled step cuts other places than the same step run eagerly, as reproducibly.)"""
    length = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    draw = tf.random.stateless_uniform(tf.shape(length), seed=tf.cast(tf.stack([seed, step]), tf.int64))
    return 1 + tf.cast(draw * tf.cast(tf.maximum(length - 1, 0), tf.float32), tf.int32)


def product_marks(sequence: tf.Tensor, mask: tf.Tensor, num_products: int) -> tf.Tensor:
    """[batch, num_products] bool: which catalogue products the ``mask``ed slots of each sequence hold (OOV
    rows, at ``num_products`` and above, are no candidates and are left out)."""
    return row_totals(sequence, tf.cast(mask, tf.float32), num_products) > 0


def future_set_loss(customers: tf.Tensor, candidates: tf.Tensor, seen: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Sum over customers of the mean ``-log softmax`` of their ``targets`` among every candidate they have not
    ``seen`` (customers [B, D], candidates [N, D], seen and targets [B, N] bool, disjoint). A customer with no
    target adds 0; each other customer weighs the same, however many targets they have, as the protocol's
    per-customer metrics do."""
    logits = tf.where(seen, tf.constant(-1e9, customers.dtype), tf.matmul(customers, candidates, transpose_b=True))
    log_p = tf.nn.log_softmax(logits, axis=-1)
    count = tf.reduce_sum(tf.cast(targets, customers.dtype), axis=1)
    total = tf.reduce_sum(tf.where(targets, log_p, tf.zeros_like(log_p)), axis=1)
    return -tf.reduce_sum(total / tf.maximum(count, 1.0))


class AttentionPooling(tf_keras.layers.Layer):
    """Learned pooling: softmax over the history of ``a . e_j + log w_j``, with ``a`` a learned query.

    ``a`` starts at zero, so training starts from the weighted mean with weights ``w``; slots of weight
    0 (padding) get no attention, and a history without weight gives the zero vector.
    """

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.query = self.add_weight(name="query", shape=[dim], initializer="zeros")

    def call(self, item_embeddings: tf.Tensor, history_weight: tf.Tensor) -> tf.Tensor:
        present = history_weight > 0
        logits = tf.einsum("bhd,d->bh", item_embeddings, self.query) + tf.math.log(
            tf.where(present, history_weight, 1.0))
        attention = tf.nn.softmax(tf.where(present, logits, -1e9), axis=-1) * tf.cast(present, tf.float32)
        return customer_vectors(item_embeddings, attention)


class TwoTowerModel(tfrs.Model):
    """Next-product retrieval: customer history → the product interacted with next."""

    def __init__(self, catalogue: CatalogueFeatures, config: TrainConfig, candidate_probability: np.ndarray,
                 interaction_counts: np.ndarray, context_sizes: Mapping[str, int] | None = None,
                 embeds_every_row: bool = False) -> None:
        """``context_sizes``: each context feature the model learns -> its number of known values (none:
        context-free). ``embeds_every_row``: a next-event step embeds every product row instead of its batch's
        distinct products (:func:`embeds_every_row`), which gives the step the fixed shapes XLA compiles."""
        super().__init__()
        self._config = config
        self.embeds_every_row = embeds_every_row
        self.item_tower = ItemTower(catalogue, config, interaction_counts)
        self.context = ContextAdjustment(context_sizes, config.embedding_dim, name="context") if context_sizes else None
        self.attention = AttentionPooling(config.embedding_dim, name="attention_pooling") if config.pooling == "attention" else None
        self._log_q_source = tf.constant(candidate_probability.astype(np.float32))
        self._num_products, self._num_rows = catalogue.num_products, catalogue.num_rows
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True)
        self.loss_per_example = tf_keras.metrics.Mean(name="loss")

    def build_variables(self) -> None:
        """Create the item tower's weights now rather than at the first training step, so that what follows the
        weights (``fashionrec.model.averaging``) sets up before training. The tower is the first thing a step
        calls, and the only part built lazily, so its random initial weights are the same either way."""
        self.item_tower(tf.constant([0], tf.int64))

    @property
    def metrics(self) -> list[tf_keras.metrics.Metric]:
        """Keras resets these at each epoch's start, so the reported loss is the epoch's."""
        return [self.loss_per_example]

    def embed_history(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Customer vectors for padded histories, computing each distinct product's embedding once."""
        history_idx = features["history_idx"]
        unique, position = tf.unique(tf.reshape(self._history_rows(history_idx), [-1]))
        return self._in_context(self._pool(tf.gather(self.item_tower(unique, training=training), position), features),
                                features)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """In-batch softmax; one item-tower pass embeds every distinct history and candidate product.

        (So a product whose id embedding is dropped in a step is dropped wherever it appears in that step.)
        """
        if self._config.objective == "future_set":
            return self._future_set_loss(features, training)
        history_rows = tf.reshape(self._history_rows(features["history_idx"]), [-1])
        if self._config.negatives == "all_products":
            return self._full_softmax_loss(features, history_rows, training)
        candidate_ids = features["target_idx"]
        if self._config.extra_negatives:
            negatives = tf.random.uniform([self._config.extra_negatives], 0, self._num_products, tf.int64)
            candidate_ids = tf.concat([candidate_ids, negatives], axis=0)
        slots = tf.concat([history_rows, candidate_ids], axis=0)  # every product row the step looks up
        if self.embeds_every_row:
            rows, position = tf.range(self._num_rows, dtype=tf.int64), slots
        else:
            rows, position = tf.unique(slots)
        embeddings = self.item_tower(rows, training=training)
        customers = self._in_context(self._pool(tf.gather(embeddings, position[: tf.size(history_rows)]), features),
                                     features)
        candidates = tf.gather(embeddings, position[tf.size(history_rows):])
        return self.task(customers, candidates, sample_weight=self._target_weights(features),
                         candidate_sampling_probability=self._sampling_probability(
                             candidate_ids, tf.shape(features["target_idx"])[0]), candidate_ids=candidate_ids)

    def _full_softmax_loss(self, features: dict[str, tf.Tensor], history_rows: tf.Tensor,
                           training: bool) -> tf.Tensor:
        """Softmax cross-entropy of each target against every product (summed over examples, as the
        Retrieval task sums). One item-tower pass embeds the whole catalogue, histories included."""
        embeddings = self.item_tower(tf.range(self._num_products, dtype=tf.int64), training=training)
        customers = self._in_context(self._pool(tf.gather(embeddings, history_rows), features), features)
        logits = tf.matmul(customers, embeddings, transpose_b=True)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(features["target_idx"], logits)
        weights = self._target_weights(features)
        return tf.reduce_sum(losses if weights is None else losses * weights)

    def _future_set_loss(self, features: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        """The future-set objective on a batch of customer sequences (``features.sequence_dataset``): one
        item-tower pass embeds every product row, OOV buckets included."""
        sequence = features["sequence_idx"]
        valid = sequence != PAD
        cut = future_set_cuts(valid, self._config.seed, self._steps_taken())
        slot = tf.range(tf.shape(sequence)[1])[None, :]
        before = tf.logical_and(valid, slot < cut[:, None])
        after = tf.logical_and(valid, slot >= cut[:, None])
        seconds = features["sequence_seconds"]
        ages = tf.cast(tf.maximum(tf.gather(seconds, cut, batch_dims=1)[:, None] - seconds, 0), tf.float32)
        config = self._config
        weights = pooling_weights(tf.where(before, features["sequence_weight"], 0.0), ages / SECONDS_PER_DAY,
                                  config.pooling, config.recency_half_life_days, config.recency_half_life_events,
                                  before)
        embeddings = self.item_tower(tf.range(self._num_rows, dtype=tf.int64), training=training)
        customers = pooled_rows(sequence, weights, embeddings)
        context = {} if self.context is None else {
            f"target_{f}": tf.gather(features[f"sequence_{f}"], cut, batch_dims=1) for f in self.context.features}
        seen = product_marks(sequence, before, self._num_products)
        targets = tf.logical_and(product_marks(sequence, after, self._num_products), tf.logical_not(seen))
        return future_set_loss(self._in_context(customers, context), embeddings[: self._num_products], seen, targets)

    def _steps_taken(self) -> tf.Tensor | int:
        """The optimiser's step count (0 before the model is compiled): what seeds a step's random cuts."""
        optimizer = getattr(self, "optimizer", None)
        return 0 if optimizer is None else optimizer.iterations

    def _in_context(self, customers: tf.Tensor, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """The customer vectors moved by the target events' context (unchanged for a context-free model)."""
        return customers if self.context is None else self.context(customers, features)

    def _target_weights(self, features: dict[str, tf.Tensor]) -> tf.Tensor | None:
        """Each example's loss weight: with ``ips`` debiasing, 1 / the examination of its target event."""
        cap = self._config.inverse_examination_cap
        if cap is None or "target_examination" not in features:
            return None
        return inverse_examination(features["target_examination"], cap)

    def train_step(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """tensorflow-recommenders' step, with dense gradients for the content vocabularies' tables; the
        reported loss is the mean per training example (future set: per customer sequence) so far in the epoch
        (a last, partial batch counts by its size).

        Every product in a step looks up its tokens, category, colour, brand and price bucket, so their
        sparse gradients repeat the few rows of these small tables thousands of times; one dense update
        of a table bounded by ``TransformConfig`` is cheaper. The product-id table grows with the
        catalogue and keeps its sparse update.
        """
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            total_loss = loss + tf.reduce_sum([tf.reduce_sum(term) for term in self.losses])  # regularisers
        variables = self.trainable_variables
        dense = {table.ref() for table in self.item_tower.content_tables()}
        gradients = [tf.convert_to_tensor(g) if v.ref() in dense and isinstance(g, tf.IndexedSlices) else g
                     for v, g in zip(variables, tape.gradient(total_loss, variables), strict=True)]
        self.optimizer.apply_gradients(zip(gradients, variables))
        examples = self._examples(inputs)
        self.loss_per_example.update_state(loss / examples, sample_weight=examples)  # the task sums over examples
        return {"loss": self.loss_per_example.result()}

    @staticmethod
    def _examples(inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """A batch's training examples: its rows, or, for customer sequences, those with an event (a batch of
        sequences is filled up with empty ones to a fixed size)."""
        if "sequence_idx" in inputs:
            return tf.reduce_sum(tf.cast(tf.reduce_any(inputs["sequence_idx"] != PAD, axis=1), tf.float32))
        return tf.cast(tf.shape(inputs["target_idx"])[0], tf.float32)

    @staticmethod
    def _history_rows(history_idx: tf.Tensor) -> tf.Tensor:
        """Product rows of a padded history, padding mapped to row 0 (its weight is 0)."""
        return tf.where(history_idx != PAD, history_idx, tf.zeros_like(history_idx))

    def _pool(self, flat_embeddings: tf.Tensor, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Customer vectors from the [batch * history, dim] embeddings of the padded histories' slots."""
        history_idx = features["history_idx"]
        valid = history_idx != PAD
        embeddings = tf.reshape(flat_embeddings, tf.concat([tf.shape(history_idx), [-1]], axis=0))
        ages = features.get("history_age_days", tf.zeros_like(features["history_weight"]))
        weights = pooling_weights(tf.where(valid, features["history_weight"], 0.0), ages, self._config.pooling,
                                  self._config.recency_half_life_days, self._config.recency_half_life_events, valid)
        if self.attention is not None:
            return self.attention(embeddings, weights)
        return customer_vectors(embeddings, weights)

    def _sampling_probability(self, candidate_ids: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor | None:
        """How likely each candidate is to be among a batch's candidates (logQ), up to a constant factor.

        In-batch candidates are the targets, drawn in proportion to their popularity p_i; the uniform
        extra negatives add n / (batch_size * num_products) to every product.
        """
        if not self._config.logq_correction:
            return None
        uniform = self._config.extra_negatives / (tf.cast(batch_size, tf.float32) * self._num_products)
        return tf.gather(self._log_q_source, candidate_ids) + uniform
