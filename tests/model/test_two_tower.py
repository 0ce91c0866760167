import numpy as np
import pytest
import tensorflow as tf

from fashionrec.config import ConfigError, TrainConfig
from fashionrec.model.features import PAD, CatalogueFeatures
from fashionrec.model.two_tower import (XLA_STEP_SPEEDUP, AttentionPooling, ItemTower, TwoTowerModel,
                                        customer_vectors, embeds_every_row, future_set_cuts, future_set_loss,
                                        inverse_examination, pooled_rows, pooling_weights, product_marks,
                                        row_totals)
from fashionrec.contract import ops


EVENTS = np.full(5, 10.0)  # training events per product row of _catalogue() (4 products + the OOV row)


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
    tower = ItemTower(_catalogue(), TrainConfig(temperature=0.25, embedding_dim=8), EVENTS)
    vectors = tower(tf.constant([0, 1, 2, 3], tf.int64)).numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 2.0, rtol=1e-5)  # 1 / sqrt(0.25)


def test_unknown_products_get_their_content_embedding_only():
    tower = ItemTower(_catalogue(), TrainConfig(embedding_dim=8, id_fade_in_events=0.0), EVENTS)
    tower(tf.constant([0], tf.int64))
    tower.id_embedding.embeddings.assign(tf.ones_like(tower.id_embedding.embeddings))
    oov_row = tf.constant([4], tf.int64)  # EVENTS gives it events: being out of vocabulary decides
    content_only = tf.math.l2_normalize(tower.content(oov_row), axis=-1) / np.sqrt(tower._config.temperature)
    np.testing.assert_allclose(tower(oov_row).numpy(), content_only.numpy(), rtol=1e-5)
    known = tf.constant([0], tf.int64)
    with_id = tf.math.l2_normalize(tower.content(known) + 1.0, axis=-1) / np.sqrt(tower._config.temperature)
    np.testing.assert_allclose(tower(known).numpy(), with_id.numpy(), rtol=1e-5)


def test_training_reduces_the_loss_on_a_learnable_toy_problem():
    import tf_keras

    catalogue = _catalogue()
    config = TrainConfig(embedding_dim=8, learning_rate=0.05, id_dropout=0.0)
    model = TwoTowerModel(catalogue, config, np.full(catalogue.num_rows, 0.2), EVENTS)
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


@pytest.mark.parametrize("every_row", [False, True])  # every row: compiled by XLA, as training compiles it
def test_reported_loss_is_the_epochs_mean_per_example_with_a_partial_last_batch(every_row):
    import tf_keras

    catalogue = _catalogue()
    config = TrainConfig(embedding_dim=8, id_dropout=0.0, learning_rate=0.0)  # the model stays as it is
    model = TwoTowerModel(catalogue, config, np.full(5, 0.2), EVENTS, embeds_every_row=every_row)
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate), jit_compile=every_row)
    full = {"history_idx": tf.constant([[0, PAD], [2, PAD], [1, 3]], tf.int64),
            "history_weight": tf.constant([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]),
            "target_idx": tf.constant([1, 3, 0], tf.int64)}
    partial = {"history_idx": tf.constant([[3, PAD], [0, 1]], tf.int64),
               "history_weight": tf.constant([[1.0, 0.0], [2.0, 1.0]]), "target_idx": tf.constant([2, 3], tf.int64)}
    batch_sums = [float(model.compute_loss(b).numpy()) for b in (full, partial)]  # the task sums over examples
    expected = sum(batch_sums) / 5  # 3 + 2 examples, not the mean of the two batches' losses
    dataset = tf.data.Dataset.from_tensors(full).concatenate(tf.data.Dataset.from_tensors(partial))
    history = model.fit(dataset, epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [expected, expected], rtol=1e-5)  # reset each epoch
    assert abs(expected - batch_sums[1]) > 1e-3 and abs(expected - np.mean(batch_sums)) > 1e-3


