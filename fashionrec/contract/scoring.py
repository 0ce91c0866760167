"""The served product table: dot products and exact top-k, on the CPU (numpy/BLAS) or a GPU (CuPy).

Part of :mod:`fashionrec.contract` (copied into every ranking version folder); like ``ops`` it imports
only numpy and the standard library at module level (CuPy only when an instance is placed on a GPU, so
the CPU path never needs it). Both devices give the same answer: the catalogue's k best rows of each
customer vector, excluded rows never among them, ties to the lower row (``ops.rank_positions``).

On a GPU only the ranking's result crosses the bus: scores, exclusions and an exact top-k stay on the
device (:mod:`~fashionrec.contract.device`), and [batch x (k + margin)] rows and logits come back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fashionrec.contract import ops
from fashionrec.contract.device import DeviceTable, cupy_module

TABLE_DTYPES = ("float32", "float16")
FP16_BLOCK_ROWS = 16_384  # CPU fp16 tables are widened to float32 this many rows at a time (BLAS has no fp16)
# Up to this many customer vectors the product is taken as table @ vectors.T (then transposed): for a short,
# wide product BLAS's kernel the other way round is 2-3x slower at 2-16 rows (OpenBLAS, one thread, 100k x 64,
# ranking included); from about 64 rows on, the transposed rows' strided reads cost more than that saves.
TALL_PRODUCT_MAX_ROWS = 32


class ScoringTable:
    """Product embeddings [N, D] held as ``dtype`` on the instance's device.

    ``kind`` is Triton's ``model_instance_kind`` ("CPU" or "GPU"). A GPU instance whose GPU or CuPy is
    unusable raises :class:`~fashionrec.contract.device.GpuUnavailableError`, so Triton refuses to load the
    version (readiness stays false and the log says why) instead of serving from the CPU in silence.
    fp16 halves the table's memory (and its memory traffic on a GPU); scores then differ from fp32
    by the fp16 rounding of the table (and, on a GPU, of the customer vector), about 1e-3 relative.
    """

    def __init__(self, embeddings: np.ndarray, dtype: str = "float32", kind: str = "CPU", device_id: int = 0,
                 prior: np.ndarray | None = None, device_module: Any = None) -> None:
        if dtype not in TABLE_DTYPES:
            raise ValueError(f"table_dtype must be one of {TABLE_DTYPES}, got {dtype!r}")
        self.dtype = dtype
        self.host = np.ascontiguousarray(embeddings, dtype=dtype)
        self.prior = np.zeros(len(self.host), np.float32) if prior is None else np.asarray(prior, np.float32)
        self._device = None
        if kind == "GPU":
            self._device = DeviceTable(self.host, self.prior, device_module or cupy_module(), device_id)

    @property
    def on_gpu(self) -> bool:
        return self._device is not None

    @property
    def device_table(self) -> DeviceTable | None:
        """The table on its GPU (None on a CPU instance)."""
        return self._device

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Logits [B, N] (float32, on the host): dot products of customer vectors [B, D] with every
        product, plus each product's popularity prior. Always on the CPU (evaluation, tests)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.dtype == "float32":
            dots = _product(vectors, self.host)
        else:
            dots = np.concatenate([_product(vectors, self.host[start : start + FP16_BLOCK_ROWS].astype(np.float32))
                                   for start in range(0, len(self.host), FP16_BLOCK_ROWS)], axis=1)
        dots += self.prior
        return dots

    def best(self, vectors: np.ndarray, excluded: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per customer vector [B, D]: (its k best catalogue rows, their logits), best first, never a row of
        its ``excluded`` (negative entries ignored); fewer when fewer remain. Exact on either device."""
        if self._device is not None:
            return self._device.best(vectors, excluded, k)
        dots = self.scores(vectors)
        ranked = []
        for row_dots, row_excluded in zip(dots, excluded, strict=True):
            positions = ops.rank_positions(row_dots, None, row_excluded, k)
            ranked.append((positions, row_dots[positions]))
        return ranked

    def scores_of(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Logits [len(rows)] of one customer vector with the given products only (on the host)."""
        return self.host[rows].astype(np.float32) @ np.asarray(vector, dtype=np.float32) + self.prior[rows]


def _product(vectors: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``vectors @ table.T`` [B, N], in the order BLAS computes faster for B (a transposed view when short)."""
    if len(vectors) <= TALL_PRODUCT_MAX_ROWS:
        return (table @ vectors.T).T
    return vectors @ table.T
