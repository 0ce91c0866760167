"""The served product table and its dot products, on the CPU (numpy/BLAS) or a GPU (CuPy) when there is one.

Part of :mod:`fashionrec.contract` (copied into every ranking version folder); like ``ops`` it imports only numpy and the standard library at module level (CuPy only when an instance is
placed on a GPU, so the CPU path never needs it). Only the dot products run on the device: ranking
(exclusions, candidates, exact deterministic top-k) stays in ``ops`` so CPU and GPU answer alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TABLE_DTYPES = ("float32", "float16")
FP16_BLOCK_ROWS = 16_384  # CPU fp16 tables are widened to float32 this many rows at a time (BLAS has no fp16)


class ScoringTable:
    """Product embeddings [N, D] held as ``dtype`` on the instance's device.

    ``kind`` is Triton's ``model_instance_kind`` ("CPU" or "GPU"). On a GPU without CuPy the table falls
    back to the CPU, so a misconfigured instance still answers (slower) rather than failing to load.
    fp16 halves the table's memory (and its memory traffic on a GPU); scores then differ from fp32
    by the fp16 rounding of the table, about 1e-3 relative.
    """

    def __init__(self, embeddings: np.ndarray, dtype: str = "float32", kind: str = "CPU", device_id: int = 0,
                 prior: np.ndarray | None = None) -> None:
        if dtype not in TABLE_DTYPES:
            raise ValueError(f"table_dtype must be one of {TABLE_DTYPES}, got {dtype!r}")
        self.dtype = dtype
        self.host = np.ascontiguousarray(embeddings, dtype=dtype)
        self.prior = np.zeros(len(self.host), np.float32) if prior is None else np.asarray(prior, np.float32)
        self.device_id = device_id
        self._cupy, self._device_table = _on_gpu(self.host, device_id) if kind == "GPU" else (None, None)

    @property
    def on_gpu(self) -> bool:
        return self._device_table is not None

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Logits [B, N] (float32, on the host): dot products of customer vectors [B, D] with every
        product, plus each product's popularity prior."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.on_gpu:
            cupy = self._cupy
            with cupy.cuda.Device(self.device_id):
                dots = cupy.asarray(vectors, dtype=self.dtype) @ self._device_table.T
                dots = cupy.asnumpy(dots.astype(cupy.float32))
        elif self.dtype == "float32":
            dots = vectors @ self.host.T
        else:
            dots = np.concatenate([vectors @ self.host[start : start + FP16_BLOCK_ROWS].astype(np.float32).T
                                   for start in range(0, len(self.host), FP16_BLOCK_ROWS)], axis=1)
        dots += self.prior
        return dots

    def scores_of(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Logits [len(rows)] of one customer vector with the given products only (on the host)."""
        return self.host[rows].astype(np.float32) @ np.asarray(vector, dtype=np.float32) + self.prior[rows]


def _on_gpu(table: np.ndarray, device_id: int) -> tuple[Any, Any]:
    """(cupy, the table on GPU ``device_id``), or (None, None) without CuPy or a usable GPU."""
    try:
        import cupy
    except ImportError:
        return None, None
    try:
        with cupy.cuda.Device(device_id):
            return cupy, cupy.asarray(table)
    except Exception:  # noqa: BLE001 - any CUDA failure means: serve from the CPU
        return None, None
