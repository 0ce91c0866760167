"""The evaluation's Beam ranking job on hand-made holdout examples, figures computed by hand."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation.holdout import sample_customers, sampling_key
from fashionrec.evaluation.holdout_ranking import (
    HoldoutSystems,
    PooledSystem,
    rank_and_read,
)
from fashionrec.evaluation.systems import embedding_system, popularity_system
from fashionrec.model.aggregation import Aggregation
from fashionrec.model.features import load_eval_examples

# Product i embeds as [i, 0]: any customer vector [x > 0, 0] ranks the products by row, highest first.
TABLE = np.stack([np.arange(8, dtype=np.float32), np.zeros(8, np.float32)], axis=1)
POPULARITY = np.array([10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0])  # product 0 most popular, then 1, ...
# A saw 0-5 and came back to 6. B came back only to product 3, which they had seen: not evaluated.
# C saw 7 and came back to 0 and to 7 (seen: not a target).
CUSTOMERS = {"A": (list(range(6)), [6]), "B": ([2, 3], [3]), "C": ([7], [0, 7])}
SMALL = dict(top_k=(1, 2), report_k=(1, 3), gate_metric="recall@2", compare_metrics=("recall@2",))
CONFIG = EvaluateConfig(**SMALL)


def _write_holdout(folder, customers):
    folder.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / "part-00000")) as writer:
        for customer_id, (history, targets) in customers.items():
            feature = {
                "customer_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[customer_id.encode()])),
                "history_idx": tf.train.Feature(int64_list=tf.train.Int64List(value=history)),
                "history_weight": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * len(history))),
                "history_age_days": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * len(history))),
                "target_idxs": tf.train.Feature(int64_list=tf.train.Int64List(value=targets)),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(folder)


def _systems():
    model = PooledSystem(lambda moved: embedding_system(TABLE, in_context=moved), Aggregation(pooling="mean"))
    return HoldoutSystems(baselines={"popularity": popularity_system(POPULARITY)}, pooled={"model": model},
                          num_products=len(TABLE))


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    return _write_holdout(tmp_path_factory.mktemp("transformed") / "eval_examples", CUSTOMERS)


def test_each_system_ranks_and_scores_every_evaluated_customer_as_computed_by_hand(holdout, tmp_path):
    ranked = rank_and_read(holdout, _systems(), str(tmp_path), CONFIG, window=0)
    assert ranked.customer_ids.tolist() == ["A", "C"]  # B has nothing new
    assert [t.tolist() for t in ranked.target_idxs] == [[6], [0]]
    assert ranked.history_lengths.tolist() == [6, 1]
    # the model: A's mean vector [2.5, 0] ranks 7, 6 (0-5 seen); C's [7, 0] ranks 6, 5, 4 (7 seen)
    assert ranked.top["model"].tolist() == [[7, 6], [6, 5]]
    model = ranked.values["model"]
    assert model["recall@1"].tolist() == [0.0, 0.0] and model["recall@2"].tolist() == [1.0, 0.0]
    assert model["mrr"].tolist() == [0.5, 0.0]
    assert model["ndcg@2"][0] == pytest.approx(1 / np.log2(3))
    # A's target 6 scores 15 against its one negative, 7 (17.5); C's target 0 scores 0, below all six others
    assert model["auc"].tolist() == [0.0, 0.0]
    assert ranked.curves["model"]["recall@3"].tolist() == [1.0, 0.0]
    # popularity skips what each customer saw: A gets 6, 7; C gets 0, 1
    assert ranked.top["popularity"].tolist() == [[6, 7], [0, 1]]
    assert ranked.values["popularity"]["mrr"].tolist() == [1.0, 1.0]
    assert ranked.values["popularity"]["auc"].tolist() == [1.0, 1.0]
    assert (tmp_path / "ranked_customers").is_dir()  # the per-customer rows stay with the evaluation


def test_the_figures_do_not_depend_on_how_customers_are_batched(holdout, tmp_path):
    whole = rank_and_read(holdout, _systems(), str(tmp_path / "whole"), CONFIG, window=0)
    one_by_one = rank_and_read(holdout, _systems(), str(tmp_path / "single"),
                               EvaluateConfig(**SMALL, ranking_batch_size=1), window=0)
    for name in ("model", "popularity"):
        np.testing.assert_array_equal(whole.top[name], one_by_one.top[name])
        for metric, values in whole.values[name].items():
            np.testing.assert_array_equal(values, one_by_one.values[name][metric])
    many = _write_holdout(tmp_path / "many", {f"c{i}": ([i % 8], [(i + 1) % 8]) for i in range(40)})
    negatives = EvaluateConfig(**SMALL, auc_negatives=3)
    batched = rank_and_read(many, _systems(), str(tmp_path / "b40"), negatives, window=0)
    single = rank_and_read(many, _systems(), str(tmp_path / "b1"), EvaluateConfig(
        **SMALL, auc_negatives=3, ranking_batch_size=1), window=0)
    np.testing.assert_array_equal(batched.values["model"]["auc"], single.values["model"]["auc"])
    assert len(set(batched.values["model"]["auc"].tolist())) > 1  # sampled negatives: the AUCs differ


def test_the_sample_keeps_the_customers_with_the_smallest_keys_like_the_in_memory_rule(tmp_path):
    customers = {f"c{i}": ([i % 8], [(i + 3) % 8]) for i in range(30)}
    examples_dir = _write_holdout(tmp_path / "transformed" / "eval_examples", customers)
    config = EvaluateConfig(**SMALL, max_eval_customers=7, seed=11)
    ranked = rank_and_read(examples_dir, _systems(), str(tmp_path / "eval"), config, window=0)
    smallest = sorted(customers, key=lambda c: sampling_key(11, c))[:7]
    assert ranked.customer_ids.tolist() == sorted(smallest)
    in_memory = sample_customers(load_eval_examples(str(tmp_path / "transformed")), config, window=0)
    assert in_memory.customer_ids.tolist() == sorted(smallest)
    assert sampling_key(11, "c1") != sampling_key(12, "c1")  # the seed changes the sample


def test_rows_are_kept_as_parquet_one_per_customer(holdout, tmp_path):
    rank_and_read(holdout, _systems(), str(tmp_path), CONFIG, window=0)
    table = pq.read_table(str(tmp_path / "ranked_customers"))
    assert sorted(table.column("customer_id").to_pylist()) == ["A", "C"]
    assert {"model/top", "model/recall@2", "model/auc", "model/curve/ndcg@3", "popularity/mrr"} <= set(
        table.column_names)


def test_a_distributed_runner_reads_and_writes_the_given_paths_and_the_systems_file_is_removed(
        holdout, tmp_path, monkeypatch):
    from fashionrec.evaluation import holdout_ranking

    monkeypatch.setattr(holdout_ranking, "LOCAL_BEAM_RUNNERS", ())  # DirectRunner, taken for a remote one
    ranked = rank_and_read(holdout, _systems(), str(tmp_path), EvaluateConfig(**SMALL, beam_runner="DirectRunner"),
                           window=0)
    assert ranked.customer_ids.tolist() == ["A", "C"]
    assert ranked.top["popularity"].tolist() == [[6, 7], [0, 1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranked_customers"]  # systems.pkl is gone
