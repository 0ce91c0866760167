"""The context adjustment in TensorFlow: the training twin of :mod:`fashionrec.contract.context`.

``u' = u + sum_f T_f[row_f]``, the tables added in the contract's feature order, row 0 (unknown) held at
zero by a mask, so that an export of the tables (:meth:`ContextAdjustment.tables_for_serving`) computes
the same sums in numpy and in Triton. The tables start at zero: training starts from the context-free
model and moves the customer vector only as far as the context explains the next interaction.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tf_keras

from fashionrec.contract.context import FEATURES, UNKNOWN, ContextTables


class ContextAdjustment(tf_keras.layers.Layer):
    """One learned [1 + size, dim] table per used feature; ``sizes``: feature -> number of known values."""

    def __init__(self, sizes: Mapping[str, int], dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.features = tuple(f for f in FEATURES if f in sizes)
        self.tables = {f: self.add_weight(name=f"context_{f}", shape=[1 + sizes[f], dim], initializer="zeros")
                       for f in self.features}

    def call(self, vectors: tf.Tensor, rows: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """``vectors`` [B, D] moved by each used feature's table at ``rows[f"target_{f}"]`` ([B] int; 0 or
        absent: unknown)."""
        for feature in self.features:
            row = rows.get(f"target_{feature}")
            if row is not None:
                known = tf.cast(row != UNKNOWN, vectors.dtype)[:, None]
                vectors = vectors + tf.gather(self.tables[feature], row) * known
        return vectors

    def tables_for_serving(self, vocabularies: Mapping[str, tuple[str, ...]]) -> ContextTables:
        """The learned tables as the serving contract holds them (row 0 zero, as the mask treats it)."""
        tables = {}
        for feature in self.features:
            table = self.tables[feature].numpy().astype(np.float32)
            table[UNKNOWN] = 0.0
            tables[feature] = table
        return ContextTables({f: tuple(v) for f, v in vocabularies.items() if f in tables}, tables)
