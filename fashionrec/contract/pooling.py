"""A request's histories -> customer vectors, as every serving step pools them.

``customer_vector`` answers with these vectors; ``rank_products`` pools the same way when a request
carries a history instead of a CUSTOMER_VECTOR, so ``recommend`` and ``rerank`` cross one python step,
not two (each crossing costs a copy of the inputs into the stub and a scheduling round in Triton).

Inputs per request, read through ``inputs(name)`` (the array, or None when the optional input is
absent), one row per customer: HISTORY_PRODUCT_IDS (required) and, optionally, HISTORY_EVENT_TYPES,
HISTORY_TIMESTAMPS (epoch seconds), HISTORY_WEIGHTS (override the event type's weight), REQUEST_TIME
(epoch seconds the ages are measured from; default now) and the context, one value per row:
CONTEXT_DEVICE, CONTEXT_REGION (text), CONTEXT_HOUR (local hour 0-23), CONTEXT_WEEKDAY (Monday 0 ..
Sunday 6; negative: unknown). A history may be far longer than the pooling window (up to
``max_history_length``: a whole seen-history for EXCLUDE_SEEN); only the window's events are looked up
and pooled. Ids missing from the catalogue are ignored (histories outlive catalogue versions). An empty
or too long history, an unknown event type, mismatched lengths or a clock out of range is that
request's :class:`~fashionrec.contract.validation.RequestError`, whether or not the version has context
tables. Part of :mod:`fashionrec.contract` (copied into every version folder).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.contract import context, layout, ops, validation

HISTORY_INPUT = "HISTORY_PRODUCT_IDS"
OPTIONAL_INPUTS = ("HISTORY_EVENT_TYPES", "HISTORY_TIMESTAMPS", "HISTORY_WEIGHTS", "REQUEST_TIME")
CONTEXT_INPUTS = {feature: f"CONTEXT_{feature.upper()}" for feature in context.FEATURES}  # [1] per row

Inputs = Callable[[str], "np.ndarray | None"]  # a request's input by name; None when it is absent


class HistoryPooling:
    """One version's pooling: its embeddings, id -> row index, aggregation settings and context tables."""

    def __init__(self, embeddings: np.ndarray, index: Mapping[bytes, int], aggregation: Mapping[str, Any],
                 tables: context.ContextTables | None, max_history_length: int) -> None:
        self.embeddings, self.index, self.aggregation = embeddings, index, aggregation
        self.window = int(aggregation.get("window", 0))
        self.tables = tables
        self.max_history_length = max_history_length
        used = () if tables is None else tables.features
        self.unused_clocks = [feature for feature in context.CLOCK_SIZES if feature not in used]

    @classmethod
    def load(cls, folder: Path, embeddings: np.ndarray, index: Mapping[bytes, int],
             max_history_length: int) -> HistoryPooling:
        """From a version folder's ``aggregation.json`` and, when present, ``context.json`` (CorruptVersion
        if either is unreadable: Triton then refuses the version)."""
        return cls(embeddings, index, layout.load_json(folder / layout.AGGREGATION_FILE),
                   context.load(folder, embeddings.shape[1]), max_history_length)

    def vectors(self, inputs: Inputs) -> np.ndarray:
        """The request's customer vectors [b, D] (float32), moved by its context."""
        ids = inputs(HISTORY_INPUT)
        if ids is None:
            raise validation.RequestError(f"{HISTORY_INPUT} is required")
        extra = {name: _rows(inputs, name, ids.shape[0]) for name in OPTIONAL_INPUTS}
        vectors = np.stack([self._vector(row, ids[row], extra) for row in range(ids.shape[0])])
        return self._in_context(inputs, vectors)

    def _vector(self, row: int, ids: np.ndarray, extra: dict[str, np.ndarray | None]) -> np.ndarray:
        """One history's vector: the whole history is checked, only the pooling window is looked up and
        pooled (the same vector as a request of just those events)."""
        validation.check_history(ids.size, self.max_history_length)
        types, stamps, weights, now = (None if extra[name] is None else extra[name][row] for name in OPTIONAL_INPUTS)
        pooled = validation.request_weights(ids.size, self.aggregation, types, stamps, weights,
                                            None if now is None else float(now[0]))
        window = ops.pooling_window(ids.size, self.window)
        return ops.customer_vector(self.embeddings, ops.lookup_rows(self.index, ids[window]), pooled[window])

    def _in_context(self, inputs: Inputs, vectors: np.ndarray) -> np.ndarray:
        """The vectors moved by the request's context (unchanged without context tables). Hours and weekdays
        are checked either way, so a client's bad clock fails on every version alike: by the tables' own
        lookup, or here for a clock the tables do not use."""
        values = {feature: _rows(inputs, name, len(vectors)) for feature, name in CONTEXT_INPUTS.items()}
        values = {feature: None if v is None else v.reshape(len(vectors)) for feature, v in values.items()}
        for feature in self.unused_clocks:
            if values[feature] is not None:
                context.clock_rows(feature, values[feature])
        return vectors if self.tables is None else self.tables.adjust(vectors, values)


def _rows(inputs: Inputs, name: str, rows: int) -> np.ndarray | None:
    """An optional input as [rows, ...], or None when the request does not carry it."""
    values = inputs(name)
    if values is not None and values.shape[0] != rows:
        raise validation.RequestError(f"{name} has {values.shape[0]} rows but {HISTORY_INPUT} has {rows}")
    return values
