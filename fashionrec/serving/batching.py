"""Several clients' requests to one touchpoint as one batched request, each row answered as if alone.

Triton's dynamic batcher groups requests inside a step, but every request still crosses gRPC, the
ensemble and each python step on its own: about a millisecond of Triton's CPU per ``recommend`` of a
200-event history, of which a batch of eight rows spends about half per row (measured on the shop's
2-core box). A client with many requests in flight (the shop service on sale day) saves that by sending
them together. This module says which requests can go together and builds the batch; the asynchronous
gathering is the client's (:class:`fashionrec.online.triton.Touchpoints`).

Rows of one request must share every input's shape, so the histories (and explicit exclusions) are
padded at the front, where the oldest events are, to the batch's longest:

- ``HISTORY_PRODUCT_IDS`` and ``EXCLUDE_PRODUCT_IDS`` with :data:`UNKNOWN_ID`. Unknown ids are ignored by
  every step (a history outlives catalogue versions): they add nothing to the customer vector and
  exclude nothing. Padding older than every real event never enters a pooling window before a real
  event, and recency weights count only newer events, so the customer vector is bit for bit the lone
  request's (``tests/serving/test_batching.py`` asks a real Triton both ways).
- ``HISTORY_EVENT_TYPES``, ``HISTORY_TIMESTAMPS`` and ``HISTORY_WEIGHTS`` with the row's own oldest value,
  which the server accepts because it accepted it for the row's first event.

What goes alone (:func:`batch_key` gives None): a request of more than one row, one without ``TOP_K``
(every row of a batch is cut to the fewest products any row kept, so only a fixed k can be checked
afterwards), one with explicit candidates (``CANDIDATE_PRODUCT_IDS``: a ragged list that is not
padded), one with an empty history or with event types, timestamps or weights not one per history
event (the server refuses those; padded, they would pass), and, when the response cache is on, one without ``REQUEST_TIME``:
an anonymous request the cache may answer, which a batch would never match again. Only requests of the
same model, inputs, k and candidate set go together, and histories only within a factor of two of each
other's length (``length_class``): a 5,000-event seen-history padding seven 200-event ones would cost more
than the batch saves.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from fashionrec.serving.requests import Tensor

UNKNOWN_ID = ""  # never a product id: ingest refuses empty ids
PADDED_WITH_UNKNOWN = ("HISTORY_PRODUCT_IDS", "EXCLUDE_PRODUCT_IDS")
PADDED_WITH_OLDEST = ("HISTORY_EVENT_TYPES", "HISTORY_TIMESTAMPS", "HISTORY_WEIGHTS")
RAGGED = PADDED_WITH_UNKNOWN + PADDED_WITH_OLDEST
HISTORY = "HISTORY_PRODUCT_IDS"
KEYED_BY_VALUE = ("TOP_K", "CANDIDATE_SET")  # rows of one batch ask the same k among the same set
ALONE_WITH = ("CANDIDATE_PRODUCT_IDS",)


def batch_key(model: str, tensors: Sequence[Tensor], cache_on: bool) -> Hashable | None:
    """What a request must share with others to go in one batch with them, or None: it goes alone."""
    names = {name for name, _, _ in tensors}
    if ("TOP_K" not in names or names.intersection(ALONE_WITH) or HISTORY not in names
            or (cache_on and "REQUEST_TIME" not in names)):
        return None
    if any(value.ndim != 2 or value.shape[0] != 1 for _, value, _ in tensors):
        return None
    length = _row_length(tensors)
    shapes = []
    for name, value, datatype in tensors:
        if name in RAGGED:
            if length == 0 or (name in PADDED_WITH_OLDEST and value.shape[1] != length):
                return None  # the server refuses it; padded, the lengths would match and it would not
            shapes.append((name, datatype, "ragged"))
        elif name in KEYED_BY_VALUE:
            shapes.append((name, datatype, value.reshape(-1).tolist()[0]))
        else:
            shapes.append((name, datatype, value.shape[1]))
    return model, length_class(length), tuple(shapes)


def length_class(length: int) -> int:
    """Histories of one class are within a factor of two of each other's length."""
    return int(length).bit_length()


def stack(requests: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """One request whose row i is ``requests[i]`` (each a one-row request of one :func:`batch_key`): the
    ragged inputs padded at the front to the longest row, every input concatenated along the batch."""
    stacked = []
    for position, (name, _, datatype) in enumerate(requests[0]):
        rows = [request[position][1] for request in requests]
        if name in RAGGED:
            width = max(row.shape[1] for row in rows)
            rows = [_pad_front(row, width, name) for row in rows]
        stacked.append((name, np.concatenate(rows, axis=0), datatype))
    return stacked


def _pad_front(row: np.ndarray, width: int, name: str) -> np.ndarray:
    """A [1, n] row as [1, width]: the padding first (older than every event), then the row."""
    missing = width - row.shape[1]
    if not missing:
        return row
    fill = UNKNOWN_ID if name in PADDED_WITH_UNKNOWN else row[0, 0]
    padding = np.full((1, missing), fill, dtype=row.dtype)
    return np.concatenate([padding, row], axis=1)


def _row_length(tensors: Sequence[Tensor]) -> int:
    return next(value.shape[1] for name, value, _ in tensors if name == HISTORY)
