"""GPU ranking benchmark: the `rank_products` step (``ScoringTable.best`` on a KIND_GPU instance) at 100k
and 1M products, fp32 and fp16, beside in-process numpy on the same machine's CPUs, in one run.

This is the part of a `recommend` request that a GPU changes: the scan of the table and the exact top-k.
It runs where CuPy and a GPU are (the device machine has no tritonserver, so Triton's own overhead is
measured by ``benchmarks/serving.py`` on CPUs). Per catalogue size and table dtype it prints:

- the table's placement on the device (seconds, device memory);
- exactness: every batch row's top k against the host (the CPU path for fp32; for fp16 the same
  algorithm in numpy, which rounds the query to fp16 as the device does), and how many rows needed
  their whole row (a tie at the k-th);
- per batch size, timed with CUDA events: the scores step (allocation, query upload, product, prior) and
  the product alone (the cuBLAS scan), torch's ``mm`` and ``mm`` + ``topk`` on the same table as outside
  references, and the previous device top-k (CuPy's argpartition, a full sort of every row); by the wall
  clock: the whole ranking step (scores, exclusions, chunked top-k, download, host check) and the CPU
  path on this machine's cores (numpy/BLAS, what a KIND_CPU instance runs);
- where the ranking step's time goes, step by step, at batches 1 and 64;
- achieved memory bandwidth of the scan: the table read, and the table read plus the scores written,
  against the device's peak (memory clock x bus width, from nvidia-smi and CUDA) and a measured copy.

The run of 2026-12-06 on an H100 (docs/speed.md) printed the scores step as its scan; the product alone,
torch's ``mm`` and the stages were added after it and have not run on a GPU yet.

    python benchmarks/gpu_ranking.py [--products 100000 1000000] [--dtypes float32 float16]
                                     [--batches 1 16 64 256] [--k 20] [--json PATH]

``--array-module numpy`` runs the device algorithm with numpy (no GPU; a smoke test of this script).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fashionrec.contract import device
from fashionrec.contract.scoring import ScoringTable

DIM = 64
EXCLUDED_PER_ROW = 50  # a customer's seen products, excluded from every ranked row
CHECK_BATCH = 64
CPU_BATCHES = (1, 64)  # the CPU path is timed at these batch sizes only (it is slow at 1M)
STAGE_BATCHES = (1, 64)  # where the ranking step's time goes is printed at these batch sizes
FULL_SORT_MAX_BATCH = 64  # the previous device top-k sorts batch x catalogue: skipped beyond this


def make_table(num_products: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm random rows and a small popularity prior, like a published catalogue."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(num_products, DIM)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return table, (0.1 * rng.normal(size=num_products)).astype(np.float32)


def make_queries(num_products: int, batch: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(batch, DIM)).astype(np.float32)
    return vectors, [rng.integers(0, num_products, EXCLUDED_PER_ROW) for _ in range(batch)]


class Clock:
    """Median milliseconds of a callable: CUDA events around it on a GPU, the wall clock otherwise."""

    def __init__(self, xp: Any, repeats: int) -> None:
        self.xp, self.repeats = xp, repeats

    def device_ms(self, run: Callable[[], object]) -> float:
        for _ in range(3):
            run()
        if not hasattr(self.xp, "cuda"):
            return self.wall_ms(run)
        times = []
        for _ in range(self.repeats):
            start, stop = self.xp.cuda.Event(), self.xp.cuda.Event()
            start.record()
            run()
            stop.record()
            stop.synchronize()
            times.append(self.xp.cuda.get_elapsed_time(start, stop))
        return statistics.median(times)

    def wall_ms(self, run: Callable[[], object], repeats: int | None = None) -> float:
        run()
        times = []
        for _ in range(repeats or self.repeats):
            start = time.perf_counter()
            run()
            if hasattr(self.xp, "cuda"):
                self.xp.cuda.get_current_stream().synchronize()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)


def exactness(table: ScoringTable, host: ScoringTable, num_products: int, k: int) -> dict:
    """Share of rows whose top k equals the host's, largest logit gap, and rows ranked from their whole row."""
    vectors, excluded = make_queries(num_products, CHECK_BATCH, seed=1)
    whole_rows = []
    original = device.ops.top_k_positions

    def counted(values: np.ndarray, k: int) -> np.ndarray:
        whole_rows.append(1)
        return original(values, k)

    device.ops.top_k_positions = counted
    try:
        got = table.best(vectors, excluded, k)
    finally:
        device.ops.top_k_positions = original
    want = host.best(vectors, excluded, k)
    same = sum(np.array_equal(g[0], w[0]) for g, w in zip(got, want, strict=True))
    gap = max(float(np.max(np.abs(g[1] - w[1]))) for g, w in zip(got, want, strict=True))
    return {"rows": CHECK_BATCH, "identical": same, "max_logit_gap": gap, "whole_row_rankings": len(whole_rows)}


