"""Which requests may share a batch, and the batch they make, by hand. The rows' answers against a real Triton
are in tests/online/test_triton.py (the service's client is the one that batches)."""

from __future__ import annotations

import numpy as np

from fashionrec.config import ServingConfig
from fashionrec.serving import batching, requests
from fashionrec.serving.requests import History

SERVING = ServingConfig()


def _recommend(length: int, k: int = 5, **options) -> list[requests.Tensor]:
    history = History([f"P{i}" for i in range(length)], ["click"] * length, list(range(100, 100 + length)),
                      request_time=1_000)
    return requests.recommend_tensors(history, k, SERVING, **options)


def _key(tensors, cache_on: bool = False):
    return batching.batch_key("recommend", tensors, cache_on)


def test_requests_of_one_length_class_k_and_candidate_set_share_a_key():
    assert _key(_recommend(33)) == _key(_recommend(63)) is not None  # 33 and 63 events: both 6 bits long
    assert _key(_recommend(31)) != _key(_recommend(32))  # 5 bits against 6: more than twice as long may be padded
    assert batching.length_class(31) == 5 and batching.length_class(32) == 6 == batching.length_class(63)
    assert _key(_recommend(40, k=5)) != _key(_recommend(40, k=6))
    assert _key(_recommend(40, candidate_set="sale")) != _key(_recommend(40, candidate_set="new_in"))
    assert _key(_recommend(40, exclude_seen=True)) != _key(_recommend(40))  # other inputs
    assert batching.batch_key("similar", _recommend(40), False) != _key(_recommend(40))


def test_what_goes_alone():
    rerank = requests.rerank_tensors(History(["P1"]), ["P1", "P2"])  # no TOP_K: every candidate
    explicit = _recommend(4, candidates=["P1", "P2"])
    empty = requests.recommend_tensors(History([]), 5, SERVING)
    short_types = requests.recommend_tensors(History(["P1", "P2"], ["click"]), 5, SERVING)
    anonymous = requests.recommend_tensors(History(["P1", "P2"]), 5, SERVING)  # no REQUEST_TIME
    two_rows = [(name, np.concatenate([value, value]), datatype) for name, value, datatype in _recommend(3)]
    assert [_key(t) for t in (rerank, explicit, empty, short_types, two_rows)] == [None] * 5
    assert _key(anonymous, cache_on=True) is None and _key(anonymous, cache_on=False) is not None
    assert _key(_recommend(3), cache_on=True) is not None  # REQUEST_TIME: the cache cannot answer it anyway


def test_a_batch_pads_each_history_at_the_front_unknown_ids_and_the_rows_oldest_values():
    one = requests.recommend_tensors(History(["A", "B"], ["click", "purchase"], [10, 20], request_time=50), 3,
                                     SERVING, exclude=["X"], exclude_seen=True)
    two = requests.recommend_tensors(History(["C", "D", "E"], ["purchase", "click", "click"], [5, 6, 7],
                                             request_time=60), 3, SERVING, exclude=["Y", "Z"], exclude_seen=True)
    assert _key(one) == _key(two)
    batch = {name: (value.tolist(), datatype) for name, value, datatype in batching.stack([one, two])}
    assert batch == {
        "HISTORY_PRODUCT_IDS": ([["", "A", "B"], ["C", "D", "E"]], "BYTES"),
        "HISTORY_EVENT_TYPES": ([["click", "click", "purchase"], ["purchase", "click", "click"]], "BYTES"),
        "HISTORY_TIMESTAMPS": ([[10, 10, 20], [5, 6, 7]], "INT64"),
        "REQUEST_TIME": ([[50], [60]], "INT64"),
        "TOP_K": ([[3], [3]], "INT32"),
        "EXCLUDE_PRODUCT_IDS": ([["", "X"], ["Y", "Z"]], "BYTES"),
        "EXCLUDE_SEEN": ([[True], [True]], "BOOL"),
    }