def test_loss_embeds_histories_and_candidates_as_the_towers_do_separately():
    catalogue = _catalogue()
    model = TwoTowerModel(catalogue, TrainConfig(embedding_dim=8), np.full(5, 0.2), EVENTS)
    features = {
        "history_idx": tf.constant([[0, 1], [2, PAD], [3, 0]], tf.int64),
        "history_weight": tf.constant([[1.0, 2.0], [1.0, 0.0], [3.0, 1.0]]),
        "target_idx": tf.constant([2, 3, 1], tf.int64),
    }
    loss = model.compute_loss(features).numpy()
    customers = model.embed_history(features)
    candidates = model.item_tower(features["target_idx"])
    expected = model.task(customers, candidates, candidate_sampling_probability=tf.fill([3], 0.2),
                          candidate_ids=features["target_idx"]).numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_inverse_examination_weights_are_clipped_inverses():
    weights = inverse_examination(tf.constant([1.0, 0.5, 0.25, 0.08, 0.0]), max_weight=10.0).numpy()
    np.testing.assert_allclose(weights, [1.0, 2.0, 4.0, 10.0, 10.0], rtol=1e-6)  # 1/0.08 = 12.5 -> 10


def _softmax_losses(customers: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Each example's in-batch softmax cross-entropy, its own target on the diagonal (hand-written)."""
    logits = customers @ candidates.T
    shifted = logits - logits.max(axis=1, keepdims=True)
    return -(np.diag(shifted) - np.log(np.exp(shifted).sum(axis=1)))


@pytest.mark.parametrize("debiasing, expected_weights", [("ips", [1.0, 2.0, 4.0]), ("off", [1.0, 1.0, 1.0])])
def test_ips_training_weighs_each_example_by_its_targets_inverse_examination(debiasing, expected_weights):
    config = TrainConfig(embedding_dim=8, logq_correction=False, position_debiasing=debiasing)
    model = TwoTowerModel(_catalogue(), config, np.full(5, 0.2), EVENTS)
    features = {
        "history_idx": tf.constant([[0, 1], [2, PAD], [3, 0]], tf.int64),
        "history_weight": tf.constant([[1.0, 2.0], [1.0, 0.0], [3.0, 1.0]]),
        "target_idx": tf.constant([2, 3, 1], tf.int64),
        "target_examination": tf.constant([1.0, 0.5, 0.25]),  # shown at slots looked at 100 %, 50 %, 25 %
    }
    loss = float(model.compute_loss(features).numpy())
    per_example = _softmax_losses(model.embed_history(features).numpy(),
                                  model.item_tower(features["target_idx"]).numpy())
    np.testing.assert_allclose(loss, float(np.dot(expected_weights, per_example)), rtol=1e-5)


@pytest.mark.parametrize("extra_negatives", [0, 2])
def test_embedding_every_row_gives_the_loss_of_embedding_the_batchs_distinct_products(extra_negatives):
    config = TrainConfig(embedding_dim=8, id_dropout=0.0, extra_negatives=extra_negatives)
    model = TwoTowerModel(_catalogue(), config, np.full(5, 0.2), EVENTS)
    features = {
        "history_idx": tf.constant([[0, 1], [2, PAD], [1, 0]], tf.int64),
        "history_weight": tf.constant([[1.0, 2.0], [1.0, 0.0], [3.0, 1.0]]),
        "target_idx": tf.constant([2, 3, 3], tf.int64),
    }
    losses = []
    for every_row in (False, True):
        model.embeds_every_row = every_row
        tf.random.set_seed(5)  # the same extra negatives both times
        losses.append(float(model.compute_loss(features, training=True).numpy()))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)


@pytest.mark.parametrize("counts, slots, expected", [
    # two products, half the targets each: one slot holds 2 * (1 - 1/2) = 1 distinct product on average,
    # and 2 rows <= 2.0 * 1
    ([5, 5], 1, True),
    # ten products, a tenth each: one slot holds 10 * (1 - 9/10) = 1; 10 rows > 2.0 * 1
    ([1] * 10, 1, False),
    # ... and 5 slots, 10 * (1 - 0.9 ** 5) = 4.095: 10 rows > 8.19
    ([1] * 10, 5, False),
    # ... 7 slots, 10 * (1 - 0.9 ** 7) = 5.217: 10 rows <= 10.43
    ([1] * 10, 7, True),
    # a product never a target is never drawn: 2 rows against 2.0 * 1 for the one drawn
    ([4, 0], 100, True),
    ([4, 0, 0], 100, False),
])
def test_every_row_is_embedded_while_the_catalogue_is_under_twice_the_expected_distinct_products(
        counts, slots, expected):
    assert XLA_STEP_SPEEDUP == 2.0
    assert embeds_every_row(np.array(counts, np.float64), slots) is expected


