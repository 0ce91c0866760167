"""Shop service overhead: the service's one-carousel endpoint beside the direct Triton call it makes.

A catalogue of --products products (random unit embeddings, a popularity prior) is published and served
by a real ``tritonserver``; ``fashionrec shop serve`` (uvicorn, one worker) runs in front of it with
--customers customers of --history past events each, seeded into its state store. Closed-loop clients
at --concurrency (asyncio) then measure, side by side in one run:

* ``triton direct``: ``recommend`` over gRPC with the customer's whole history and EXCLUDE_SEEN, as the
  service sends it (the service's own asynchronous client), one call per request: the overhead's baseline;
* ``shop /v1/recommendations``: the same answer through the service (read the history from the store,
  ask Triton, build the JSON, log the impression);
* ``shop /v1/homepage``: a whole homepage (for you, new in, trending, sale, favourite categories), for scale;
* ``shop POST /v1/events``: one click posted, as a storefront sends them (checked with ingest's rules, appended
  to the event log and fsynced before the answer, remembered in the store);
* ``triton direct, batched``: the direct calls again, with requests in flight together sent as one batch,
  as the service sends them (``online.triton_batch_rows``; see :mod:`fashionrec.online.triton`).

The overhead is the shop's latency minus the direct call's, at each percentile. Its two paths take turns
(six of each, --seconds in all per path), so that a machine whose speed drifts during the run drifts for
both. On a shared 2-core box the clients, the service and Triton compete for the same cores: read the
figures as relative.

    .venv/bin/python benchmarks/shop.py [--products 20000] [--history 200] [--concurrency 8] [--seconds 5]
                                        [--store sqlite|redis] [--set online.carousel_size=20 ...]
                                        [--baseline-checkout DIR] [--baseline-set KEY=VALUE ...] [--blocks 20]

``--baseline-checkout`` also starts the service from another source tree (``git worktree add DIR <commit>``)
over the same Triton and data, and sends blocks of requests to the two in turn: on a shared machine whose
speed drifts from run to run, only such a paired comparison resolves a change of a few tenths of a millisecond
of the service's CPU. ``--baseline-set`` gives that second service settings of its own (from this checkout
when no other is named): a setting compared with its default the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fashionrec.config import EVENT_TYPES, EventWeights, PipelineConfig, ServingConfig
from fashionrec.evaluation.bootstrap import paired_difference
from fashionrec.online.triton import Touchpoints
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving.requests import History
from fashionrec.serving.server import TritonServer

DIM = 64
K = 12
CATEGORIES = ("dress", "jeans", "t-shirt", "shirt", "jumper", "jacket", "coat", "skirt", "trousers", "bag")
START_S = 120.0  # the service seeds its store before it answers
WINDOW = 50


def make_shop(folder: Path, products: int, customers: int, history: int, seed: int = 0) -> dict[str, str]:
    """Catalogue, past events and a published repository; returns their paths."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:07d}" for i in range(products)]
    categories = rng.choice(CATEGORIES, products)
    catalogue = pd.DataFrame({"product_id": ids, "title": [f"{c} {i}" for i, c in enumerate(categories)],
                              "category": categories, "price": rng.uniform(5, 150, products).round(2)})
    embeddings = rng.normal(size=(products, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    prior = rng.exponential(0.3, products).astype(np.float32)
    pq.write_table(pa.table({"product_id": ids, "embedding": pa.array(list(embeddings), pa.list_(pa.float32())),
                             "is_new": np.zeros(products, bool), "popularity_prior": prior}),
                   folder / "embeddings.parquet")
    weights = EventWeights().as_dict()
    (folder / "aggregation.json").write_text(json.dumps({"pooling": "recency", "half_life_days": 7.0,
                                                         "half_life_events": 5.0, "event_weights": weights,
                                                         "window": WINDOW}))
    (folder / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    repository = publish_model_repository(str(folder / "embeddings.parquet"), str(folder / "blessing.json"),
                                          str(folder / "model_repository"), ServingConfig(),
                                          candidate_sets={"sale": ids[::9]}).path
    types = rng.choice(EVENT_TYPES, customers * history)
    events = pd.DataFrame({
        "customer_id": np.repeat([f"C{c:05d}" for c in range(customers)], history),
        "product_id": rng.choice(ids, customers * history), "event_type": types,
        "timestamp": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(
            np.tile(np.arange(history) * 600, customers), unit="s"),
        "weight": pd.Series(types).map(weights).astype("float32")})
    catalogue.to_parquet(folder / "catalogue.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    return {"catalogue": str(folder / "catalogue.parquet"), "events": str(folder / "events.parquet"),
            "model_repository": repository}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_shop(paths: dict[str, str], folder: Path, triton_url: str, settings: list[str],
               checkout: Path | None = None) -> tuple[subprocess.Popen, str]:
    """The service on a free port, from this environment's fashionrec or, given ``checkout``, from that source tree
    (first on PYTHONPATH: the same interpreter and dependencies, another version of the code)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    arguments = [sys.executable, "-m", "fashionrec.app.cli", "shop", "serve", "--catalogue", paths["catalogue"],
                 "--model-repository", paths["model_repository"], "--history", paths["events"],
                 "--set", f"online.port={port}", "--set", f"online.triton_url={triton_url}",
                 "--set", f"online.sqlite_path={folder / 'state.sqlite3'}",
                 "--set", f"online.event_log_dir={folder / 'log'}", "--set", f"online.journal_dir={folder / 'journal'}"]
    for setting in settings:
        arguments += ["--set", setting]
    environment = dict(os.environ, PYTHONPATH=str(checkout)) if checkout else None
    process = subprocess.Popen(arguments, stderr=open(folder / "shop.log", "wb"), stdout=subprocess.DEVNULL,
                               env=environment, cwd=checkout)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the shop service exited: {(folder / 'shop.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the shop service did not start in time")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in a process group (Triton and its python stubs)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def closed_loop(call: Callable[[int], Awaitable[object]], concurrency: int, seconds: float) -> np.ndarray:
    """Latencies (seconds) of ``call(worker)`` repeated by ``concurrency`` workers for ``seconds``."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return np.array(latencies)


def row(name: str, latencies: np.ndarray, seconds: float, cpu: dict[str, float]) -> dict[str, object]:
    """One table row; ``cpu``: each process's CPU seconds during the phase, reported per request."""
    p50, p95, p99 = np.percentile(latencies * 1000, [50, 95, 99])
    return {"path": name, "requests": len(latencies), "req/s": len(latencies) / seconds,
            "p50 ms": p50, "p95 ms": p95, "p99 ms": p99,
            **{f"{who} CPU ms/req": 1000 * used / len(latencies) for who, used in cpu.items()}}


async def measured(call: Callable[[int], Awaitable[object]], concurrency: int, seconds: float,
                   processes: dict[str, Callable[[], float]]) -> tuple[np.ndarray, dict[str, float]]:
    """``closed_loop`` and the CPU each process used meanwhile."""
    before = {who: read() for who, read in processes.items()}
    latencies = await closed_loop(call, concurrency, seconds)
    return latencies, {who: read() - before[who] for who, read in processes.items()}


Turn = tuple[np.ndarray, dict[str, float], tuple[float, float]]  # latencies, CPU by process, (rows, calls) to Triton
OVERHEAD_ROUNDS = 6  # turns each of the overhead's two paths takes, --seconds in all


async def measure(paths: dict[str, str], shop_url: str, args: argparse.Namespace, config: PipelineConfig,
                  processes: dict[str, Callable[[], float]]) -> list[dict[str, object]]:
    events = pd.read_parquet(paths["events"])
    customers = sorted(events["customer_id"].unique())
    products = sorted(events["product_id"].unique())
    histories = {}
    for customer, rows in events.groupby("customer_id"):
        seconds = (rows["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        histories[customer] = History(rows["product_id"].tolist(), rows["event_type"].tolist(), seconds.tolist(),
                                      request_time=int(time.time()))
    # the direct baseline: one call per request, as a storefront asking Triton itself sends them; the second
    # client batches requests in flight together as the service does (online.triton_batch_rows)
    touchpoints = Touchpoints(config.with_overrides({"online.triton_batch_rows": 1}).online, config.serving)
    batching = Touchpoints(config.online, config.serving)
    rows_out = []
    # aiohttp, not httpx: the load generator shares the cores with the service, and httpx's client cost about
    # three times the CPU per request here (0.95-1.1 ms against 0.28-0.31)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(base_url=shop_url, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10.0)) as http:
        def customer(i: int) -> str:
            return customers[(i * 7919 + int(time.perf_counter() * 1e6)) % len(customers)]

        async def direct(i: int) -> None:
            await touchpoints.recommend(histories[customer(i)], K, exclude_seen=True)

        async def direct_batched(i: int) -> None:
            await batching.recommend(histories[customer(i)], K, exclude_seen=True)

        async def get(path: str, params: dict[str, object]) -> None:
            async with http.get(path, params=params) as response:
                response.raise_for_status()
                await response.read()

        async def shop(i: int) -> None:
            await get("/v1/recommendations", {"customer_id": customer(i), "k": K})

        async def homepage(i: int) -> None:
            await get("/v1/homepage", {"customer_id": customer(i)})

        async def click(i: int) -> None:
            await post_click(http, "/v1/events", customer(i), products[int(time.perf_counter() * 1e6) % len(products)])

        async def triton_rows() -> tuple[float, float]:
            """The service's rows sent to Triton and its calls so far (its batch histogram's sum and count)."""
            async with http.get("/metrics") as response:
                text = await response.text()
            values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                          if line.startswith("fashionrec_shop_triton_batch_rows_"))
            return (float(values.get("fashionrec_shop_triton_batch_rows_sum", 0)),
                    float(values.get("fashionrec_shop_triton_batch_rows_count", 0)))

        # the overhead's two paths take turns (OVERHEAD_ROUNDS of each, the order flipped every round), so that
        # both see the same moments of a shared machine whose speed drifts; the other paths run one after another
        overhead = {"triton direct (recommend)": direct, "shop /v1/recommendations": shop}
        for name, call in overhead.items():
            await closed_loop(call, args.concurrency, 1.0)  # warm-up
        taken: dict[str, list[Turn]] = {name: [] for name in overhead}
        for turn in range(OVERHEAD_ROUNDS):
            for name in (list(overhead) if turn % 2 == 0 else list(overhead)[::-1]):
                sent_before = await triton_rows()
                latencies, cpu = await measured(overhead[name], args.concurrency, args.seconds / OVERHEAD_ROUNDS,
                                                processes)
                sent = await triton_rows()
                taken[name].append((latencies, cpu, (sent[0] - sent_before[0], sent[1] - sent_before[1])))
        for name, turns in taken.items():
            cpu = {who: sum(used[who] for _, used, _ in turns) for who in processes}
            rows_out.append(row(name, np.concatenate([latencies for latencies, _, _ in turns]), args.seconds, cpu))
            rows_sent, calls = (sum(sent[i] for _, _, sent in turns) for i in (0, 1))
            rows_out[-1]["shop rows/Triton call"] = rows_sent / max(calls, 1)
        for name, call in (("shop /v1/homepage", homepage), ("shop POST /v1/events", click),
                           (f"triton direct, batched {config.online.triton_batch_rows}", direct_batched)):
            await closed_loop(call, args.concurrency, 1.0)  # warm-up
            sent_before = await triton_rows()
            latencies, cpu = await measured(call, args.concurrency, args.seconds, processes)
            rows_out.append(row(name, latencies, args.seconds, cpu))
            (rows_sent, calls), (rows_then, calls_then) = await triton_rows(), sent_before
            rows_out[-1]["shop rows/Triton call"] = (rows_sent - rows_then) / max(calls - calls_then, 1)
    await touchpoints.close()
    await batching.close()
    return rows_out


PAIRED_BLOCK_REQUESTS = {"/v1/recommendations": 200, "/v1/homepage": 60, "/v1/events": 200}  # per block and service
CLICKER_PREFIX = "clicker-"  # the event API's rows post for these customers, never for the ones whose pages are timed
BOOTSTRAP_DRAWS = 2000
PAIRED_CONFIDENCE = 0.95


async def post_click(http: aiohttp.ClientSession, url: str, customer: str, product: str) -> None:
    """Post one click (no timestamp: the service stamps it) and check that it was accepted. It is posted for
    another customer than ``customer`` (``CLICKER_PREFIX``), so that the pages measured keep their histories."""
    event = {"customer_id": f"{CLICKER_PREFIX}{customer}", "product_id": product, "event_type": "click"}
    async with http.post(url, json={"events": [event]}) as response:
        response.raise_for_status()
        receipt = await response.json()
    if receipt.get("accepted") != 1:
        raise RuntimeError(f"the click was not accepted: {receipt}")


async def paired(services: dict[str, tuple[subprocess.Popen, str]], customers: list[str], products: list[str],
                 concurrency: int, blocks: int) -> list[str]:
    """This checkout's service against another's, over the same Triton and data: blocks of requests sent to
    each in turn (the order flipped every block), so both see the same moments of a noisy shared machine;
    the service's CPU per request per block, paired by block, with a bootstrap 95 % interval of the
    difference, and each side's latency percentiles."""
    lines = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0)) as http:
        for path, size in PAIRED_BLOCK_REQUESTS.items():
            cpu: dict[str, list[float]] = {name: [] for name in services}
            latencies: dict[str, list[list[float]]] = {name: [] for name in services}  # per block
            for block in range(blocks + 1):  # block 0 warms both up and is not counted
                for name in (list(services) if block % 2 else list(services)[::-1]):
                    process, url = services[name]
                    before = process_cpu_seconds(process.pid)
                    taken = await fixed_requests(http, f"{url}{path}", customers, products, size, concurrency)
                    if block:
                        cpu[name].append(1000 * (process_cpu_seconds(process.pid) - before) / size)
                        latencies[name].append(taken)
            lines.append(paired_line(path, cpu, latencies))
    return lines


async def fixed_requests(http: aiohttp.ClientSession, url: str, customers: list[str], products: list[str], count: int,
                         concurrency: int) -> list[float]:
    """Latencies (seconds) of ``count`` requests for successive customers, ``concurrency`` at a time: pages, or
    for the event API a click each on successive products."""
    latencies: list[float] = []
    sent = iter(range(count))

    async def worker() -> None:
        for i in sent:
            started = time.perf_counter()
            customer = customers[i % len(customers)]
            if url.endswith("/v1/events"):
                await post_click(http, url, customer, products[i % len(products)])
            else:
                async with http.get(url, params={"customer_id": customer}) as response:
                    response.raise_for_status()
                    await response.read()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def paired_line(path: str, cpu: dict[str, list[float]], latencies: dict[str, list[list[float]]]) -> str:
    """One path's comparison: this checkout first, the other second. The service's CPU and each block's median
    latency are paired by block (both services saw the same moments of the machine); p99 over all blocks."""
    this, other = (np.array(values) for values in cpu.values())
    difference = paired_difference(this, other, PAIRED_CONFIDENCE, BOOTSTRAP_DRAWS)
    this_medians, other_medians = (np.array([np.median(block) * 1000 for block in blocks])
                                   for blocks in latencies.values())
    median_difference = paired_difference(this_medians, other_medians, PAIRED_CONFIDENCE, BOOTSTRAP_DRAWS)
    (this_p50, this_p99), (other_p50, other_p99) = (np.percentile(np.concatenate(blocks) * 1000, [50, 99])
                                                    for blocks in latencies.values())
    return (f"{path}: service CPU {this.mean():.2f} vs {other.mean():.2f} ms/req, difference {difference.mean:+.2f} "
            f"[{difference.low:+.2f}, {difference.high:+.2f}]; p50 {this_p50:.1f} vs {other_p50:.1f} ms, block "
            f"medians' difference {median_difference.mean:+.2f} [{median_difference.low:+.2f}, "
            f"{median_difference.high:+.2f}] ms; p99 {this_p99:.1f} vs {other_p99:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=64)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--baseline-checkout", type=Path, default=None, metavar="DIR",
                        help="also run the service from this source tree (e.g. `git worktree add DIR <commit>`) "
                             "and compare the two, paired block by block")
    parser.add_argument("--baseline-set", dest="baseline_overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a setting of the second service only (with or without "
                                                  "--baseline-checkout)")
    parser.add_argument("--blocks", type=int, default=20, help="paired blocks per path (--baseline-checkout)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fashionrec-shop-bench-"))
    settings = list(args.overrides)
    redis_process = None
    if args.store == "redis":
        port = free_port()
        redis_process = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                                          "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        settings += ["online.store=redis", f"online.redis_url=redis://127.0.0.1:{port}/0"]
    config = PipelineConfig().with_settings(settings)
    try:
        paths = make_shop(folder, args.products, args.customers, args.history)
        with TritonServer(paths["model_repository"], ServingConfig(), http_port=0, grpc_port=0,
                          metrics_port=0) as server:
            config = config.with_overrides({"online.triton_url": server.grpc_url})
            services = {"this": start_shop(paths, folder, server.grpc_url, settings)}
            compared = bool(args.baseline_checkout or args.baseline_overrides)
            if compared:
                services["baseline"] = start_shop(paths, folder / "baseline", server.grpc_url,
                                                  settings + args.baseline_overrides,
                                                  args.baseline_checkout.resolve() if args.baseline_checkout else None)
            process, url = services["this"]
            try:
                processes = {"shop": lambda: process_cpu_seconds(process.pid),
                             "triton": lambda: group_cpu_seconds(os.getpgid(server.pid)),
                             "client": lambda: sum(os.times()[:2])}
                rows = asyncio.run(measure(paths, url, args, config, processes))
                logged = pd.read_parquet(paths["events"])
                customers, products = (sorted(logged[column].unique()) for column in ("customer_id", "product_id"))
                comparison = (asyncio.run(paired(services, customers, products, args.concurrency, args.blocks))
                              if compared else [])
            finally:
                for started, _ in services.values():
                    started.terminate()
                    started.wait(timeout=30)
    finally:
        if redis_process is not None:
            redis_process.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{args.products} products, {args.customers} customers x {args.history} past events, "
          f"concurrency {args.concurrency}, {args.seconds:g} s each, store {args.store}")
    columns = [c for c in rows[0] if c != "path"]
    print(f"{'path':<28} " + " ".join(f"{c:>16}" for c in columns))
    for entry in rows:
        print(f"{entry['path']:<28} " + " ".join(
            f"{entry[c]:>16.2f}" if isinstance(entry[c], float) else f"{entry[c]:>16}" for c in columns))
    if comparison:
        baseline = " ".join([str(args.baseline_checkout or "this checkout"), *args.baseline_overrides])
        print(f"\nthis checkout vs {baseline}, {args.blocks} paired blocks per path, concurrency {args.concurrency}:")
        print("\n".join(comparison))
    direct, shop = rows[0], rows[1]
    p50, p99 = shop["p50 ms"] - direct["p50 ms"], shop["p99 ms"] - direct["p99 ms"]
    print(f"shop overhead p50 {p50:.2f} ms p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
