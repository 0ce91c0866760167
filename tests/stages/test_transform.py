import numpy as np
import pandas as pd

from fashionrec.stages.transform import (_sum_counts, customer_sequences, holdout_examples, next_item_examples,
                                         target_counts)

TRAIN = pd.DataFrame(
    {  # sorted by customer, then time
        "customer_id": ["A", "A", "A", "A", "B", "C", "C"],
        "product_idx": [10, 11, 12, 13, 20, 30, 31],
        "weight": np.array([1, 2, 3, 4, 5, 6, 7], np.float32),
        "seconds": [86_400 * d for d in (1, 2, 3, 5, 1, 1, 2)],
    }
)


def test_next_item_examples_use_the_previous_events_up_to_the_history_length():
    batch = next_item_examples(TRAIN, history_length=2).to_pydict()
    assert batch["customer_id"] == [[b"A"], [b"A"], [b"A"], [b"C"]]
    assert batch["history_idx"] == [[10], [10, 11], [11, 12], [30]]
    assert batch["history_weight"] == [[1.0], [1.0, 2.0], [2.0, 3.0], [6.0]]
    assert batch["target_idx"] == [[11], [12], [13], [31]]
    assert batch["history_age_days"] == [[1.0], [2.0, 1.0], [3.0, 2.0], [1.0]]  # days before the target


def test_target_counts_count_every_event_but_each_customers_first_as_the_examples_do():
    shifted = TRAIN.assign(product_idx=[0, 1, 1, 3, 2, 3, 4])  # A: 0 1 1 3, B: 2, C: 3 4
    assert target_counts(shifted, 6).tolist() == [0, 2, 0, 1, 1, 0]  # A: 1, 1, 3; C: 4
    targets = np.concatenate(next_item_examples(shifted, history_length=2).to_pydict()["target_idx"])
    assert target_counts(shifted, 6).tolist() == np.bincount(targets, minlength=6).tolist()
    assert _sum_counts([np.array([1.0, 0.0]), np.array([2.0, 5.0])], 2).tolist() == [3.0, 5.0]
    assert _sum_counts([], 2).tolist() == [0.0, 0.0]  # no shard: zeros


def test_customer_sequences_keep_each_customers_newest_events_and_skip_a_single_event():
    batch = customer_sequences(TRAIN, sequence_length=3).to_pydict()
    assert batch["customer_id"] == [[b"A"], [b"C"]]  # B has one event: nothing before or after a cut
    assert batch["sequence_idx"] == [[11, 12, 13], [30, 31]]  # A's newest 3 of 4, oldest first
    assert batch["sequence_weight"] == [[2.0, 3.0, 4.0], [6.0, 7.0]]
    assert batch["sequence_seconds"] == [[86_400 * 2, 86_400 * 3, 86_400 * 5], [86_400, 86_400 * 2]]
    assert "sequence_hour" not in batch  # no vocabulary: no context rows


def test_each_example_carries_its_target_events_examination_one_where_unknown():
    assert next_item_examples(TRAIN, history_length=2).to_pydict()["target_examination"] == [[1.0]] * 4
    shown = TRAIN.assign(examination=np.array([0.5, 0.25, np.nan, 0.8, 1.0, 0.9, 0.6], np.float32))
    batch = next_item_examples(shown, history_length=2).to_pydict()
    assert batch["target_idx"] == [[11], [12], [13], [31]]
    assert np.allclose(np.ravel(batch["target_examination"]), [0.25, 1.0, 0.8, 0.6])  # A's 2nd-4th, C's 2nd


def test_holdout_examples_pair_the_whole_train_history_with_distinct_later_products():
    holdout = pd.DataFrame(
        {"customer_id": ["A", "A", "A", "D"], "product_idx": [14, 10, 14, 40],
         "weight": np.ones(4, np.float32), "seconds": [86_400 * d for d in (6, 7, 8, 6)]}
    )
    batch = holdout_examples(TRAIN, holdout, split_seconds=86_400 * 6).to_pydict()
    assert batch["customer_id"] == [[b"A"], [b"D"]]
    # every train event, not a window: all of them are excluded from the ranking (D is new: no history)
    assert batch["history_idx"] == [[10, 11, 12, 13], []]
    assert batch["history_weight"] == [[1.0, 2.0, 3.0, 4.0], []]
    assert batch["history_age_days"] == [[5.0, 4.0, 3.0, 1.0], []]  # aged at the split time
    assert batch["target_idxs"] == [[14, 10], [40]]