@pytest.mark.parametrize("logq", [True, False])
def test_loss_is_finite_with_and_without_logq(logq):
    catalogue = _catalogue()
    model = TwoTowerModel(catalogue, TrainConfig(embedding_dim=8, logq_correction=logq), np.full(5, 0.2), EVENTS)
    features = {
        "history_idx": tf.constant([[0, 1], [2, PAD]], tf.int64),
        "history_weight": tf.constant([[1.0, 2.0], [1.0, 0.0]]),
        "target_idx": tf.constant([2, 3], tf.int64),
    }
    assert np.isfinite(model.compute_loss(features).numpy())


# History pooling: TensorFlow (training) and numpy (serving) give the same hand-computed weights.
EVENT_WEIGHTS = np.array([1.0, 5.0, 3.0, 0.0], np.float32)  # the last slot is padding
AGES = np.array([0.0, 30.0, 60.0, 0.0], np.float32)
HAND_WEIGHTS = {
    "mean": [1.0, 1.0, 1.0, 1.0],
    "weighted": [1.0, 5.0, 3.0, 0.0],
    "recency": [1.0, 2.5, 0.75, 0.0],  # halved per 30 days: 5 * 1/2, 3 * 1/4
}


@pytest.mark.parametrize("pooling", sorted(HAND_WEIGHTS))
def test_pooling_weights_match_the_serving_function_and_hand_values(pooling):
    trained = pooling_weights(tf.constant(EVENT_WEIGHTS), tf.constant(AGES), pooling, 30.0).numpy()
    served = ops.history_weights(EVENT_WEIGHTS, AGES, pooling, 30.0)
    np.testing.assert_allclose(trained, HAND_WEIGHTS[pooling], rtol=1e-6)
    np.testing.assert_allclose(served, HAND_WEIGHTS[pooling], rtol=1e-6)


def test_recency_by_position_halves_per_half_life_of_newer_events_and_skips_padding():
    # oldest first: 3, 2, 1 and 0 newer events; the half-life is 2 events; the TF history ends in padding
    event_weights = np.array([4.0, 4.0, 2.0, 1.0], np.float32)
    ages = np.array([10.0, 0.0, 0.0, 0.0], np.float32)  # and the oldest is one age half-life old
    hand = [4.0 * 2 ** -1.5 / 2, 4.0 * 2 ** -1.0, 2.0 * 2 ** -0.5, 1.0]
    served = ops.history_weights(event_weights, ages, "recency", 10.0, half_life_events=2.0)
    padded = tf.constant([np.append(event_weights, 0.0)], tf.float32)
    valid = tf.constant([[True, True, True, True, False]])
    trained = pooling_weights(padded, tf.constant([np.append(ages, 0.0)], tf.float32), "recency", 10.0, 2.0, valid).numpy()
    np.testing.assert_allclose(served, hand, rtol=1e-6)
    np.testing.assert_allclose(trained[0], hand + [0.0], rtol=1e-6)


def test_mean_pooling_skips_padding_as_serving_never_sees_it():
    """Padding is product row 0 in training: with weight 1 it would pool product 0 into every short history."""
    weights = pooling_weights(tf.constant([[1.0, 5.0, 0.0]]), tf.zeros([1, 3]), "mean", 30.0,
                              valid=tf.constant([[True, True, False]])).numpy()
    np.testing.assert_allclose(weights, [[1.0, 1.0, 0.0]])
    model = TwoTowerModel(_catalogue(), TrainConfig(embedding_dim=4, pooling="mean"), np.full(5, 0.2), EVENTS)
    features = {"history_idx": tf.constant([[1, PAD]], tf.int64), "history_weight": tf.constant([[1.0, 0.0]])}
    product_1 = model.item_tower(tf.constant([1], tf.int64)).numpy()
    np.testing.assert_allclose(model.embed_history(features).numpy(), product_1, rtol=1e-6)


