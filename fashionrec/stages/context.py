"""Events' context as example features: the vocabularies, from the training events, and each event's values.

Ingest keeps the optional context columns ``device``, ``region`` and ``local_time`` (the customer's wall
clock). The model's context features (:mod:`fashionrec.contract.context`) are ``device`` and ``region`` by
vocabulary, and the local ``hour`` and ``weekday``. The vocabularies are what the training events hold, most
frequent first, at most ``transform.max_context_values`` each; a feature the data never carries has none,
and the model then learns no table for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fashionrec import artifacts, storage
from fashionrec.contract.context import CLOCK_SIZES, FEATURES, TEXT_FEATURES
from fashionrec.stages.ingest import LOCAL_TIME

SOURCE_COLUMNS = (*TEXT_FEATURES, LOCAL_TIME)  # ingest's optional columns the features come from
UNKNOWN_TEXT, UNKNOWN_CLOCK = "", -1


@dataclass(frozen=True)
class ContextVocabulary:
    """The known values of the text features, and whether the events carry a local time (hour, weekday)."""

    values: dict[str, tuple[str, ...]]
    clock: bool = False

    @property
    def features(self) -> tuple[str, ...]:
        """The features the data carries, in :data:`FEATURES` order."""
        return tuple(f for f in FEATURES if (self.clock if f in CLOCK_SIZES else self.values.get(f)))

    def write(self, transformed_dir: str) -> None:
        storage.write_json(storage.join(transformed_dir, artifacts.CONTEXT_VOCABULARY_FILE),
                           {"values": {f: list(v) for f, v in self.values.items()}, "clock": self.clock})

    @classmethod
    def read(cls, transformed_dir: str) -> ContextVocabulary:
        """The transform's vocabulary; none (no context) for a transform made before it was written."""
        uri = storage.join(transformed_dir, artifacts.CONTEXT_VOCABULARY_FILE)
        if not storage.exists(uri):
            return cls({})
        data = storage.read_json(uri)
        return cls({f: tuple(v) for f, v in data["values"].items()}, bool(data["clock"]))


def build_vocabulary(events_uri: str, columns: Sequence[str], max_values: int) -> ContextVocabulary:
    """The vocabulary of the training events, read from their ``columns`` (those of :data:`SOURCE_COLUMNS`
    the file has): each text feature's values by frequency (ties by value)."""
    if not columns:
        return ContextVocabulary({})
    with storage.open_input(events_uri) as stream:
        frame = pq.read_table(stream, columns=list(columns)).to_pandas()
    values = {f: _most_frequent(frame[f], max_values) for f in TEXT_FEATURES if f in frame}
    return ContextVocabulary(values, clock=LOCAL_TIME in frame and bool(frame[LOCAL_TIME].notna().any()))


def _most_frequent(column: pd.Series, limit: int) -> tuple[str, ...]:
    counts = column.dropna().astype(str).loc[lambda text: text != UNKNOWN_TEXT].value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(value for value, _ in ordered[:limit])


def event_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Each event's context feature values (unknown: "" for text, -1 for the clock), in :data:`FEATURES` order."""
    values = {f: (frame[f].fillna(UNKNOWN_TEXT).astype(str) if f in frame else UNKNOWN_TEXT) for f in TEXT_FEATURES}
    local = pd.to_datetime(frame[LOCAL_TIME]) if LOCAL_TIME in frame else pd.Series(pd.NaT, index=frame.index)
    values["hour"] = local.dt.hour.fillna(UNKNOWN_CLOCK).astype(np.int64)
    values["weekday"] = local.dt.dayofweek.fillna(UNKNOWN_CLOCK).astype(np.int64)
    return pd.DataFrame(values, index=frame.index)[list(FEATURES)]


def feature_dtypes() -> dict[str, str]:
    """The columns :func:`event_values` adds, with their dtypes (for empty frames)."""
    return {f: ("int64" if f in CLOCK_SIZES else "object") for f in FEATURES}


def chosen(vocabulary: ContextVocabulary, wanted: Sequence[str]) -> tuple[str, ...]:
    """The features a model learns: those it asks for (``train.context_features``) that the data carries."""
    return tuple(f for f in vocabulary.features if f in wanted)
