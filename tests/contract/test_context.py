"""The context adjustment's numpy contract, with hand-computed numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashionrec.contract import context
from fashionrec.contract.context import CONTEXT_FILE, ContextTables
from fashionrec.contract.layout import CorruptVersion
from fashionrec.contract.validation import RequestError

DEVICE = np.array([[0, 0], [1, 0], [0, 1]], np.float32)  # unknown, mobile, desktop
HOUR = np.zeros((25, 2), np.float32)
HOUR[1 + 20] = [0.5, 0.5]  # 20:00
TABLES = ContextTables({"device": ("mobile", "desktop")}, {"device": DEVICE, "hour": HOUR})


def test_rows_map_known_values_from_one_and_everything_else_to_zero() -> None:
    assert TABLES.rows("device", ["mobile", b"desktop", "", "fridge"]).tolist() == [1, 2, 0, 0]
    assert TABLES.rows("hour", [0, 23, -1]).tolist() == [1, 24, 0]
    assert TABLES.rows("weekday", [6, -3]).tolist() == [7, 0]


def test_clock_values_out_of_range_are_the_requests_error() -> None:
    with pytest.raises(RequestError, match="CONTEXT_HOUR must be 0..23"):
        TABLES.rows("hour", [24])


def test_adjust_adds_each_features_row_by_hand() -> None:
    vectors = np.array([[1.0, 1.0], [2.0, 0.0]], np.float32)
    adjusted = TABLES.adjust(vectors, {"device": ["desktop", "tablet"], "hour": [20, 9], "region": ["GB", "SE"]})
    # row 0: + desktop [0, 1] + 20:00 [0.5, 0.5]; row 1: tablet unknown, 9:00 zero; region has no table
    np.testing.assert_array_equal(adjusted, [[1.5, 2.5], [2.0, 0.0]])
    assert TABLES.features == ("device", "hour")


def test_no_context_leaves_the_vector_as_it_is() -> None:
    vectors = np.array([[1.0, -1.0]], np.float32)
    np.testing.assert_array_equal(TABLES.adjust(vectors, {}), vectors)
    np.testing.assert_array_equal(TABLES.adjust(vectors, {"device": None, "hour": [-1]}), vectors)


def test_tables_must_have_a_zero_unknown_row_and_one_row_per_value() -> None:
    with pytest.raises(ValueError, match="row 0"):
        ContextTables({"device": ("mobile",)}, {"device": np.ones((2, 2), np.float32)})
    with pytest.raises(ValueError, match="expected"):
        ContextTables({}, {"weekday": np.zeros((7, 2), np.float32)})  # 7 days need 8 rows


def test_the_file_round_trips_and_a_corrupt_one_is_a_corrupt_version(tmp_path) -> None:
    assert context.load(tmp_path) is None
    (tmp_path / CONTEXT_FILE).write_text(json.dumps(TABLES.to_json()))
    loaded = context.load(tmp_path)
    assert loaded.vocabularies == TABLES.vocabularies and loaded.features == TABLES.features
    np.testing.assert_array_equal(loaded.tables["hour"], HOUR)
    (tmp_path / CONTEXT_FILE).write_text('{"tables": {"hour": [[1, 2]]}}')
    with pytest.raises(CorruptVersion, match="context.json"):
        context.load(tmp_path)