def test_recency_ignores_negative_and_unknown_ages_in_serving():
    weights = ops.history_weights(np.array([2.0, 2.0]), np.array([-5.0, np.nan]), "recency", 10.0)
    np.testing.assert_allclose(weights, [2.0, 2.0])
    with pytest.raises(ValueError, match="unknown pooling"):
        ops.history_weights(np.ones(1), None, "max", 10.0)


def test_attention_with_a_zero_query_is_the_weighted_mean():
    embeddings = tf.constant([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    weights = tf.constant([[1.0, 3.0, 0.0]])
    pooling = AttentionPooling(2)
    np.testing.assert_allclose(pooling(embeddings, weights).numpy(), [[0.25, 1.5]], rtol=1e-6)


def test_attention_weights_are_a_softmax_of_query_dot_embedding_plus_log_weight():
    embeddings = tf.constant([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    weights = tf.constant([[1.0, 1.0, 0.0]])  # the third slot is padding
    pooling = AttentionPooling(2)
    pooling.query.assign([np.log(3.0), 0.0])  # logits: log 3 for the first item, 0 for the second
    np.testing.assert_allclose(pooling(embeddings, weights).numpy(), [[0.75, 0.25]], rtol=1e-6)  # 3:1


def test_an_empty_history_pools_to_the_zero_vector_with_attention():
    pooling = AttentionPooling(3)
    np.testing.assert_array_equal(pooling(tf.ones([1, 2, 3]), tf.zeros([1, 2])).numpy(), np.zeros([1, 3]))


# The loss on a 3x3 batch, by hand: logits U C^T - log q, softmax cross-entropy on the diagonal, summed.
CUSTOMERS = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
CANDIDATES = tf.constant([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # U C^T = [[1,0,0],[0,1,0],[1,1,0]]


def test_in_batch_softmax_loss_with_logq_on_a_3x3_batch():
    model = TwoTowerModel(_catalogue(), TrainConfig(embedding_dim=2), np.full(5, 0.2), EVENTS)
    q = tf.constant([0.5, 0.25, 0.25])  # - log q adds ln2, 2 ln2, 2 ln2 to the three columns
    e = np.e
    # row 0: exp -> [2e, 4, 4]; row 1: [2, 4e, 4]; row 2: [2e, 4e, 4], target in column 2
    expected = np.log(1 + 4 / e) + np.log(1 + 1.5 / e) + np.log(1 + 1.5 * e)
    loss = model.task(CUSTOMERS, CANDIDATES, candidate_sampling_probability=q,
                      candidate_ids=tf.constant([0, 1, 2], tf.int64))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_in_batch_softmax_loss_without_logq_and_with_an_accidental_hit():
    model = TwoTowerModel(_catalogue(), TrainConfig(embedding_dim=2), np.full(5, 0.2), EVENTS)
    e = np.e
    plain = np.log(1 + 2 / e) + np.log(1 + 2 / e) + np.log(1 + 2 * e)  # rows [e,1,1], [1,e,1], [e,e,1]
    loss = model.task(CUSTOMERS, CANDIDATES, candidate_ids=tf.constant([0, 1, 2], tf.int64))
    np.testing.assert_allclose(loss.numpy(), plain, rtol=1e-5)
    # candidates 0 and 2 are the same product: it is not a negative for rows 0 and 2
    hits = np.log(1 + 1 / e) + np.log(1 + 2 / e) + np.log(1 + e)
    loss = model.task(CUSTOMERS, CANDIDATES, candidate_ids=tf.constant([7, 1, 7], tf.int64))
    np.testing.assert_allclose(loss.numpy(), hits, rtol=1e-5)


def test_full_softmax_scores_each_target_against_every_product_and_weighs_by_examination():
    config = TrainConfig(embedding_dim=2, negatives="all_products", position_debiasing="ips")
    model = TwoTowerModel(_catalogue(), config, np.full(5, 0.2), EVENTS)
    table = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, 0.0]], np.float32)  # the 4 products
    model.item_tower = lambda rows, training=False: tf.gather(table, rows)
    features = {
        "history_idx": tf.constant([[0, PAD], [1, PAD]], tf.int64),  # customer vectors [1, 0] and [0, 1]
        "history_weight": tf.constant([[1.0, 0.0], [1.0, 0.0]]),
        "target_idx": tf.constant([0, 2], tf.int64),
        "target_examination": tf.constant([1.0, 0.5]),
    }
    e = np.e
    # logits [1, 0, 0, -1] with target 0, and [0, 1, 0, 0] with target 2 (weight 1 / 0.5)
    expected = np.log(1 + 2 / e + 1 / e ** 2) + 2 * np.log(3 + e)
    np.testing.assert_allclose(model.compute_loss(features).numpy(), expected, rtol=1e-5)


def test_extra_negatives_on_top_of_a_full_softmax_are_a_config_error():
    with pytest.raises(ConfigError, match="extra_negatives"):
        TrainConfig(negatives="all_products", extra_negatives=8)


def test_extra_uniform_negatives_add_to_every_candidates_sampling_probability():
    popularity = np.array([0.5, 0.25, 0.125, 0.125, 0.0])
    model = TwoTowerModel(_catalogue(), TrainConfig(embedding_dim=2, extra_negatives=2), popularity, EVENTS)
    probability = model._sampling_probability(tf.constant([0, 1, 3], tf.int64), tf.constant(3)).numpy()
    np.testing.assert_allclose(probability, np.array([0.5, 0.25, 0.125]) + 2 / (3 * 4), rtol=1e-6)
    no_logq = TwoTowerModel(_catalogue(), TrainConfig(embedding_dim=2, logq_correction=False), popularity, EVENTS)
    assert no_logq._sampling_probability(tf.constant([0], tf.int64), tf.constant(1)) is None


@pytest.mark.parametrize("pooling", ["mean", "weighted", "recency", "attention"])
def test_every_pooling_trains_with_extra_negatives(pooling):
    import tf_keras

    catalogue = _catalogue()
    config = TrainConfig(embedding_dim=8, learning_rate=0.05, id_dropout=0.0, pooling=pooling, extra_negatives=3)
    model = TwoTowerModel(catalogue, config, np.full(catalogue.num_rows, 0.2), EVENTS)
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate))
    features = {
        "history_idx": tf.constant([[0, PAD], [2, PAD]], tf.int64),
        "history_weight": tf.constant([[1.0, 0.0], [1.0, 0.0]]),
        "history_age_days": tf.constant([[3.0, 0.0], [40.0, 0.0]]),
        "target_idx": tf.constant([1, 3], tf.int64),
    }
    tf.keras.utils.set_random_seed(0)
    model.fit(tf.data.Dataset.from_tensors(features).repeat(60), epochs=1, verbose=0)
    scores = model.embed_history(features).numpy() @ model.item_tower(tf.constant([1, 3], tf.int64)).numpy().T
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]  # 0 -> 1 and 2 -> 3 were learned