def test_tft_scratch_space_follows_the_runner_temp_location():
    from fashionrec.config import TransformConfig
    from fashionrec.stages.transform import _tft_temp_dir

    remote = TransformConfig(beam_runner="DataflowRunner", beam_options=("--temp_location=gs://bucket/tmp",))
    with _tft_temp_dir(remote) as temp_dir:
        assert temp_dir == "gs://bucket/tmp/tft"
    with _tft_temp_dir(TransformConfig()) as temp_dir:
        assert temp_dir.startswith("/")


def test_a_target_horizon_ends_each_history_up_to_that_many_events_before_its_target():
    # one customer with 30 events: product i at day i
    train = pd.DataFrame({"customer_id": ["A"] * 30, "product_idx": np.arange(30), "weight": np.ones(30, np.float32),
                          "seconds": 86_400 * np.arange(30)})
    batch = next_item_examples(train, history_length=4, target_horizon=3).to_pydict()
    assert [t[0] for t in batch["target_idx"]] == list(range(1, 30))  # still one example per event after the first
    gaps = []
    for history, (target,), ages in zip(batch["history_idx"], batch["target_idx"], batch["history_age_days"]):
        assert 1 <= len(history) <= 4 and history == list(range(history[0], history[-1] + 1))  # consecutive events
        gaps.append(target - history[-1])  # 1 = the history ends just before the target
        assert ages == [float(target - h) for h in history]  # aged at the target's time
    assert set(gaps) == {1, 2, 3}  # 29 draws from {1, 2, 3}: each one occurs
    assert batch == next_item_examples(train, history_length=4, target_horizon=3).to_pydict()  # seeded
    assert next_item_examples(train, 4, target_horizon=1).to_pydict() == next_item_examples(train, 4).to_pydict()


def test_targets_carry_their_context_rows_and_holdouts_their_first_events_context():
    from fashionrec.stages.context import ContextVocabulary

    vocabulary = ContextVocabulary({"device": ("mobile", "desktop"), "region": ("GB",)}, clock=True)
    shown = TRAIN.assign(device=["mobile", "desktop", "", "tablet", "mobile", "mobile", "desktop"],
                         region=["GB", "GB", "SE", "GB", "", "", "GB"],
                         hour=[20, 21, -1, 9, 0, 1, 23], weekday=[0, 1, 2, 6, -1, 3, 4])
    batch = next_item_examples(shown, history_length=2, vocabulary=vocabulary).to_pydict()
    # targets: A's 2nd-4th events, C's 2nd; rows: 1 + vocabulary index or clock value, 0 unknown
    assert batch["target_device"] == [[2], [0], [0], [2]]  # desktop, blank, tablet (unknown), desktop
    assert batch["target_region"] == [[1], [0], [1], [1]]  # GB, SE (unknown), GB, GB
    assert batch["target_hour"] == [[22], [0], [10], [24]]
    assert batch["target_weekday"] == [[2], [3], [7], [5]]
    sequences = customer_sequences(shown, sequence_length=10, vocabulary=vocabulary).to_pydict()
    assert sequences["sequence_device"] == [[1, 2, 0, 0], [1, 2]]  # every event's row: A's four, C's two
    assert sequences["sequence_hour"] == [[21, 22, 0, 10], [2, 24]]
    holdout = pd.DataFrame({"customer_id": ["A", "A"], "product_idx": [14, 15], "weight": np.ones(2, np.float32),
                            "seconds": [86_400 * 6, 86_400 * 7], "device": ["tablet", "mobile"], "region": ["", "GB"],
                            "hour": [8, 9], "weekday": [5, 6]})
    first = holdout_examples(shown, holdout, split_seconds=86_400 * 6).to_pydict()
    assert first["context_device"] == [[b"tablet"]] and first["context_region"] == [[b""]]
    assert first["context_hour"] == [[8]] and first["context_weekday"] == [[5]]
