"""The served product table: dot products and exact top-k, on the CPU (numpy/BLAS) or a GPU (CuPy).

Part of :mod:`fashionrec.contract` (copied into every ranking version folder); like ``ops`` it imports
only numpy and the standard library at module level (CuPy only when an instance is placed on a GPU, so
the CPU path never needs it). Both devices give the same answer: the catalogue's k best rows of each
customer vector, excluded rows never among them, ties to the lower row (``ops.rank_positions``).

On a GPU only the ranking's result crosses the bus: scores, exclusions and a partial top-k stay on the
device, and [batch x (k + margin)] rows and logits come back through a pinned host buffer. The margin
proves exactness: when the last fetched logit still ties the k-th, a tie may hide beyond the fetched
rows, and that row is ranked again from its full scores.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np

from fashionrec.contract import ops

TABLE_DTYPES = ("float32", "float16")
FP16_BLOCK_ROWS = 16_384  # CPU fp16 tables are widened to float32 this many rows at a time (BLAS has no fp16)
# Up to this many customer vectors the product is taken as table @ vectors.T (then transposed): for a short,
# wide product BLAS's kernel the other way round is 2-3x slower at 2-16 rows (OpenBLAS, one thread, 100k x 64,
# ranking included); from about 64 rows on, the transposed rows' strided reads cost more than that saves.
TALL_PRODUCT_MAX_ROWS = 32
DEVICE_TOP_K_MARGIN = 16  # extra rows fetched per ranked row from a device, to check ties at the k-th


class GpuUnavailableError(RuntimeError):
    """A GPU instance without a usable GPU or CuPy: the version must not load (and serve at CPU speed)."""


class ScoringTable:
    """Product embeddings [N, D] held as ``dtype`` on the instance's device.

    ``kind`` is Triton's ``model_instance_kind`` ("CPU" or "GPU"). A GPU instance whose GPU or CuPy is
    unusable raises :class:`GpuUnavailableError`, so Triton refuses to load the version (readiness
    stays false and the log says why) instead of serving from the CPU in silence.
    fp16 halves the table's memory (and its memory traffic on a GPU); scores then differ from fp32
    by the fp16 rounding of the table, about 1e-3 relative.
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
            self._device = DeviceTable(self.host, self.prior, device_module or _cupy(), device_id)

    @property
    def on_gpu(self) -> bool:
        return self._device is not None

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


class DeviceTable:
    """The table and prior on one GPU, ranked there. ``xp`` is CuPy (or any module with its array API:
    the tests run this class's algorithm with numpy)."""

    def __init__(self, host: np.ndarray, prior: np.ndarray, xp: Any, device_id: int) -> None:
        self.xp, self.device_id = xp, device_id
        try:
            with self._on_device():
                self.table = xp.asarray(host)
                self.prior = xp.asarray(prior, dtype=xp.float32)
        except Exception as error:  # any CUDA failure: no usable GPU
            raise GpuUnavailableError(f"KIND_GPU instance on GPU {device_id}: cannot place the table "
                                      f"({type(error).__name__}: {error})") from error

    def best(self, vectors: np.ndarray, excluded: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """What :meth:`ScoringTable.best` answers, computed on the device."""
        xp, n = self.xp, len(self.table)
        fetched = min(n, k + DEVICE_TOP_K_MARGIN)
        with self._on_device():
            dots = xp.asarray(vectors, dtype=self.table.dtype) @ self.table.T
            dots = dots.astype(xp.float32) + self.prior
            self._block(dots, excluded)
            top = xp.argpartition(dots, n - fetched, axis=1)[:, n - fetched:]
            rows, logits = _to_host(xp, top), _to_host(xp, xp.take_along_axis(dots, top, axis=1))
            return [self._exact(dots, b, rows[b], logits[b], k, fetched < n) for b in range(len(rows))]

    def _block(self, dots: Any, excluded: list[np.ndarray]) -> None:
        """Excluded rows to -inf, every customer's at once (one scatter on the device)."""
        valid = [np.asarray(e, np.int64).reshape(-1) for e in excluded]
        valid = [e[e >= 0] for e in valid]
        if any(e.size for e in valid):
            batch_rows = np.repeat(np.arange(len(valid)), [e.size for e in valid])
            dots[self.xp.asarray(batch_rows), self.xp.asarray(np.concatenate(valid))] = -np.inf

    def _exact(self, dots: Any, b: int, rows: np.ndarray, logits: np.ndarray, k: int,
               partial: bool) -> tuple[np.ndarray, np.ndarray]:
        """Row ``b``'s top k from its fetched rows, or from its whole row when a tie may hide beyond them:
        the fetch was partial, every fetched row is eligible, and the last of them ties the k-th."""
        order = np.lexsort((rows, -logits))
        rows, logits = rows[order], logits[order]
        eligible = np.isfinite(logits)
        if partial and eligible.all() and len(logits) > k and logits[-1] == logits[k - 1]:
            full = _to_host(self.xp, dots[b])
            positions = ops.top_k_positions(full, min(k, int(np.isfinite(full).sum())))
            return positions, full[positions]
        return rows[eligible][:k].astype(np.int64), logits[eligible][:k]

    def _on_device(self) -> Any:
        cuda = getattr(self.xp, "cuda", None)
        return cuda.Device(self.device_id) if cuda is not None else nullcontext()  # numpy, in tests: no devices


def _to_host(xp: Any, array: Any) -> np.ndarray:
    """A device array as numpy: through a pinned (page-locked) buffer on CuPy, as is otherwise."""
    if not hasattr(array, "get"):
        return np.asarray(array)
    pinned = xp.cuda.alloc_pinned_memory(array.nbytes)
    out = np.frombuffer(pinned, array.dtype, array.size).reshape(array.shape)
    array.get(out=out)
    return out


def _cupy() -> Any:
    """CuPy, or GpuUnavailableError saying why a GPU instance cannot use it."""
    try:
        import cupy
    except ImportError as error:
        raise GpuUnavailableError("KIND_GPU instance, but CuPy is not installed in the serving environment "
                                  "(install cupy-cuda12x, or publish with serving.instance_kind=KIND_CPU)") from error
    return cupy