def ties_exact(table: np.ndarray, dtype: str, xp: Any, k: int) -> bool:
    """Zero queries and no prior: every product ties, so the top k must be the k lowest rows not excluded
    (each row found by ranking its whole row)."""
    tied = ScoringTable(table, dtype, kind="GPU", device_module=xp)
    excluded = [np.array([0, 2, 5]), np.zeros(0, np.int64)]
    got = tied.best(np.zeros((2, DIM), np.float32), excluded, k)
    want = [[row for row in range(k + 3) if row not in (0, 2, 5)][:k], list(range(k))]
    return [rows.tolist() for rows, _ in got] == want


def reference_host(table: np.ndarray, prior: np.ndarray, dtype: str) -> ScoringTable:
    """What the device must answer: the CPU path for fp32; for fp16 the device algorithm in numpy (the
    query rounded to fp16 as on the device, the product in fp32)."""
    if dtype == "float32":
        return ScoringTable(table, prior=prior)
    return ScoringTable(table, dtype, kind="GPU", prior=prior, device_module=np)


def full_sort_top_k(xp: Any, gpu: device.DeviceTable, vectors: np.ndarray, k: int) -> Callable[[], object]:
    """The previous device top-k: scores, then CuPy's argpartition, which sorts every row whole."""
    def run() -> object:
        scores = gpu.scores(vectors, device.chunk_columns(len(gpu.table), k))[:, : len(gpu.table)]
        return xp.argsort(-scores, axis=1)[:, :k]
    return run


def gemm_only(xp: Any, gpu: device.DeviceTable, vectors: np.ndarray, k: int) -> Callable[[], object]:
    """The product alone (no allocation, no upload): the scan whose memory bandwidth is reported."""
    scores = gpu.scores(vectors, device.chunk_columns(len(gpu.table), k))
    queries = xp.asarray(gpu.queries(vectors))
    return lambda: device._gemm(xp, queries, gpu.table, scores)


def stages_ms(xp: Any, gpu: device.DeviceTable, vectors: np.ndarray, excluded: list[np.ndarray], k: int,
              clock: Clock) -> dict:
    """Wall milliseconds of each step of ``DeviceTable.best`` (synchronised after each)."""
    chunk = device.chunk_columns(len(gpu.table), k)
    scores = gpu.scores(vectors, chunk)
    gpu._block(scores, excluded)
    parts = gpu.candidates(scores, k, chunk)
    host = [device._to_host(xp, part) for part in parts]
    return {"scores": clock.wall_ms(lambda: gpu.scores(vectors, chunk)),
            "exclusions": clock.wall_ms(lambda: gpu._block(scores, excluded)),
            "top_k": clock.wall_ms(lambda: gpu.candidates(scores, k, chunk)),
            "download": clock.wall_ms(lambda: [device._to_host(xp, part) for part in parts]),
            "host_check": clock.wall_ms(lambda: [gpu.exact(scores, b, host[0][b], host[1][b], host[2][b], k)
                                                for b in range(len(vectors))])}


def torch_references(gpu: device.DeviceTable, vectors: np.ndarray, k: int) -> dict[str, Callable[[], object]]:
    """Outside references on the same table (output in the table's dtype): torch's ``mm`` alone (for the
    scan) and ``mm`` + ``topk`` (for the ranking step), by their row names; none without torch."""
    try:
        import torch
    except ImportError:
        return {}
    table = torch.as_tensor(gpu.table, device="cuda")
    queries = torch.as_tensor(gpu.queries(vectors), device="cuda")
    return {"torch_mm_ms": lambda: queries @ table.T,
            "torch_ms": lambda: torch.topk(queries @ table.T, k, dim=1)}


