"""How a customer's history is pooled into a customer vector: the contract between training and serving.

The export stage writes it as ``aggregation.json`` beside the embeddings; evaluation reads it to score
the candidate exactly as it will be served, and publishing copies it next to the serving models, whose
maths (``fashionrec.contract.ops.history_weights``) it parameterises.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fashionrec import storage
from fashionrec.config import EventWeights, TrainConfig, TransformConfig
from fashionrec.contract import layout, ops

AGGREGATION_FILE = layout.AGGREGATION_FILE


@dataclass(frozen=True)
class Aggregation:
    """Pooling kind, recency half-lives (in days of age and in newer events), each event type's weight and
    the pooling window (the last ``window`` events are pooled; 0: all of them)."""

    pooling: str = "weighted"
    half_life_days: float = 30.0
    half_life_events: float = 0.0  # 0: no decay by position (exports from before it existed)
    event_weights: dict[str, float] = field(default_factory=EventWeights().as_dict)
    window: int = 0  # 0: pool every event given (exports from before it existed)

    @classmethod
    def from_training(cls, train: TrainConfig, event_weights: EventWeights, window: int) -> Aggregation:
        """The aggregation a model was trained with (attention is served as its recency prior); ``window``
        is the longest history its training pooled (:func:`training_window`)."""
        pooling = "recency" if train.pooling == "attention" else train.pooling
        return cls(pooling, train.recency_half_life_days, train.recency_half_life_events, event_weights.as_dict(),
                   window)

    def weights(self, event_weights: np.ndarray, ages_days: np.ndarray | None) -> np.ndarray:
        """Pooling weight of each history event (oldest first), given its event weight and age in days."""
        return ops.history_weights(event_weights, ages_days, self.pooling, self.half_life_days, self.half_life_events,
                                   self.window)

    def write(self, uri: str) -> None:
        storage.write_json(uri, dataclasses.asdict(self))

    @classmethod
    def read(cls, uri: str) -> Aggregation:
        """The aggregation stored at ``uri``; the default (event-type weighted mean) when there is none."""
        return cls(**storage.read_json(uri)) if storage.exists(uri) else cls()


def training_window(train: TrainConfig, transform: TransformConfig) -> int:
    """The longest history a model's training pools: a next-event example's ``history_length``, or, with the
    future-set objective, the events before a cut in a customer's sequence (at most ``sequence_length - 1``)."""
    return transform.sequence_length - 1 if train.objective == "future_set" else transform.history_length
