import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from fashionrec import storage
from fashionrec.config import OBJECTIVES, TrainConfig, TransformConfig
from fashionrec.model.features import PAD, sequence_dataset, train_dataset
from fashionrec.stages.train import (_epochs, load_saved_configs, saved_target_counts, steps_per_epoch,
                                     target_counts, write_target_counts)
from fashionrec.artifacts import CUSTOMER_SEQUENCES_DIR, TARGET_COUNTS_FILE, TRAIN_CONFIG_FILE, TRAIN_EXAMPLES_DIR


def test_a_model_saved_before_the_id_fade_in_loads_with_it_off(tmp_path):
    saved = dataclasses.asdict(TrainConfig())
    del saved["id_fade_in_events"]
    storage.write_json(str(tmp_path / TRAIN_CONFIG_FILE), {"train": saved, "transform": {}})
    assert load_saved_configs(str(tmp_path)).train.id_fade_in_events == 0.0
    assert TrainConfig().id_fade_in_events > 0  # what a new model gets


def test_steps_per_epoch_count_the_last_partial_batch():
    assert [steps_per_epoch(n, 2) for n in (4, 5, 1)] == [2, 3, 1]
    assert steps_per_epoch(0, 2) == 1  # Keras needs a step; an empty dataset then stops it at once


def _write_train_examples(transformed_dir, targets: list[int]) -> None:
    """One training example per target, each with a one-product history."""
    examples = transformed_dir / TRAIN_EXAMPLES_DIR
    examples.mkdir()
    with tf.io.TFRecordWriter(str(examples / "part-00000-of-00001")) as writer:
        for target in targets:
            features = {"history_idx": tf.train.Feature(int64_list=tf.train.Int64List(value=[target + 10])),
                        "history_weight": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])),
                        "history_age_days": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0])),
                        "target_idx": tf.train.Feature(int64_list=tf.train.Int64List(value=[target]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


def _write_sequences(transformed_dir, sequences: list[list[int]]) -> None:
    """One customer sequence per list, its events a day apart."""
    folder = transformed_dir / CUSTOMER_SEQUENCES_DIR
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "part-00000-of-00001")) as writer:
        for sequence in sequences:
            features = {"sequence_idx": tf.train.Feature(int64_list=tf.train.Int64List(value=sequence)),
                        "sequence_weight": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * len(sequence))),
                        "sequence_seconds": tf.train.Feature(int64_list=tf.train.Int64List(
                            value=[86_400 * i for i in range(len(sequence))]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


def test_the_future_set_objective_trains_on_customer_sequences_a_batch_of_customers_a_step(tmp_path):
    from fashionrec.stages.train import _training_data

    _write_train_examples(tmp_path, [0, 1, 2, 3, 4])
    _write_sequences(tmp_path, [[0, 1], [2, 3, 1], [4, 0, 2, 1]])
    config = TrainConfig(objective="future_set", customers_per_batch=2)
    examples, batches, steps = _training_data(str(tmp_path), config, TransformConfig(sequence_length=6),
                                              np.ones(5), ())
    assert (examples, steps) == (3, 2)  # customers, not events
    first, second = list(batches.take(2))
    for batch in (first, second):  # one shape: customers_per_batch × the transform's sequence length
        assert {name: tuple(value.shape) for name, value in batch.items()} == {
            "sequence_idx": (2, 6), "sequence_weight": (2, 6), "sequence_seconds": (2, 6)}
        assert batch["sequence_idx"].numpy()[:, 4:].tolist() == [[PAD] * 2] * 2
    firsts = [b["sequence_idx"].numpy()[:, 0].tolist() for b in (first, second)]
    assert sorted(firsts[0] + firsts[1]) == [PAD, 0, 2, 4]  # every customer once; the last batch filled up
    empty = [row for b in (first, second) for row in b["sequence_idx"].numpy().tolist() if row[0] == PAD]
    assert empty == [[PAD] * 6]


def test_an_older_transform_without_sequences_says_to_transform_again(tmp_path):
    with pytest.raises(FileNotFoundError, match="no customer sequences at .*transform with this version"):
        sequence_dataset(str(tmp_path), (), 2, 11, 1_000)


def test_each_epoch_of_the_repeated_dataset_is_one_whole_pass_over_the_examples(tmp_path):
    _write_train_examples(tmp_path, list(range(5)))
    config = TrainConfig(batch_size=2)
    batches = list(_epochs(train_dataset(str(tmp_path), TransformConfig().history_length, config.batch_size,
                                         config.seed)).take(2 * steps_per_epoch(5, 2)))
    epochs = [np.concatenate([b["target_idx"].numpy() for b in batches[i:i + 3]]) for i in (0, 3)]
    assert [len(b["target_idx"]) for b in batches] == [2, 2, 1, 2, 2, 1]
    assert [sorted(e.tolist()) for e in epochs] == [[0, 1, 2, 3, 4]] * 2  # every example once an epoch


def test_the_training_batches_run_without_tf_data_autotuning(tmp_path):
    """Its thread makes dropping an iterator wait up to 60 s (see ``_epochs``)."""
    from fashionrec.stages.train import _training_data

    _write_train_examples(tmp_path, [0, 1])
    _write_sequences(tmp_path, [[0, 1], [2, 3, 1]])
    for objective in OBJECTIVES:
        config = TrainConfig(batch_size=2, customers_per_batch=2, objective=objective)
        _, batches, _ = _training_data(str(tmp_path), config, TransformConfig(), np.ones(2), ())
        assert batches.options().autotune.enabled is False


def test_export_reads_the_target_counts_training_saved_and_recounts_for_an_older_model(tmp_path):
    transformed, model = tmp_path / "transformed", tmp_path / "model"
    transformed.mkdir()
    model.mkdir()
    _write_train_examples(transformed, [0, 2, 2, 3])
    assert saved_target_counts(str(transformed), str(model), 5).tolist() == [1, 0, 2, 1, 0]  # none saved: counted
    write_target_counts(str(model), np.array([7.0, 0.0, 1.0, 0.0, 2.0]))
    assert saved_target_counts(str(transformed), str(model), 5).tolist() == [7, 0, 1, 0, 2]  # saved: read, not counted
    with pytest.raises(ValueError, match=r"of shape \(5,\), the transformed catalogue has 6 product rows"):
        saved_target_counts(str(transformed), str(model), 6)


def test_training_reads_the_transforms_target_counts_and_counts_an_older_transforms_examples(tmp_path):
    _write_train_examples(tmp_path, [0, 2, 2, 3])
    assert target_counts(str(tmp_path), 5).tolist() == [1, 0, 2, 1, 0]  # an older transform: counted
    storage.write_array(str(tmp_path / TARGET_COUNTS_FILE), np.array([4.0, 0.0, 3.0, 1.0, 0.0]))
    assert target_counts(str(tmp_path), 5).tolist() == [4, 0, 3, 1, 0]  # as the transform counted them
    with pytest.raises(ValueError, match=r"of shape \(5,\), the transformed catalogue has 4 product rows: the "
                                         "transform's outputs do not belong together"):
        target_counts(str(tmp_path), 4)
