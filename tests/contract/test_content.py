"""The numpy content tower's preprocessing on hand-checked inputs (its equality with TensorFlow and TFT
is tests/test_export_content.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fashionrec.stages import ingest
from fashionrec.contract import content

FEATURES = {"format": 1, "max_tokens": 4, "oov_buckets": 1, "temperature": 0.25, "normalize": False, "gelu": "erf",
            "vocabularies": {"tokens": ["red", "dress", "linen"], "category": ["dresses", "coats"],
                             "colour": ["red"], "brand": ["acme"]},
            "price": {"boundaries": [10.0, 50.0], "mean": 2.0, "var": 4.0}}


def tower(normalize: bool = False) -> content.ContentTower:
    """Weights chosen so the output is hand-computable: one-hot-ish embeddings, identity-like dense layers."""
    weights = {"tokens": np.array([[0, 0], [1, 0], [0, 1], [2, 2], [4, 4]], np.float32),  # pad, red, dress, linen, OOV
               "category": np.array([[1], [2], [3]], np.float32), "colour": np.zeros((2, 1), np.float32),
               "brand": np.zeros((2, 1), np.float32), "price_bucket": np.array([[0], [10], [20]], np.float32),
               "hidden_kernel": np.eye(7, dtype=np.float32), "hidden_bias": np.zeros(7, np.float32),
               "output_kernel": np.eye(7, 2, dtype=np.float32), "output_bias": np.zeros(2, np.float32)}
    return content.ContentTower({**FEATURES, "normalize": normalize}, weights)


def test_tokens_lower_ascii_only_and_split_on_everything_else() -> None:
    assert content.tokenize("Red LINEN-Dress", "100% \u00c9t\u00e9", 10) == ["red", "linen", "dress", "100", "t"]
    assert content.tokenize("\u212aelvin", "", 10) == ["elvin"]  # str.lower would give "kelvin"
    assert content.tokenize("a b c", "d e", 4) == ["a", "b", "c", "d"]
    assert content.tokenize("", "", 4) == []


def test_encoding_maps_unknowns_to_the_oov_index_and_prices_to_buckets() -> None:
    encoded = tower().encode(["red dress", "Zzz"], ["", ""], ["coats", "hats"], ["red", "blue"], ["x", "acme"],
                             [10.0, math.expm1(2.0)])
    np.testing.assert_array_equal(encoded.token_rows, [[1, 2, 0, 0], [4, 0, 0, 0]])  # OOV token = 3 + 1
    np.testing.assert_array_equal(encoded.category, [1, 2])
    np.testing.assert_array_equal(encoded.colour, [0, 1])
    np.testing.assert_array_equal(encoded.brand, [1, 0])
    np.testing.assert_array_equal(encoded.price_bucket, [1, 0])  # a price equal to a boundary goes above it
    np.testing.assert_allclose(encoded.price_z, [(math.log1p(10.0) - 2.0) / 2.0, 0.0], atol=1e-6)


def test_embedding_by_hand() -> None:
    # hidden = gelu(identity), output = its first 2 inputs: the mean of the "red" and "dress" rows
    got = tower().embed([content.ProductContent("red dress", "dresses", 60.0)])
    np.testing.assert_allclose(got, [[0.3457312306 / 0.5, 0.3457312306 / 0.5]], atol=1e-6)  # gelu(0.5) / sqrt(0.25)
    normalised = tower(normalize=True).embed([content.ProductContent("red dress", "dresses", 60.0)])
    np.testing.assert_allclose(normalised, [[math.sqrt(0.5) * 2, math.sqrt(0.5) * 2]], atol=1e-6)


@pytest.mark.parametrize("price", [-1.0, float("nan"), float("inf")])
def test_bad_prices_are_refused(price: float) -> None:
    with pytest.raises(content.ProductError, match="PRICE must be finite and non-negative; product 1"):
        tower().embed([content.ProductContent("a", "b", 1.0), content.ProductContent("a", "b", price)])


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(content.ProductError, match="one value per product"):
        tower().embed_columns(["a", "b"], ["", ""], ["c"], ["d", "d"], ["e", "e"], [1.0, 2.0])


def test_a_features_file_the_twin_cannot_reproduce_is_refused() -> None:
    with pytest.raises(ValueError, match="vocab_oov_buckets=1"):
        content.ContentTower({**FEATURES, "oov_buckets": 3}, tower().weights)
    with pytest.raises(ValueError, match="hidden_kernel takes 7 inputs, the features make 8"):
        content.ContentTower(FEATURES, {**tower().weights, "tokens": np.zeros((5, 3), np.float32)})


def test_product_defaults_are_ingests() -> None:
    defaults = content.ProductContent("t", "c", 1.0)
    assert (defaults.description, defaults.colour, defaults.brand) == tuple(
        ingest.CATALOGUE_OPTIONAL[k] for k in ("description", "colour", "brand"))