def test_unknown_pooling_is_a_clear_error():
    with pytest.raises(ConfigError, match="pooling: 'max' is not one of mean, weighted, recency, attention"):
        TrainConfig(pooling="max")
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pooling_weights(tf.ones([1, 2]), tf.zeros([1, 2]), "max", 7.0)


def test_the_id_part_fades_in_with_the_products_training_events():
    counts = np.array([0.0, 1.0, 3.0, 30.0, 0.0])  # the last row is the OOV bucket
    tower = ItemTower(_catalogue(), TrainConfig(embedding_dim=8, id_fade_in_events=3.0), counts)
    rows = tf.constant([0, 1, 2, 3], tf.int64)
    tower(rows)
    tower.id_embedding.embeddings.assign(tf.ones_like(tower.id_embedding.embeddings))
    gate = np.array([0.0, 0.25, 0.5, 30.0 / 33.0])[:, None]  # n / (n + 3)
    expected = tf.math.l2_normalize(tower.content(rows) + gate, axis=-1) / np.sqrt(tower._config.temperature)
    np.testing.assert_allclose(tower(rows).numpy(), expected.numpy(), rtol=1e-5)



def test_future_set_loss_is_each_customers_mean_target_log_loss_among_products_not_seen():
    table = tf.constant([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, 0.0]])
    customers = tf.constant([[1.0, 0.0], [0.0, 1.0]])  # logits [1, 0, 0, -1] and [0, 1, 0, 0]
    seen = tf.constant([[True, False, False, False], [False, True, False, False]])
    targets = tf.constant([[False, True, False, True], [False, False, False, False]])  # the second has none
    # product 0 masked out: -log p(1) = log(2 + 1/e), -log p(3) = 1 + log(2 + 1/e); their mean; the second adds 0
    expected = np.log(2 + 1 / np.e) + 0.5
    np.testing.assert_allclose(future_set_loss(customers, table, seen, targets).numpy(), expected, rtol=1e-6)


