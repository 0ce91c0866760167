import numpy as np
import pytest

from fashionrec.model.aggregation import Aggregation, training_window
from fashionrec.config import EventWeights, TrainConfig, TransformConfig


def test_the_aggregation_follows_the_training_config_and_event_weights():
    aggregation = Aggregation.from_training(
        TrainConfig(pooling="recency", recency_half_life_days=3.0, recency_half_life_events=5.0),
        EventWeights(purchase=9.0), window=50)
    assert (aggregation.pooling, aggregation.half_life_days, aggregation.half_life_events) == ("recency", 3.0, 5.0)
    assert aggregation.window == 50
    assert aggregation.event_weights["purchase"] == 9.0
    # attention is served as the recency weights it starts from
    assert Aggregation.from_training(TrainConfig(pooling="attention"), EventWeights(), 50).pooling == "recency"


def test_the_window_is_what_training_pooled_a_next_event_history_or_all_before_a_cut():
    transform = TransformConfig(history_length=50, sequence_length=1_000)
    assert training_window(TrainConfig(), transform) == 50
    assert training_window(TrainConfig(objective="future_set"), transform) == 999


def test_weights_decay_with_age_by_the_half_life():
    aggregation = Aggregation(pooling="recency", half_life_days=2.0)
    np.testing.assert_allclose(aggregation.weights(np.array([4.0, 4.0, 4.0]), np.array([0.0, 2.0, 4.0])),
                               [4.0, 2.0, 1.0])


def test_weights_also_decay_with_the_number_of_newer_events():
    aggregation = Aggregation(pooling="recency", half_life_days=2.0, half_life_events=1.0)
    np.testing.assert_allclose(aggregation.weights(np.array([8.0, 8.0, 8.0]), np.array([2.0, 0.0, 0.0])),
                               [1.0, 4.0, 8.0])


def test_only_the_last_window_events_are_pooled_however_long_the_history():
    # mean pooling over a window of 2: the first two of four events weigh nothing
    np.testing.assert_allclose(Aggregation(pooling="mean", window=2).weights(np.ones(4), None), [0, 0, 1, 1])
    # recency by newer events is counted inside the whole history: the window only cuts
    aggregation = Aggregation(pooling="recency", half_life_days=1e9, half_life_events=1.0, window=2)
    np.testing.assert_allclose(aggregation.weights(np.full(3, 4.0), np.zeros(3)), [0.0, 2.0, 4.0])
    # a history shorter than the window is pooled whole
    np.testing.assert_allclose(Aggregation(pooling="weighted", window=5).weights(np.array([1.0, 3.0]), None), [1, 3])


def test_a_file_written_before_position_decay_reads_without_it(tmp_path):
    uri = str(tmp_path / "aggregation.json")
    (tmp_path / "aggregation.json").write_text('{"pooling": "recency", "half_life_days": 7.0, "event_weights": {"click": 1.0}}')
    assert Aggregation.read(uri).half_life_events == 0.0
    assert Aggregation.read(uri).window == 0  # nor a window: every event given is pooled


def test_round_trip_and_the_default_when_no_file_exists(tmp_path):
    uri = str(tmp_path / "aggregation.json")
    assert Aggregation.read(uri) == Aggregation()  # older exports: the event-type weighted mean
    Aggregation(pooling="mean", half_life_days=1.5).write(uri)
    assert Aggregation.read(uri) == Aggregation(pooling="mean", half_life_days=1.5)


def test_an_unknown_pooling_in_a_file_is_refused_when_used(tmp_path):
    with pytest.raises(ValueError, match="unknown pooling"):
        Aggregation(pooling="sum").weights(np.ones(2), None)