def scan_bandwidth(gpu: device.DeviceTable, batch: int, scan_ms: float) -> tuple[float, float]:
    """GB/s of the scan: the table read alone, and the table read plus the fp32 scores written."""
    num_products = len(gpu.table)
    table_bytes = gpu.table.nbytes
    return table_bytes / scan_ms / 1e6, (table_bytes + batch * num_products * 4) / scan_ms / 1e6


def device_peak(xp: Any) -> dict:
    """The GPU's name, its peak memory bandwidth (2 x memory clock x bus width) and a measured copy."""
    if not hasattr(xp, "cuda"):
        return {"name": "numpy (no GPU)", "peak_gb_s": float("nan"), "copy_gb_s": float("nan")}
    name, clock_mhz = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,clocks.max.memory", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True).stdout.strip().split(", ")
    bus_bits = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["memoryBusWidth"]
    copy = copy_gb_s(xp)
    xp.get_default_memory_pool().free_all_blocks()
    return {"name": name, "memory_clock_mhz": float(clock_mhz), "bus_bits": int(bus_bits),
            "peak_gb_s": 2 * float(clock_mhz) * 1e6 * bus_bits / 8 / 1e9, "copy_gb_s": copy}


def copy_gb_s(xp: Any) -> float:
    """A 2 GiB device-to-device copy's bandwidth, bytes read plus bytes written."""
    source = xp.zeros(1 << 29, dtype=xp.float32)
    target = xp.empty_like(source)
    copy_ms = Clock(xp, 10).device_ms(lambda: target.__setitem__(slice(None), source))
    return 2 * source.nbytes / copy_ms / 1e6


def bench_size(xp: Any, num_products: int, dtype: str, args: argparse.Namespace, clock: Clock) -> list[dict]:
    """Every measurement of one catalogue size and table dtype: one row per batch size."""
    table, prior = make_table(num_products)
    start = time.perf_counter()
    gpu_table = ScoringTable(table, dtype, kind="GPU", prior=prior, device_module=xp)
    if hasattr(xp, "cuda"):
        xp.cuda.get_current_stream().synchronize()
    place_s = time.perf_counter() - start
    gpu = gpu_table.device_table
    check = exactness(gpu_table, reference_host(table, prior, dtype), num_products, args.k)
    check["ties_exact"] = ties_exact(table, dtype, xp, args.k)
    cpu_table = ScoringTable(table, dtype, prior=prior)
    rows = []
    for batch in args.batches:
        vectors, excluded = make_queries(num_products, batch, seed=2)
        chunk = device.chunk_columns(num_products, args.k)
        row = {"products": num_products, "dtype": dtype, "batch": batch, "place_s": place_s, **check,
               "scores_ms": clock.device_ms(lambda: gpu.scores(vectors, chunk)),
               "best_ms": clock.wall_ms(lambda: gpu_table.best(vectors, excluded, args.k))}
        row["scan_ms"] = clock.device_ms(gemm_only(xp, gpu, vectors, args.k)) if hasattr(xp, "cuda") else \
            row["scores_ms"]
        row["table_gb_s"], row["traffic_gb_s"] = scan_bandwidth(gpu, batch, row["scan_ms"])
        if batch in STAGE_BATCHES:
            row["stages_ms"] = stages_ms(xp, gpu, vectors, excluded, args.k, clock)
        if batch <= FULL_SORT_MAX_BATCH and hasattr(xp, "cuda"):
            row["full_sort_ms"] = clock.device_ms(full_sort_top_k(xp, gpu, vectors, args.k))
        references = torch_references(gpu, vectors, args.k) if hasattr(xp, "cuda") else {}
        try:
            for name, reference in references.items():
                row[name] = clock.device_ms(reference)
        except RuntimeError as error:  # an outside reference: its failure loses only its column
            print(f"torch reference failed: {error}", flush=True)
        if batch in CPU_BATCHES:
            row["cpu_ms"] = clock.wall_ms(lambda: cpu_table.best(vectors, excluded, args.k), repeats=3)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


