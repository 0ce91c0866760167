"""Context: a learned adjustment of the customer vector by the request's device, region, hour and weekday.

Why an adjustment and not a new tower: the customer vector stays an aggregate of the embeddings of the
products the customer interacted with (the product's core shape), and the context moves it, ``u' = u +
sum_f T_f[row_f]``, so the same customer leans towards loungewear in the evening or a region's colours.
The score stays ``u' . q_i`` (+ prior), so every touchpoint takes the context through the customer vector.

Each feature's table has one row per known value plus row 0 for "unknown" (absent, blank, or a value
the model never saw), which is all zeros: a request without context scores exactly as a context-free
model's customer vector would. Rows, in order: ``device``/``region``: 1 + the value's index in the
vocabulary; ``hour``: 1 + the local hour (0-23); ``weekday``: 1 + the local weekday (Monday 0 ... Sunday 6).
The tables are added in :data:`FEATURES` order, the same order as the TensorFlow model adds them
(:class:`fashionrec.model.context.ContextAdjustment`), so both compute the same float32 sums.

Part of :mod:`fashionrec.contract` (copied into every version folder under the same import path). The
export stage writes the tables as ``context.json`` (:data:`CONTEXT_FILE`) beside the embeddings; a version
without it has no context adjustment.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionrec.contract.layout import CorruptVersion
from fashionrec.contract.validation import RequestError

CONTEXT_FILE = "context.json"
FEATURES = ("device", "region", "hour", "weekday")  # the order the tables are added in
TEXT_FEATURES = ("device", "region")
CLOCK_SIZES = {"hour": 24, "weekday": 7}  # values 0 .. size-1; a negative value is unknown
UNKNOWN = 0  # every table's row for an unknown value


@dataclass(frozen=True)
class ContextTables:
    """The learned tables of the features a model uses (a subset of :data:`FEATURES`, in that order)."""

    vocabularies: Mapping[str, tuple[str, ...]]  # device/region: the known values, row i + 1 is value i
    tables: Mapping[str, np.ndarray]  # feature -> float32 [1 + size, D], row 0 all zeros

    def __post_init__(self) -> None:
        for feature, table in self.tables.items():
            size = CLOCK_SIZES.get(feature) or len(self.vocabularies.get(feature, ()))
            if feature not in FEATURES or table.ndim != 2 or table.shape[0] != size + 1:
                raise ValueError(f"context table {feature!r} has shape {table.shape}; expected [1 + {size}, D]")
            if np.any(table[UNKNOWN]) or not np.all(np.isfinite(table)):
                raise ValueError(f"context table {feature!r}: row 0 (unknown) must be zeros and every value finite")

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(f for f in FEATURES if f in self.tables)

    @functools.cached_property
    def _indexes(self) -> dict[str, dict[str, int]]:
        """Each text feature's value -> row, built once (a request must not pay for the vocabulary's size)."""
        return {feature: vocabulary_index(values) for feature, values in self.vocabularies.items()}

    def rows(self, feature: str, values: Sequence[object] | np.ndarray) -> np.ndarray:
        """Table rows of a batch of one feature's values, mapped as :func:`value_rows` maps them."""
        if feature in CLOCK_SIZES:
            return clock_rows(feature, np.asarray(values, np.int64))
        return _text_rows(values, self._indexes.get(feature, {}))

    def adjust(self, vectors: np.ndarray, context: Mapping[str, Sequence[object] | np.ndarray | None]) -> np.ndarray:
        """``vectors`` [B, D] plus each used feature's rows for the batch's ``context`` values (a feature
        missing from ``context`` or None is unknown for the whole batch), added in :data:`FEATURES` order."""
        adjusted = np.asarray(vectors, np.float32)
        for feature in self.features:
            values = context.get(feature)
            if values is not None:
                adjusted = adjusted + self.tables[feature][self.rows(feature, values)]
        return adjusted

    def to_json(self) -> dict:
        return {"vocabularies": {f: list(v) for f, v in self.vocabularies.items()},
                "tables": {f: t.tolist() for f, t in self.tables.items()}}

    @classmethod
    def from_json(cls, data: Mapping) -> ContextTables:
        return cls({f: tuple(v) for f, v in data.get("vocabularies", {}).items()},
                   {f: np.asarray(t, np.float32) for f, t in data["tables"].items()})


def value_rows(feature: str, values: Sequence[object] | np.ndarray, vocabulary: Sequence[str] = ()) -> np.ndarray:
    """Table rows of a batch of one feature's values, as training and serving both map them: text (str or
    UTF-8 bytes) by ``vocabulary``, clock values as ints; unknown values give row 0, and a clock value out
    of range is a :class:`RequestError`."""
    if feature in CLOCK_SIZES:
        return clock_rows(feature, np.asarray(values, np.int64))
    return _text_rows(values, vocabulary_index(vocabulary))


def vocabulary_index(vocabulary: Sequence[str]) -> dict[str, int]:
    """value -> table row: 1 + its place in the vocabulary (row 0 is unknown)."""
    return {value: row + 1 for row, value in enumerate(vocabulary)}


def _text_rows(values: Sequence[object] | np.ndarray, index: Mapping[str, int]) -> np.ndarray:
    return np.fromiter((index.get(_text(v), UNKNOWN) for v in values), np.int64, count=len(values))


def clock_rows(feature: str, values: np.ndarray) -> np.ndarray:
    """Rows of hours (0-23) or weekdays (0-6): 1 + the value, 0 for a negative (unknown) one."""
    size = CLOCK_SIZES[feature]
    if np.any(values >= size):
        raise RequestError(f"CONTEXT_{feature.upper()} must be 0..{size - 1}, or negative for unknown; "
                           f"got {int(values.max())}")
    return np.where(values < 0, UNKNOWN, values + 1).astype(np.int64)


def load(folder: Path, embedding_dim: int | None = None) -> ContextTables | None:
    """A version folder's context tables, or None when the model has none; checked by :func:`parse`."""
    path = Path(folder) / CONTEXT_FILE
    return parse(path.read_bytes(), str(path), embedding_dim) if path.exists() else None


def parse(text: str | bytes, source: str, embedding_dim: int | None = None) -> ContextTables:
    """Context tables from a ``context.json``'s text, as every reader checks them: they load (row 0 zeros,
    one row per value, finite) and, given ``embedding_dim``, are as wide as the catalogue's embeddings. A
    file that cannot be served is :class:`~fashionrec.contract.layout.CorruptVersion` naming ``source``
    (Triton then refuses the version; publish refuses the export)."""
    try:
        tables = ContextTables.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSON and Unicode errors are ValueErrors
        raise CorruptVersion(f"{source}: not a context table file ({error})") from None
    widths = {f: t.shape[1] for f, t in tables.tables.items() if embedding_dim is not None and t.shape[1] != embedding_dim}
    if widths:
        raise CorruptVersion(f"{source}: tables {widths} are not {embedding_dim} wide like the catalogue's embeddings")
    return tables


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
