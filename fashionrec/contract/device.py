"""The served table on a GPU: scores, exclusions and an exact top-k on the device (CuPy and cuBLAS).

Part of :mod:`fashionrec.contract`; imported by :mod:`~fashionrec.contract.scoring` for ``KIND_GPU``
instances only. CuPy is imported when a GPU instance asks for it, never at module level.

Why not CuPy's ``argpartition``: it sorts every row whole (a radix sort of batch x catalogue), which at
1M products costs far more than the scan. The top k is found instead as :func:`ops.top_k_positions` does
on the CPU, in fixed shapes:

1. the scores [batch x catalogue] (fp32, from one cuBLAS product; an fp16 table is multiplied with fp32
   accumulation and output) are cut into chunks of ``chunk`` columns, and each chunk's maximum is taken;
2. the k chunks with the largest maxima are the candidates: every row outside them scores no more than
   the (k+1)-th largest maximum, the row's *bound*;
3. the candidates (k x chunk scores) are sorted on the device; their best k + margin come back, through
   a pinned buffer, with the bound.

The host proves each row exact or ranks it again from its whole row: a k-th logit that does not beat the
bound strictly (an equal score may sit in another chunk), or a last fetched logit equal to the k-th (an
equal score may sit beyond the fetched ones), sends the row to :func:`ops.top_k_positions`. So the answer
is the CPU's: the k best rows, excluded rows never among them, ties to the lower row.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np

from fashionrec.contract import ops

DEVICE_TOP_K_MARGIN = 16  # extra candidates fetched per ranked row, to see a tie at the k-th
MIN_CHUNK_COLUMNS = 32  # a chunk narrower than a warp reduces no faster


class GpuUnavailableError(RuntimeError):
    """A GPU instance without a usable GPU or CuPy: the version must not load (and serve at CPU speed)."""


def chunk_columns(num_products: int, k: int) -> int:
    """The chunk width that makes the two sorts smallest: about sqrt(catalogue / k) columns (then about as
    many chunk maxima as candidate scores), a power of two, at least :data:`MIN_CHUNK_COLUMNS`."""
    target = max(1.0, (num_products / max(k, 1)) ** 0.5)
    return max(MIN_CHUNK_COLUMNS, 1 << round(np.log2(target)))


class DeviceTable:
    """The table and prior on one GPU, ranked there. ``xp`` is CuPy, or numpy in the tests: the algorithm
    is the same, only the product runs in numpy instead of cuBLAS."""

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
        with self._on_device():
            chunk = chunk_columns(len(self.table), k)
            scores = self.scores(vectors, chunk)
            self._block(scores, excluded)
            rows, logits, bounds = (_to_host(self.xp, part) for part in self.candidates(scores, k, chunk))
            return [self.exact(scores, b, rows[b], logits[b], bounds[b], k) for b in range(len(rows))]

    def scores(self, vectors: np.ndarray, chunk: int) -> Any:
        """Logits [B, P] (fp32, on the device): dot products plus prior in the first N columns, -inf in
        the padding up to P, the next whole number of chunks."""
        xp, n = self.xp, len(self.table)
        width = -(-n // chunk) * chunk
        scores = xp.empty((len(vectors), width), dtype=xp.float32)
        scores[:, n:] = -np.inf
        queries = self.queries(vectors)
        if hasattr(xp, "cuda"):
            _gemm(xp, xp.asarray(queries), self.table, scores)
        else:
            scores[:, :n] = queries.astype(np.float32) @ self.table.astype(np.float32).T
        scores[:, :n] += self.prior
        return scores

    def queries(self, vectors: np.ndarray) -> np.ndarray:
        """The customer vectors as the product takes them: in the table's dtype (an fp16 table takes fp16
        queries; cuBLAS multiplies two arrays of one type)."""
        return np.asarray(vectors, dtype=np.float32).astype(self.table.dtype)

    def candidates(self, scores: Any, k: int, chunk: int) -> tuple[Any, Any, Any]:
        """Per row of :meth:`scores` (made with the same ``chunk``), on the device: its best k + margin
        candidate columns, their logits (best first, ties in any order) and its bound: no column outside the
        candidates scores above it (-inf when every column was a candidate)."""
        xp, (batch, width), n = self.xp, scores.shape, len(self.table)
        fetched = min(n, k + DEVICE_TOP_K_MARGIN)
        if width // chunk <= k + 1:  # a small catalogue: every column is a candidate
            columns = xp.broadcast_to(xp.arange(width), (batch, width))
            values, bounds = scores, xp.full(batch, -np.inf, dtype=xp.float32)
        else:
            maxima = scores.reshape(batch, width // chunk, chunk).max(axis=2)
            ranked = xp.argsort(-maxima, axis=1)[:, : k + 1]
            bounds = xp.take_along_axis(maxima, ranked[:, k:], axis=1)[:, 0]
            columns = (ranked[:, :k, None] * chunk + xp.arange(chunk)).reshape(batch, k * chunk)
            values = xp.take_along_axis(scores, columns, axis=1)
        order = xp.argsort(-values, axis=1)[:, :fetched]
        return xp.take_along_axis(columns, order, axis=1), xp.take_along_axis(values, order, axis=1), bounds

    def _block(self, scores: Any, excluded: list[np.ndarray]) -> None:
        """Excluded rows to -inf, every customer's at once (one scatter on the device)."""
        valid = [np.asarray(e, np.int64).reshape(-1) for e in excluded]
        valid = [e[e >= 0] for e in valid]
        if any(e.size for e in valid):
            batch_rows = np.repeat(np.arange(len(valid)), [e.size for e in valid])
            scores[self.xp.asarray(batch_rows), self.xp.asarray(np.concatenate(valid))] = -np.inf

    def exact(self, scores: Any, b: int, rows: np.ndarray, logits: np.ndarray, bound: float,
              k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``b``'s top k from its fetched candidates, or from its whole row when an equal score may
        hide outside them (see the module's docstring)."""
        order = np.lexsort((rows, -logits))
        rows, logits = rows[order], logits[order]
        eligible = np.isfinite(logits)
        outside = bound > -np.inf and not (eligible.sum() >= k and logits[k - 1] > bound)
        beyond = eligible.all() and len(logits) > k and logits[-1] == logits[k - 1]
        if outside or beyond:
            full = _to_host(self.xp, scores[b, : len(self.table)])
            positions = ops.top_k_positions(full, min(k, int(np.isfinite(full).sum())))
            return positions, full[positions]
        return rows[eligible][:k].astype(np.int64), logits[eligible][:k]

    def _on_device(self) -> Any:
        cuda = getattr(self.xp, "cuda", None)
        return cuda.Device(self.device_id) if cuda is not None else nullcontext()  # numpy, in tests: no devices


def _gemm(cupy: Any, queries: Any, table: Any, scores: Any) -> None:
    """``scores[:, :N] = queries @ table.T`` by cuBLAS, fp32 accumulation and output for either table dtype
    (CuPy's own fp16 product rounds its output to fp16, which would tie nearby products).

    Row-major arrays are cuBLAS's column-major transposes, so this is scores^T [N, B] = table [N, D] @
    queries^T [D, B]: op T on the table (leading dimension D), op N on the queries, and the scores'
    leading dimension is their padded width."""
    cublas, runtime = cupy.cuda.cublas, cupy.cuda.runtime
    (n, dim), batch, width = table.shape, len(queries), scores.shape[1]
    data_type = {"float32": runtime.CUDA_R_32F, "float16": runtime.CUDA_R_16F}[table.dtype.name]
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setStream(handle, cupy.cuda.get_current_stream().ptr)
    mode = cublas.getPointerMode(handle)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    try:
        cublas.gemmEx(handle, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N, n, batch, dim,
                      one.ctypes.data, table.data.ptr, data_type, dim, queries.data.ptr, data_type, dim,
                      zero.ctypes.data, scores.data.ptr, runtime.CUDA_R_32F, width,
                      cublas.CUBLAS_COMPUTE_32F, cublas.CUBLAS_GEMM_DEFAULT)  # fp32 accumulation, never TF32
    finally:
        cublas.setPointerMode(handle, mode)


def _to_host(xp: Any, array: Any) -> np.ndarray:
    """A device array as numpy: through a pinned (page-locked) buffer on CuPy, as is otherwise."""
    if not hasattr(array, "get"):
        return np.asarray(array)
    array = xp.ascontiguousarray(array)
    pinned = xp.cuda.alloc_pinned_memory(array.nbytes)
    out = np.frombuffer(pinned, array.dtype, array.size).reshape(array.shape)
    array.get(out=out)
    return out


def cupy_module() -> Any:
    """CuPy, or GpuUnavailableError saying why a GPU instance cannot use it."""
    try:
        import cupy
    except ImportError as error:
        raise GpuUnavailableError("KIND_GPU instance, but CuPy is not installed in the serving environment "
                                  "(install cupy-cuda12x, or publish with serving.instance_kind=KIND_CPU)") from error
    return cupy
