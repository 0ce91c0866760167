"""The served table's exact top-k: the CPU path by hand, the device path (run with numpy as its array
module) against the CPU path, ties at the k-th included, and a GPU instance without CuPy refused."""

from __future__ import annotations

import numpy as np
import pytest

from fashionrec.contract import scoring
from fashionrec.contract.device import DEVICE_TOP_K_MARGIN, GpuUnavailableError
from fashionrec.contract.scoring import ScoringTable


def test_best_ranks_by_logit_with_the_prior_skips_excluded_rows_and_breaks_ties_to_the_lower_row() -> None:
    table = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], np.float32)
    prior = np.array([0.0, 0.0, 0.0, 0.6], np.float32)
    # logits for [1, 0]: 1, 0, 1, 1.1 -> row 3, then the tie 0 / 2 (lower row first), then 1
    [(rows, logits)] = ScoringTable(table, prior=prior).best(np.array([[1.0, 0.0]]), [np.zeros(0, np.int64)], 3)
    assert rows.tolist() == [3, 0, 2]
    np.testing.assert_allclose(logits, [1.1, 1.0, 1.0], rtol=1e-6)
    [(rows, _)] = ScoringTable(table, prior=prior).best(np.array([[1.0, 0.0]]), [np.array([3, -1, 3])], 10)
    assert rows.tolist() == [0, 2, 1]  # the excluded row never comes back; fewer than k remain


def _device(table: np.ndarray, prior: np.ndarray | None = None) -> ScoringTable:
    return ScoringTable(table, kind="GPU", prior=prior, device_module=np)


def test_the_device_path_answers_exactly_what_the_cpu_path_answers() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(3_000, 8)).astype(np.float32)
    prior = rng.normal(size=3_000).astype(np.float32)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    excluded = [rng.integers(-1, 3_000, size=n) for n in (0, 1, 50, 2_990)] + [np.arange(3_000)]  # the last: all
    for k in (1, 10, 50, 200):  # 3,000 products: chunks of 32 (k up to 50) or every column a candidate (200)
        cpu = ScoringTable(table, prior=prior).best(vectors, excluded, k)
        device = _device(table, prior).best(vectors, excluded, k)
        assert len(device[-1][0]) == 0 and len(device[3][0]) <= k
        for (cpu_rows, cpu_logits), (rows, logits) in zip(cpu, device, strict=True):
            np.testing.assert_array_equal(rows, cpu_rows)
            np.testing.assert_allclose(logits, cpu_logits, rtol=1e-6)


def test_an_fp16_table_on_the_device_ranks_within_fp16_rounding_of_the_cpu() -> None:
    """The device multiplies fp16 queries with the fp16 table (the point of an fp16 table: half the memory
    traffic); the CPU widens the table to fp32 first and keeps the query. Logits then differ by the
    query's fp16 rounding, and near-ties may swap."""
    rng = np.random.default_rng(1)
    table = rng.normal(size=(3_000, 8)).astype(np.float32)
    vectors = rng.normal(size=(4, 8)).astype(np.float32)
    none = [np.zeros(0, np.int64)] * 4
    cpu = ScoringTable(table, "float16").best(vectors, none, 10)
    device = ScoringTable(table, "float16", kind="GPU", device_module=np).best(vectors, none, 10)
    for (cpu_rows, cpu_logits), (rows, logits) in zip(cpu, device, strict=True):
        assert len(set(rows) & set(cpu_rows)) >= 8
        np.testing.assert_allclose(np.sort(logits), np.sort(cpu_logits), atol=2e-2 * np.abs(cpu_logits).max())


def test_a_tie_beyond_the_fetched_rows_is_found_by_ranking_the_whole_row() -> None:
    # Every product scores the same: the k best are the k lowest rows, but a partial top-k on the device
    # may fetch any k + margin of them; the tie at the last fetched row sends it to the full row.
    k, n = 5, 10 * (5 + DEVICE_TOP_K_MARGIN)
    table = np.ones((n, 2), np.float32)
    [(rows, logits)] = _device(table).best(np.array([[1.0, 1.0]], np.float32), [np.array([0])], k)
    assert rows.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(logits, 2.0)


def test_a_gpu_instance_without_cupy_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_cupy(name: str, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(GpuUnavailableError, match="CuPy is not installed.*KIND_CPU"):
        ScoringTable(np.ones((3, 2), np.float32), kind="GPU")
    assert not ScoringTable(np.ones((3, 2), np.float32)).on_gpu  # the CPU path never imports it


def test_a_device_that_cannot_take_the_table_is_refused() -> None:
    class BrokenDevice:
        float32 = np.float32

        @staticmethod
        def asarray(*_args, **_kwargs):
            raise MemoryError("out of device memory")

    with pytest.raises(GpuUnavailableError, match="GPU 0: cannot place the table.*out of device memory"):
        scoring.ScoringTable(np.ones((3, 2), np.float32), kind="GPU", device_module=BrokenDevice)
