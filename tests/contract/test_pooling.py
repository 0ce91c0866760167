"""The history pooling both python steps serve (customer_vector, and rank_products without a CUSTOMER_VECTOR),
with hand-computed numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashionrec.contract import layout
from fashionrec.contract.context import CONTEXT_FILE, ContextTables
from fashionrec.contract.layout import CorruptVersion
from fashionrec.contract.pooling import HistoryPooling
from fashionrec.contract.validation import RequestError

EMBEDDINGS = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], np.float32)
INDEX = {b"a": 0, b"b": 1, b"c": 2}
WEIGHTED = {"pooling": "weighted", "half_life_days": 7.0, "event_weights": {"view": 1.0, "purchase": 3.0}, "window": 2}
DEVICE = np.array([[0, 0], [10, 0]], np.float32)  # unknown, mobile
TABLES = ContextTables({"device": ("mobile",)}, {"device": DEVICE})


def pooling(aggregation=WEIGHTED, tables=None, max_history_length=4) -> HistoryPooling:
    return HistoryPooling(EMBEDDINGS, INDEX, aggregation, tables, max_history_length)


def request(**inputs):
    return lambda name: inputs.get(name)


def test_only_the_window_is_pooled_by_event_type_weight() -> None:
    ids = np.array([[b"c", b"a", b"b"]], np.object_)  # "c" is outside the window of 2
    types = np.array([[b"view", b"view", b"purchase"]], np.object_)
    vectors = pooling().vectors(request(HISTORY_PRODUCT_IDS=ids, HISTORY_EVENT_TYPES=types))
    np.testing.assert_allclose(vectors, [[0.25, 0.75]])  # (1 * [1, 0] + 3 * [0, 1]) / 4
    assert vectors.dtype == np.float32


def test_each_row_pools_its_own_history_and_unknown_ids_weigh_nothing() -> None:
    ids = np.array([[b"a", b"zzz"], [b"b", b"c"]], np.object_)
    vectors = pooling({"pooling": "mean", "half_life_days": 7.0}).vectors(request(HISTORY_PRODUCT_IDS=ids))
    np.testing.assert_allclose(vectors, [[1.0, 0.0], [1.0, 1.5]])


def test_context_moves_each_row_by_its_own_value() -> None:
    ids = np.array([[b"a"], [b"a"]], np.object_)
    device = np.array([[b"mobile"], [b"fridge"]], np.object_)
    vectors = pooling(tables=TABLES).vectors(request(HISTORY_PRODUCT_IDS=ids, CONTEXT_DEVICE=device))
    np.testing.assert_allclose(vectors, [[11.0, 0.0], [1.0, 0.0]])


def test_a_clock_out_of_range_is_refused_even_without_context_tables() -> None:
    ids = np.array([[b"a"]], np.object_)
    with pytest.raises(RequestError, match="CONTEXT_HOUR"):
        pooling().vectors(request(HISTORY_PRODUCT_IDS=ids, CONTEXT_HOUR=np.array([[24]], np.int32)))


@pytest.mark.parametrize("inputs, message", [
    ({}, "HISTORY_PRODUCT_IDS is required"),
    ({"HISTORY_PRODUCT_IDS": np.array([[b"a"] * 5], np.object_)}, "more than max_history_length=4"),
    ({"HISTORY_PRODUCT_IDS": np.array([[b"a"]], np.object_),
      "REQUEST_TIME": np.array([[1], [2]], np.int64)}, "REQUEST_TIME has 2 rows but HISTORY_PRODUCT_IDS has 1"),
    ({"HISTORY_PRODUCT_IDS": np.array([[b"a"]], np.object_),
      "HISTORY_EVENT_TYPES": np.array([[b"wishlist"]], np.object_)}, "wishlist"),
])
def test_bad_requests_are_the_requests_error(inputs, message) -> None:
    with pytest.raises(RequestError, match=message):
        pooling().vectors(request(**inputs))


def test_load_reads_the_version_folders_files(tmp_path) -> None:
    (tmp_path / layout.AGGREGATION_FILE).write_text(json.dumps(WEIGHTED))
    (tmp_path / CONTEXT_FILE).write_text(json.dumps(TABLES.to_json()))
    loaded = HistoryPooling.load(tmp_path, EMBEDDINGS, INDEX, max_history_length=4)
    assert loaded.window == 2 and loaded.tables.features == ("device",) and loaded.unused_clocks == ["hour", "weekday"]
    (tmp_path / CONTEXT_FILE).write_text('{"tables": {"device": [[1, 2]]}}')
    with pytest.raises(CorruptVersion):
        HistoryPooling.load(tmp_path, EMBEDDINGS, INDEX, max_history_length=4)