def test_row_totals_sum_each_sequences_values_by_row_and_drop_rows_outside_the_width():
    rows = tf.constant([[2, 0, 2, PAD], [1, 3, 5, 1]], tf.int64)  # 3 and 5 lie outside a width of 3
    values = tf.constant([[1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 4.0, 8.0]])
    np.testing.assert_allclose(row_totals(rows, values, 3).numpy(), [[2.0, 0.0, 5.0], [0.0, 9.0, 0.0]])


def test_pooled_rows_is_the_weighted_mean_of_the_rows_a_history_repeats_or_pads():
    table = tf.constant([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    rows = tf.constant([[1, 1, 0], [2, 0, 0], [0, 0, 0]], tf.int64)  # the last: all padding
    weights = tf.constant([[1.0, 1.0, 2.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # (2 * [0, 2] + 2 * [1, 0]) / 4; (3 * [4, 4] + [1, 0]) / 4; no weight: zero
    expected = [[0.5, 1.0], [3.25, 3.0], [0.0, 0.0]]
    np.testing.assert_allclose(pooled_rows(rows, weights, table).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(pooled_rows(rows, weights, table).numpy(),
                               customer_vectors(tf.gather(table, rows), weights).numpy(), rtol=1e-6)


def test_product_marks_flag_the_masked_slots_catalogue_products_only():
    sequence = tf.constant([[0, 3, 4, PAD], [2, 2, 1, PAD]], tf.int64)  # row 4: an OOV bucket of 4 products
    mask = tf.constant([[True, True, True, False], [True, True, False, False]])
    assert product_marks(sequence, mask, 4).numpy().tolist() == [[True, False, False, True],
                                                                  [False, False, True, False]]


def test_future_set_cuts_leave_an_event_on_each_side_and_reach_every_such_place():
    valid = tf.constant([[True, True, False, False, False], [True] * 5])
    cuts = np.stack([future_set_cuts(valid, 11, step).numpy() for step in range(200)])
    assert set(cuts[:, 0]) == {1}
    assert set(cuts[:, 1]) == {1, 2, 3, 4}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_future_set_cuts_are_a_function_of_the_seed_and_step_alone(jit_compile):
    valid = tf.constant([[True] * 50] * 64)
    cuts = tf.function(future_set_cuts, jit_compile=jit_compile)
    first = cuts(valid, 11, tf.constant(0, tf.int64)).numpy()
    tf.random.uniform([3])  # other random draws in between change nothing
    np.testing.assert_array_equal(cuts(valid, 11, tf.constant(0, tf.int64)).numpy(), first)
    assert not np.array_equal(cuts(valid, 11, tf.constant(1, tf.int64)).numpy(), first)
    assert not np.array_equal(cuts(valid, 12, tf.constant(0, tf.int64)).numpy(), first)


def _future_set_model(context_sizes=None, pooling="recency"):
    config = TrainConfig(embedding_dim=2, objective="future_set", pooling=pooling)
    model = TwoTowerModel(_catalogue(), config, np.full(5, 0.2), EVENTS, context_sizes)
    table = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, 0.0], [9.0, 9.0]], np.float32)  # + the OOV row
    model.item_tower = lambda rows, training=False: tf.gather(table, rows)
    return model


@pytest.mark.parametrize("pooling", ["mean", "weighted", "recency"])
def test_the_future_set_objective_pools_before_the_cut_and_scores_every_product_after_it(pooling):
    model = _future_set_model(pooling=pooling)
    features = {  # two events each, so the cut is after the first: pooled [1, 0] and [0, 1]
        "sequence_idx": tf.constant([[0, 1, PAD], [1, 0, PAD]], tf.int64),
        "sequence_weight": tf.constant([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]),
        "sequence_seconds": tf.constant([[0, 86_400, 0], [0, 60, 0]], tf.int64),
    }
    # masked logits [-, 0, 0, -1] with target 1, and [0, -, 0, 0] with target 0
    expected = np.log(2 + 1 / np.e) + np.log(3)
    np.testing.assert_allclose(model.compute_loss(features).numpy(), expected, rtol=1e-5)
    filled = {name: tf.concat([value, tf.zeros_like(value[:1]) + (PAD if name == "sequence_idx" else 0)], axis=0)
              for name, value in features.items()}  # an empty sequence, as fills an epoch's last batch
    np.testing.assert_allclose(model.compute_loss(filled).numpy(), expected, rtol=1e-5)


def test_a_compiled_future_set_step_reports_the_loss_per_sequence_not_counting_the_empty_ones():
    import tf_keras

    catalogue = _catalogue()
    config = TrainConfig(embedding_dim=8, learning_rate=0.0, id_dropout=0.0, objective="future_set")
    model = TwoTowerModel(catalogue, config, np.full(catalogue.num_rows, 0.2), EVENTS)
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate), jit_compile=True)
    features = {"sequence_idx": tf.constant([[0, 1], [2, 3], [PAD, PAD]], tf.int64),
                "sequence_weight": tf.constant([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]),
                "sequence_seconds": tf.constant([[0, 60], [0, 60], [0, 0]], tf.int64)}
    total = float(model.compute_loss(features).numpy())  # two events each: the same cut whatever the draw
    history = model.fit(tf.data.Dataset.from_tensors(features), epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [total / 2], rtol=1e-5)


def test_the_future_set_objective_moves_the_customer_by_the_context_of_the_first_event_after_the_cut():
    model = _future_set_model({"hour": 24})
    model.context.tables["hour"].assign(tf.tensor_scatter_nd_update(
        tf.zeros([25, 2]), [[10]], [[0.0, 5.0]]))  # hour row 10 favours product 1
    features = {"sequence_idx": tf.constant([[0, 1]], tf.int64), "sequence_weight": tf.constant([[1.0, 1.0]]),
                "sequence_seconds": tf.constant([[0, 60]], tf.int64), "sequence_hour": tf.constant([[3, 10]], tf.int64)}
    # [1, 0] + [0, 5]: masked logits [-, 5, 0, -1], target 1
    expected = np.log(np.exp(5) + 1 + 1 / np.e) - 5
    np.testing.assert_allclose(model.compute_loss(features).numpy(), expected, rtol=1e-5)


def test_future_set_training_learns_what_follows_what():
    import tf_keras

    catalogue = _catalogue()
    config = TrainConfig(embedding_dim=8, learning_rate=0.05, id_dropout=0.0, objective="future_set",
                         normalize_embeddings=False)
    model = TwoTowerModel(catalogue, config, np.full(catalogue.num_rows, 0.2), EVENTS)
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate))
    features = {"sequence_idx": tf.constant([[0, 1], [2, 3]], tf.int64),  # 0 then 1, and 2 then 3
                "sequence_weight": tf.ones([2, 2]), "sequence_seconds": tf.constant([[0, 60], [0, 60]], tf.int64)}
    before = float(model.compute_loss(features).numpy())
    model.fit(tf.data.Dataset.from_tensors(features).repeat(100), epochs=1, verbose=0)
    after = float(model.compute_loss(features).numpy())
    assert after < 0.2 * before


def test_the_future_set_objective_refuses_what_it_does_not_train():
    with pytest.raises(ConfigError, match="pooling"):
        TrainConfig(objective="future_set", pooling="attention")
    with pytest.raises(ConfigError, match="position_debiasing"):
        TrainConfig(objective="future_set", position_debiasing="ips")
