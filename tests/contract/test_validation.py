"""Checks of a Triton request's inputs (fashionrec.contract.validation), with hand-made requests."""

import numpy as np
import pytest

from fashionrec.contract import validation


def test_request_validation_messages() -> None:
    assert validation.top_k_error(1, 5) is None and validation.top_k_error(5, 5) is None
    assert validation.top_k_error(0, 5) == "TOP_K must be between 1 and 5, got 0"
    assert validation.top_k_error(6, 5) == "TOP_K must be between 1 and 5, got 6"
    assert validation.history_error(2, np.array([1.0, 2.0]), 2) is None
    assert "3 values" in validation.history_error(2, np.ones(3), 5)
    assert "max_history_length=2" in validation.history_error(3, np.ones(3), 2)
    assert "non-negative" in validation.history_error(1, np.array([-1.0]), 2)
    assert "finite" in validation.history_error(1, np.array([np.nan]), 2)


def test_request_weights_weigh_only_the_window_but_check_the_whole_history() -> None:
    aggregation = {"pooling": "weighted", "half_life_days": 1.0, "event_weights": {"click": 1.0, "purchase": 5.0},
                   "window": 2}
    # Triton sends event types as bytes; the first two events fall before the window
    types = np.array([b"purchase", b"click", b"purchase", b"click"], dtype=np.object_)
    np.testing.assert_array_equal(validation.request_weights(4, aggregation, types), [0.0, 0.0, 5.0, 1.0])
    with pytest.raises(validation.RequestError, match="unknown HISTORY_EVENT_TYPES 'view'"):
        validation.request_weights(3, aggregation, [b"view", b"click", b"click"])  # outside the window, still refused
    with pytest.raises(validation.RequestError, match="non-negative"):
        validation.request_weights(3, aggregation, explicit_weights=np.array([-1.0, 1.0, 1.0]))


def test_event_type_weights_take_bytes_or_str() -> None:
    weights = {"click": 1.0, "add_to_bag": 3.0}
    np.testing.assert_array_equal(validation.event_type_weights([b"add_to_bag", "click", b"click"], weights), [3.0, 1.0, 1.0])
    with pytest.raises(validation.RequestError, match="unknown HISTORY_EVENT_TYPES 'view', 'zoom'; known: click, add_to_bag"):
        validation.event_type_weights([b"zoom", b"click", b"view", b"zoom"], weights)