HEADER = (f"{'products':>9} {'dtype':>7} {'batch':>5} | {'scores ms':>9} {'product ms':>10} {'table GB/s':>10} "
          f"{'+scores GB/s':>12} "
          f"{'torch mm':>8} | {'rank ms':>8} {'rank q/s':>9} | {'full sort':>9} {'torch':>8} | {'CPU ms':>8} "
          f"{'CPU q/s':>8} {'GPU/CPU':>7}")


def format_row(row: dict) -> str:
    def ms(name: str) -> str:
        return f"{row[name]:8.3f}" if name in row else f"{'-':>8}"

    ratio = f"{row['cpu_ms'] / row['best_ms']:6.1f}x" if "cpu_ms" in row else f"{'-':>7}"
    cpu_qps = f"{row['batch'] / row['cpu_ms'] * 1e3:8.0f}" if "cpu_ms" in row else f"{'-':>8}"
    return (f"{row['products']:>9} {row['dtype']:>7} {row['batch']:>5} | {row['scores_ms']:9.3f} "
            f"{row['scan_ms']:10.3f} {row['table_gb_s']:10.0f} {row['traffic_gb_s']:12.0f} {ms('torch_mm_ms')} | "
            f"{row['best_ms']:8.3f} {row['batch'] / row['best_ms'] * 1e3:9.0f} | "
            f"{ms('full_sort_ms'):>9} {ms('torch_ms')} | {ms('cpu_ms')} {cpu_qps} {ratio}")


def summary(rows: list[dict], peak: dict) -> str:
    """The line the issue asks for: the batched fp16 scan at the largest catalogue against the peak."""
    largest = max(row["products"] for row in rows)
    fp16 = [row for row in rows if row["products"] == largest and row["dtype"] == "float16"] or \
           [row for row in rows if row["products"] == largest]
    best = max(fp16, key=lambda row: row["traffic_gb_s"])
    return (f"scan {best['dtype']} {largest} products batch {best['batch']}: {best['traffic_gb_s']:.0f} GB/s "
            f"(table + scores) = {100 * best['traffic_gb_s'] / peak['peak_gb_s']:.0f}% of peak "
            f"{peak['peak_gb_s']:.0f} GB/s ({peak['name']}); measured copy {peak['copy_gb_s']:.0f} GB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--array-module", choices=["cupy", "numpy"], default="cupy")
    parser.add_argument("--json", help="also write every row and the device's peak here")
    args = parser.parse_args()
    xp = device.cupy_module() if args.array_module == "cupy" else np
    clock = Clock(xp, args.repeats)
    try:
        peak = device_peak(xp)
    except Exception as error:  # the figures below stand without it; the percentage of peak does not
        print(f"device peak unknown: {type(error).__name__}: {error}", flush=True)
        peak = {"name": "unknown", "peak_gb_s": float("nan"), "copy_gb_s": float("nan")}
    print(f"device {peak}", flush=True)
    print(HEADER, flush=True)
    rows = [row for products in args.products for dtype in args.dtypes
            for row in bench_size(xp, products, dtype, args, clock)]
    for products in args.products:
        for dtype in args.dtypes:
            first = next(row for row in rows if row["products"] == products and row["dtype"] == dtype)
            print(f"{products} {dtype}: placed in {first['place_s']:.2f} s; top {args.k} identical to the host "
                  f"in {first['identical']}/{first['rows']} rows (max logit gap {first['max_logit_gap']:.2e}); "
                  f"{first['whole_row_rankings']} rows ranked from their whole row; all-tied rows exact: "
                  f"{first['ties_exact']}")
    for row in rows:
        if "stages_ms" in row:
            print(f"{row['products']} {row['dtype']} batch {row['batch']}: rank step "
                  + ", ".join(f"{name} {value:.3f}" for name, value in row["stages_ms"].items()) + " ms", flush=True)
    print(summary(rows, peak), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"device": peak, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
