"""Serving benchmark: every touchpoint on a real tritonserver beside in-process brute force, one table.

A 100k-product, 64-d catalogue (random, unit-norm rows) is published like the pipeline does and served
by ``tritonserver`` (explicit model control, the published ServingConfig). A closed-loop load generator
(threads, one gRPC client each; ``perf_analyzer`` is not shipped in the nvidia-pytriton wheel) measures
p50/p95/p99 latency and throughput at concurrency 1, 4 and 16 for `recommend`, `rerank` (200 ids) and
`similar`. In the same run, in-process baselines rank the same queries in batches of --batch: numpy
(one matmul per batch + argpartition, BLAS on every core; fp32 only), the serving contract's own exact
ranking (``ScoringTable.best``, what `rank_products` runs, on the same table and dtype; batched and one
query at a time) and FAISS IndexFlatIP. On a shared 2-core box the client threads, Triton and
the baselines compete for the same cores: read the figures as relative.

The `context` case prices context inputs: the catalogue is published with context tables (3 devices,
--context-regions regions, hour, weekday), and `recommend` is asked without and with a context
(CONTEXT_DEVICE, CONTEXT_REGION, CONTEXT_HOUR, CONTEXT_WEEKDAY), back to back at each concurrency, from
the Python client and again from wrk (below); the cost is the p50 ratio (target: at most 10 % more), from
wrk's rows when it ran.

The `seen` case prices EXCLUDE_SEEN: `recommend` with a heavy customer's whole history (--seen-history
events, 5,000 by default, typed and timestamped) and EXCLUDE_SEEN, beside the same request with only
its last 50 events (the pooling window the catalogue is published with) and no exclusion, and the long
history without the flag (what the long history costs by itself). All three pool the same 50 events.

Every measured cell also says where the time went: per model of the ensemble, Triton's own statistics
over the cell (requests, the batches the dynamic batcher formed, µs per request queued, gathering
inputs, computing, returning outputs), and the CPU per request of the load generator and of Triton with
its python stubs (psutil). With --pin (auto: on machines of 4+ CPUs) the load generator runs on a
quarter of the CPUs and Triton on the rest. Every request is unique (its own REQUEST_TIME), so the
response cache answers none of them, except in the `cached` case: anonymous visitors' similar items for
the same 64 heroes again and again, beside a new hero each time. `recommend`, those two and the `context`
case's pair are measured twice: from the Python gRPC clients, and from ``wrk`` (C, one thread, over
Triton's HTTP/JSON endpoint; ``make wrk``; skipped when it is absent), whose CPU per request is a tenth of
the Python client's, so that on a small box its rows show Triton's speed rather than the client's. The
verdict takes wrk's rows when it ran.

With --add-products N the catalogue is published with a content tower (random weights in the export's
format, its vocabularies from the synthetic shop's words), and after the touchpoints, N products of
the synthetic shop's next launch are added with ``catalogue add`` (embedded by the tower, appended to
the table, published as the next version and loaded into the running Triton): its seconds, Triton's
peak and final resident memory meanwhile, and `recommend` at concurrency 1 on the new version.

The header gives the catalogue's publish time, Triton's time to ready and its resident memory (for the
1M-product case: --products 1000000 --set serving.table_dtype=float16). The last line is the verdict:
`ratio recommend/in-process X at concurrency C; p99/p50 at 16 Y; cached/uncached Z`.

    .venv/bin/python benchmarks/serving.py [--products 100000] [--seconds 3] [--concurrency 1 4 16]
                                           [--touchpoints recommend rerank similar seen context cached]
                                           [--no-baselines] [--pin auto|on|off]
                                           [--seen-history 5000] [--context-regions 200]
                                           [--add-products 1000]
                                           [--set serving.ranking_instance_count=2 ...]

``--set`` overrides the served ServingConfig (dynamic batching, instance counts, table dtype) for
tuning runs; ``--no-baselines`` skips the in-process rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from fashionrec.model.aggregation import AGGREGATION_FILE, Aggregation
from fashionrec.app.client import FashionrecClient, History
from fashionrec.contract import content
from fashionrec.contract.context import CLOCK_SIZES, CONTEXT_FILE, ContextTables
from fashionrec.contract.scoring import ScoringTable
from fashionrec.serving.requests import RANKED_OUTPUTS, RequestContext, recommend_tensors, similar_tensors
from fashionrec.config import EventWeights, PipelineConfig, ServingConfig, ShopConfig, TrainConfig, TransformConfig
from fashionrec.datasets.synthetic import launch_products
from fashionrec.repository.catalogue import add_products
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving import statistics
from fashionrec.serving.server import TritonServer

K = 10
HISTORY_LENGTH = 20
RERANK_SIZE = 200
BENCH_SERVING = ServingConfig()  # what the benchmark serves with: the defaults (--set changes them)
TOUCHPOINTS = ("recommend", "rerank", "similar", "seen", "context", "cached")
CACHED_CASE_MB = 256  # the response cache the `cached` case turns on when --set leaves it off (the default)
CACHED_HEROES = 64  # the `cached` case's anonymous product pages: the same few heroes again and again
CACHED_CALL, UNCACHED_CALL = "similar, anonymous, 64 heroes (cached)", "similar, anonymous, new heroes (uncached)"
WRK = "wrk"  # the `cached` case's second load generator (C, HTTP/1.1): apt install wrk; skipped when absent
WRK_CACHED, WRK_UNCACHED = f"{CACHED_CALL} [wrk, HTTP]", f"{UNCACHED_CALL} [wrk, HTTP]"
WRK_RECOMMEND = "recommend [wrk, HTTP]"
REQUEST_TIME_MARK = 987_654_321_987  # where a body's REQUEST_TIME goes, replaced by wrk per request
_WRK_RUNS = itertools.count(1_000)  # each wrk invocation's REQUEST_TIMEs: its number times 1e9 plus the request's
# wrk's Lua: the bodies in turn; a unique body's REQUEST_TIME mark becomes one no other request of the run
# has (so the response cache never answers it), as text: LuaJIT's %d stops at 32 bits
WRK_SCRIPT = """
local bodies, unique, run = {%(bodies)s}, %(unique)s, "%(run)d"
local sent = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = bodies[sent %% #bodies + 1]
  sent = sent + 1
  if unique then body = string.gsub(body, "%(mark)d", run .. string.format("%%09d", sent)) end
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
CONTEXT_REGIONS = 200  # the context case's region vocabulary
CONTEXT_DEVICES = ("mobile", "desktop", "tablet")
NO_CONTEXT_CALL, CONTEXT_CALL = "recommend, no context", "recommend + context"
NO_CONTEXT_ROW, CONTEXT_ROW = f"triton {NO_CONTEXT_CALL}", f"triton {CONTEXT_CALL}"
WRK_NO_CONTEXT, WRK_CONTEXT = f"{NO_CONTEXT_CALL} [wrk, HTTP]", f"{CONTEXT_CALL} [wrk, HTTP]"
DEFAULT_TOUCHPOINTS = ("recommend", "rerank", "similar")
SEEN_HISTORY = 5_000  # the design target of EXCLUDE_SEEN: a heavy customer's past interactions
SEEN_CUSTOMERS = 32  # distinct long histories the `seen` case cycles through
WINDOW = TransformConfig().history_length  # the pooling window export publishes (the training history length)
EVENT_TYPES = tuple(EventWeights().as_dict())
TUNING_FIELDS = ("max_queue_delay_us", "max_batch_size", "instance_count", "ranking_instance_count", "table_dtype",
                 "response_cache_mb", "blas_threads")
MIN_CPUS_TO_PIN = 4  # below this, pinning the client apart would starve the server: share the cores instead
VOCABULARY_LAUNCH, ADDED_LAUNCH = 1, 2  # the shop's launches the tower's words and the added products come from
VOCABULARY_PRODUCTS = 5_000
MEMORY_SAMPLE_S = 0.05  # how often Triton's resident memory is sampled while a catalogue addition runs


def make_catalogue(num_products: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(num_products, dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return [f"P{i:07d}" for i in range(num_products)], table


def publish(folder: Path, ids: list[str], table: np.ndarray, serving: ServingConfig,
            context: ContextTables | None = None, tower: content.ContentTower | None = None) -> str:
    column = pa.FixedSizeListArray.from_arrays(pa.array(table.reshape(-1), pa.float32()), table.shape[1])
    pq.write_table(pa.table({"product_id": ids, "embedding": column, "is_new": [False] * len(ids)}),
                   folder / "embeddings.parquet")
    if context is not None:  # a context model's tables, beside the embeddings as export writes them
        (folder / CONTEXT_FILE).write_text(json.dumps(context.to_json()))
    if tower is not None:  # beside the embeddings, as export writes it: the version can embed new products
        tower.save(folder)
    (folder / "blessing.json").write_text(json.dumps({"blessed": True}))
    # pooled as the pipeline exports it: the training defaults over the last WINDOW events
    Aggregation.from_training(TrainConfig(), EventWeights(), WINDOW).write(str(folder / AGGREGATION_FILE))
    return publish_model_repository(str(folder / "embeddings.parquet"), str(folder / "blessing.json"),
                                    str(folder / "repo"), serving).path


def bench_tower(dim: int, seed: int = 4) -> content.ContentTower:
    """A content tower in the export's format and the trained one's sizes, with random weights: its
    vocabularies are the words, categories, colours and brands of one launch of the synthetic shop."""
    products, _ = launch_products(ShopConfig(), VOCABULARY_PRODUCTS, VOCABULARY_LAUNCH)
    train, max_tokens = TrainConfig(), TransformConfig().max_title_tokens
    words = sorted({token for title, text in zip(products["title"], products["description"], strict=True)
                    for token in content.tokenize(title, text, max_tokens)})
    vocabularies = {"tokens": words, **{name: sorted(products[name].unique()) for name in content.CATEGORICAL}}
    boundaries = np.quantile(products["price"], np.linspace(0.1, 0.9, 9)).tolist()
    log_price = np.log1p(products["price"])
    features = {"format": content.FORMAT_VERSION, "max_tokens": max_tokens, "oov_buckets": 1,
                "temperature": train.temperature, "normalize": True, "gelu": "erf", "vocabularies": vocabularies,
                "price": {"boundaries": boundaries, "mean": float(log_price.mean()), "var": float(log_price.var())}}
    widths = {"tokens": train.token_embedding_dim,
              **{name: train.feature_embedding_dim for name in (*content.CATEGORICAL, "price_bucket")}}
    rows = {"tokens": len(words) + 2, **{name: len(vocabularies[name]) + 1 for name in content.CATEGORICAL},
            "price_bucket": len(boundaries) + 1}
    inputs = sum(widths.values()) + 1  # + the price's z-score
    hidden = train.content_hidden_units
    shapes = {**{name: (rows[name], widths[name]) for name in widths}, "hidden_kernel": (inputs, hidden),
              "hidden_bias": (hidden,), "output_kernel": (hidden, dim), "output_bias": (dim,)}
    rng = np.random.default_rng(seed)
    return content.ContentTower(features, {name: (rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)
                                           for name, shape in shapes.items()})


def catalogue_add(repository: str, serving: ServingConfig, server: TritonServer, count: int) -> dict:
    """``catalogue add`` of ``count`` new products into the running Triton: seconds, and Triton's peak and
    final resident memory (MiB) while the new version loads beside the old one."""
    products, _ = launch_products(ShopConfig(), count, ADDED_LAUNCH)
    peak, done = [resident_mb(server)], threading.Event()

    def sample() -> None:
        while not done.wait(MEMORY_SAMPLE_S):
            peak[0] = max(peak[0], resident_mb(server))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        update = add_products(repository, products, serving, server_url=server.grpc_url)
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    after = resident_mb(server)
    return {"seconds": seconds, "peak_mb": max(peak[0], after), "after_mb": after, "count": count,
            "version": update.version, "products": update.num_products}


_REQUEST_TIMES = itertools.count(int(time.time()))  # one per request of the whole run


def fresh(history: History) -> History:
    """The same history with a REQUEST_TIME no other request of the run carries: every input byte of a
    benchmark request differs, so Triton's response cache never answers it (only the `cached` rows
    repeat requests on purpose). A history without timestamps is pooled the same at any request time."""
    return dataclasses.replace(history, request_time=next(_REQUEST_TIMES))


def seen_histories(ids: list[str], events: int, count: int, seed: int = 2) -> list[History]:
    """Heavy customers' whole histories, oldest first: ``events`` random events each (product, event
    type, timestamp over the last year), measured from a fixed request time."""
    rng = np.random.default_rng(seed)
    now = int(time.time())
    return [History([ids[i] for i in rng.integers(0, len(ids), events)], list(rng.choice(EVENT_TYPES, events)),
                    np.sort(rng.integers(now - 365 * 86_400, now, events)).tolist(), request_time=now)
            for _ in range(count)]


def last_events(history: History, n: int) -> History:
    """The same request with only the newest ``n`` events (what is pooled anyway)."""
    return History(history.product_ids[-n:], history.event_types[-n:], history.timestamps[-n:],
                   request_time=history.request_time)


def seen_calls(ids: list[str], events: int) -> dict[str, Callable[[FashionrecClient, int], object]]:
    """The `seen` case's rows: the short request, the long one, the long one with EXCLUDE_SEEN."""
    long = seen_histories(ids, events, SEEN_CUSTOMERS)
    short = [last_events(history, WINDOW) for history in long]
    return {
        f"recommend, history {WINDOW}": lambda c, n: c.recommend(fresh(short[n % len(short)]), K),
        f"recommend, history {events}": lambda c, n: c.recommend(fresh(long[n % len(long)]), K),
        f"recommend, history {events} + EXCLUDE_SEEN": lambda c, n: c.recommend(fresh(long[n % len(long)]), K,
                                                                                 exclude_seen=True),
    }


def context_tables(dim: int, regions: int, seed: int = 3) -> ContextTables:
    """Random context tables (row 0, unknown, zero) for the devices, ``regions`` regions, hours and weekdays."""
    rng = np.random.default_rng(seed)
    vocabularies = {"device": CONTEXT_DEVICES, "region": tuple(f"R{i:04d}" for i in range(regions))}
    sizes = {"device": len(CONTEXT_DEVICES), "region": regions, **CLOCK_SIZES}
    tables = {f: np.vstack([np.zeros((1, dim)), 0.1 * rng.normal(size=(n, dim))]).astype(np.float32)
              for f, n in sizes.items()}
    return ContextTables(vocabularies, tables)


def request_contexts(regions: int) -> list[RequestContext]:
    """The `context` case's contexts, in turn: every device, region, hour and weekday comes round."""
    return [RequestContext(CONTEXT_DEVICES[n % 3], f"R{n * 31 % regions:04d}", n % 24, n % 7) for n in range(97)]


def context_calls(histories: list[History], regions: int) -> dict[str, Callable[[FashionrecClient, int], object]]:
    """The `context` case's rows: the same requests without and with a (varying) context."""
    contexts = request_contexts(regions)
    return {
        NO_CONTEXT_CALL: lambda c, n: c.recommend(fresh(histories[n % len(histories)]), K),
        CONTEXT_CALL: lambda c, n: c.recommend(fresh(histories[n % len(histories)]), K, context=contexts[n % len(contexts)]),
    }


def cached_calls(ids: list[str]) -> dict[str, Callable[[FashionrecClient, int], object]]:
    """The `cached` case's rows: anonymous visitors' similar items for a few heroes (identical requests:
    the response cache answers), beside the same request for a new hero each time (never cached)."""
    return {
        CACHED_CALL: lambda c, n: c.similar(ids[n % CACHED_HEROES], (), K),
        UNCACHED_CALL: lambda c, n: c.similar(ids[CACHED_HEROES + next(_REQUEST_TIMES) * 7919 % (len(ids) - CACHED_HEROES)],
                                               (), K),
    }


def percentiles(latencies_s: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.array(latencies_s) * 1e3, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def load(url: str, call: Callable[[FashionrecClient, int], object], concurrency: int, seconds: float,
         serving: ServingConfig, server: TritonServer | None = None) -> dict:
    """Closed loop: each thread sends its next request when the previous answered, for ``seconds``.

    With ``server``, the same window also records Triton's per-model statistics (what each step's
    requests spent queued and computing, and the batches formed) and the CPU seconds used by this
    client process and by the server's process group (tritonserver and its python stubs)."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0]
    stop = threading.Event()

    def worker(slot: int) -> None:
        with FashionrecClient(url, "grpc", serving) as client:
            call(client, slot)  # warm the connection
            n = slot
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    call(client, n)
                except Exception:  # noqa: BLE001 - counted, the benchmark goes on
                    failures[0] += 1
                latencies[slot].append(time.perf_counter() - started)
                n += concurrency

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # warm-up, not measured
    for per_thread in latencies:
        per_thread.clear()
    meter = LoadMeter(server) if server is not None else None
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - started
    where = meter.finish() if meter is not None else {}
    for thread in threads:
        thread.join()
    done = [x for per_thread in latencies for x in per_thread]
    return {"rps": len(done) / elapsed, "lat": percentiles(done), "failures": failures[0], "requests": len(done),
            **where}


def json_body(tensors: list[tuple[str, np.ndarray, str]]) -> str:
    """Triton's JSON inference body for ``tensors`` (name, value, datatype), asking for the ranked outputs."""
    inputs = [{"name": name, "shape": list(value.shape), "datatype": datatype,
               "data": [v.decode() if isinstance(v, bytes) else v for v in value.reshape(-1).tolist()]}
              for name, value, datatype in tensors]
    return json.dumps({"inputs": inputs, "outputs": [{"name": n} for n in RANKED_OUTPUTS]}, separators=(",", ":"))


def wrk_bodies(call: str, ids: list[str], histories: list[History], regions: int) -> tuple[list[str], bool]:
    """wrk's bodies for ``call`` and whether each request must be unique: the cached case's 64 anonymous
    heroes (repeated on purpose), 256 more heroes for its uncached twin, or `recommend` over the run's
    histories (as the gRPC rows: each request with a REQUEST_TIME of its own), also without and with the
    `context` case's contexts (over ``regions`` regions)."""
    if call in (WRK_RECOMMEND, WRK_NO_CONTEXT, WRK_CONTEXT):
        contexts = request_contexts(regions) if call == WRK_CONTEXT else [None]
        return [json_body(recommend_tensors(dataclasses.replace(h, request_time=REQUEST_TIME_MARK), K, BENCH_SERVING,
                                            context=contexts[n % len(contexts)]))
                for n, h in enumerate(histories)], True
    unique = call == WRK_UNCACHED
    heroes = ids[CACHED_HEROES: 5 * CACHED_HEROES] if unique else ids[:CACHED_HEROES]
    return [json_body(similar_tensors(hero, History([hero], request_time=REQUEST_TIME_MARK) if unique else History([]),
                                      K, BENCH_SERVING)) for hero in heroes], unique


def wrk_load(server: TritonServer, model: str, bodies: list[str], unique: bool, concurrency: int,
             seconds: float) -> dict | None:
    """Closed loop from wrk (one C thread, ``concurrency`` connections) over Triton's HTTP endpoint for
    ``model``, after a second of warm-up, with the same Triton statistics and CPU split as :func:`load`
    (the client's CPU: wrk's, from the children's rusage). None when wrk is not installed."""
    if shutil.which(WRK) is None:
        return None
    url = f"http://{server.http_url}/v2/models/{model}/infer"
    run_wrk(url, bodies, unique, concurrency, 1.0)
    meter, before = LoadMeter(server), resource.getrusage(resource.RUSAGE_CHILDREN)
    output = run_wrk(url, bodies, unique, concurrency, seconds)
    where, after = meter.finish(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done, micros, p50, p95, p99, errors = (int(v) for v in output.split("RESULT ")[1].split())
    client_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rps": done / (micros / 1e6), "lat": (p50 / 1e3, p95 / 1e3, p99 / 1e3), "failures": errors,
            "requests": done, **where, "client_cpu_s": client_s}


def run_wrk(url: str, bodies: list[str], unique: bool, concurrency: int, seconds: float) -> str:
    """One wrk invocation (REQUEST_TIMEs of its own when ``unique``); what it printed."""
    script = WRK_SCRIPT % {"bodies": ",".join(f"[==[{body}]==]" for body in bodies),
                           "unique": "true" if unique else "false", "run": next(_WRK_RUNS), "mark": REQUEST_TIME_MARK}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = [WRK, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", lua.name, url]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def wrk_rows(server: TritonServer, model: str, calls: list[str], ids: list[str], histories: list[History],
             args: argparse.Namespace, concurrencies: list[int] | None = None) -> list[tuple[str, str, dict]]:
    """Each of ``calls`` from wrk at each concurrency (``args.concurrency`` by default); none without wrk."""
    rows = []
    for concurrency in concurrencies or args.concurrency:
        for call in calls:
            measured = wrk_load(server, model, *wrk_bodies(call, ids, histories, args.context_regions), concurrency,
                                args.seconds)
            rows += [(f"triton {call}", str(concurrency), measured)] if measured else []
    return rows


class LoadMeter:
    """Triton's statistics and both sides' CPU time over one measured window."""

    def __init__(self, server: TritonServer) -> None:
        import tritonclient.grpc

        self._client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
        self._processes = server_processes(server)
        self._statistics = statistics.read_statistics(self._client)
        self._server_cpu = sum(cpu_seconds(p) for p in self._processes)
        self._client_cpu = time.process_time()

    def finish(self) -> dict:
        client_cpu = time.process_time() - self._client_cpu
        server_cpu = sum(cpu_seconds(p) for p in self._processes) - self._server_cpu
        steps = statistics.window(self._statistics, statistics.read_statistics(self._client))
        self._client.close()
        return {"steps": steps, "client_cpu_s": client_cpu, "server_cpu_s": server_cpu}


def server_processes(server: TritonServer) -> list:
    """tritonserver and every python stub it started (one per model instance), as psutil Processes."""
    import psutil

    root = psutil.Process(server.pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(process) -> float:
    """User + system CPU seconds of a psutil Process (0 once it is gone)."""
    try:
        times = process.cpu_times()
    except Exception:  # noqa: BLE001 - a stub that exited used nothing more
        return 0.0
    return times.user + times.system


def baseline(name: str, rank: Callable[[np.ndarray], object], queries: np.ndarray, batch: int, seconds: float) -> dict:
    """In-process brute force over batches of ``batch`` queries, for ``seconds``."""
    rank(queries[:batch])
    latencies, done, started = [], 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        chunk = queries[(done % len(queries)):][:batch]
        t0 = time.perf_counter()
        rank(chunk)
        latencies.append(time.perf_counter() - t0)
        done += len(chunk)
    return {"rps": done / (time.perf_counter() - started), "lat": percentiles(latencies), "failures": 0}


def numpy_rank(table: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Plain numpy brute force: one matmul over the batch, argpartition per row (BLAS on every core)."""
    def rank(vectors: np.ndarray) -> np.ndarray:
        dots = vectors @ table.T
        top = np.argpartition(dots, dots.shape[1] - K, axis=1)[:, -K:]
        order = np.argsort(-np.take_along_axis(dots, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)
    return rank


def contract_rank(table: np.ndarray, dtype: str) -> Callable[[np.ndarray], object]:
    """The serving contract's own exact ranking in-process (``ScoringTable.best``) on the same table, held
    as ``dtype`` like the served one: what `rank_products` runs, without Triton around it."""
    scoring = ScoringTable(table, dtype)
    return lambda vectors: scoring.best(vectors, [np.zeros(0, np.int64)] * len(vectors), K)


def faiss_rank(table: np.ndarray) -> Callable[[np.ndarray], object]:
    import faiss

    index = faiss.IndexFlatIP(table.shape[1])
    index.add(table)
    return lambda vectors: index.search(np.ascontiguousarray(vectors), K)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="closed-loop clients per cell; the verdict takes recommend's best (64 lets the dynamic "
                             "batcher fill batches of 32, as the in-process rows' 64)")
    parser.add_argument("--batch", type=int, default=64, help="queries per in-process batch")
    parser.add_argument("--touchpoints", nargs="+", default=list(DEFAULT_TOUCHPOINTS), choices=TOUCHPOINTS,
                        help="seen: recommend with a whole seen-history and EXCLUDE_SEEN vs a window-long history")
    parser.add_argument("--seen-history", type=int, default=SEEN_HISTORY,
                        help="events of the long history in the seen case (at most serving.max_history_length)")
    parser.add_argument("--context-regions", type=int, default=CONTEXT_REGIONS,
                        help="regions in the context case's tables (its vocabulary size)")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--add-products", type=int, default=0, metavar="N",
                        help="then add N new products with `catalogue add` into the running Triton (0: skip)")
    parser.add_argument("--pin", choices=("auto", "on", "off"), default="auto",
                        help=f"pin the load generator apart from Triton (auto: with {MIN_CPUS_TO_PIN}+ CPUs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="serving.KEY=VALUE")
    args = parser.parse_args()
    serving = served_config(args.overrides)
    if "cached" in args.touchpoints and not serving.response_cache_mb:
        serving = dataclasses.replace(serving, response_cache_mb=CACHED_CASE_MB)
    if "seen" in args.touchpoints and not WINDOW <= args.seen_history <= serving.max_history_length:
        parser.error(f"--seen-history must be between {WINDOW} and max_history_length={serving.max_history_length}")

    ids, table = make_catalogue(args.products, args.dim)
    rng = np.random.default_rng(1)
    histories = [History([ids[i] for i in rng.choice(len(ids), HISTORY_LENGTH, replace=False)]) for _ in range(256)]
    pages = [[ids[i] for i in rng.choice(len(ids), RERANK_SIZE, replace=False)] for _ in range(64)]
    queries = np.stack([table[[int(p[1:]) for p in h.product_ids]].mean(axis=0) for h in histories])
    calls = {
        "recommend": lambda c, n: c.recommend(fresh(histories[n % len(histories)]), K),
        "rerank": lambda c, n: c.rerank(fresh(histories[n % len(histories)]), pages[n % len(pages)]),
        "similar": lambda c, n: c.similar(ids[n * 7919 % len(ids)], fresh(histories[n % len(histories)]), K),
    }
    compared = seen_calls(ids, args.seen_history) if "seen" in args.touchpoints else {}  # rows run back to back
    with_context = "context" in args.touchpoints
    compared |= context_calls(histories, args.context_regions) if with_context else {}
    compared |= cached_calls(ids) if "cached" in args.touchpoints else {}
    rows: list[tuple[str, str, dict]] = []
    client_cpus, server_cpus = cpu_split(args.pin)
    with tempfile.TemporaryDirectory(prefix="fashionrec-bench-") as folder:
        started = time.perf_counter()
        repository = publish(Path(folder), ids, table, serving,
                             context_tables(args.dim, args.context_regions) if with_context else None,
                             bench_tower(args.dim) if args.add_products else None)
        published = time.perf_counter()
        with TritonServer(repository, serving, http_port=0, grpc_port=0, metrics_port=0) as server:
            setup = {"publish_s": published - started, "ready_s": time.perf_counter() - published,
                     "resident_mb": resident_mb(server), "client_cpus": client_cpus, "server_cpus": server_cpus}
            pin(server, client_cpus, server_cpus)
            for name in (n for n in args.touchpoints if n not in ("seen", "context", "cached")):
                for concurrency in args.concurrency:
                    rows.append((f"triton {name}", str(concurrency), load(server.grpc_url, calls[name], concurrency,
                                                                           args.seconds, serving, server)))
            if "recommend" in args.touchpoints:  # again from a load generator light enough to saturate Triton
                rows += wrk_rows(server, serving.model_name, [WRK_RECOMMEND], ids, histories, args)
            for concurrency in args.concurrency:  # the compared requests back to back: same load around them
                for name, call in compared.items():
                    rows.append((f"triton {name}", str(concurrency), load(server.grpc_url, call, concurrency,
                                                                           args.seconds, serving, server)))
                if with_context:  # again from wrk, whose own CPU hardly depends on the request's inputs
                    rows += wrk_rows(server, serving.model_name, [WRK_NO_CONTEXT, WRK_CONTEXT], ids, histories, args,
                                     [concurrency])
                if "cached" in args.touchpoints:  # again from wrk
                    rows += wrk_rows(server, serving.similar_model_name, [WRK_CACHED, WRK_UNCACHED], ids, histories,
                                     args, [concurrency])
            if args.add_products:
                setup["catalogue_add"] = catalogue_add(repository, serving, server, args.add_products)
                rows.append(("triton recommend after catalogue add", "1",
                             load(server.grpc_url, calls["recommend"], 1, args.seconds, serving, server)))
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)  # the baselines get the cores Triton had
    if args.baselines:
        contract = contract_rank(table, serving.table_dtype)
        if serving.table_dtype == "float32":  # numpy has no fast fp16 product: the contract widens blocks
            rows.append((f"in-process numpy (batch {args.batch})", "-",
                         baseline("numpy", numpy_rank(table), queries, args.batch, args.seconds)))
        rows.append((f"in-process contract (batch {args.batch})", "-",
                     baseline("contract", contract, queries, args.batch, args.seconds)))
        rows.append(("in-process contract (1 query)", "-", baseline("contract", contract, queries, 1, args.seconds)))
        with threadpool_limits(serving.blas_threads):  # the stub's share of BLAS: Triton's own overhead, alone
            rows.append((f"in-process contract (1 query, {serving.blas_threads} BLAS thread)", "-",
                         baseline("contract", contract, queries, 1, args.seconds)))
        rows.append((f"in-process FAISS flat IP (batch {args.batch})", "-",
                     baseline("faiss", faiss_rank(table), queries, args.batch, args.seconds)))
    print_table(rows, args, serving, setup)


def cpu_split(mode: str) -> tuple[set[int], set[int]]:
    """(client CPUs, server CPUs) to pin apart, or two empty sets (no pinning): ``auto`` pins when the
    machine has MIN_CPUS_TO_PIN CPUs or more, giving the client a quarter of them."""
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "off" or (mode == "auto" and len(cpus) < MIN_CPUS_TO_PIN):
        return set(), set()
    client = max(1, len(cpus) // 4)
    return set(cpus[:client]), set(cpus[client:])


def pin(server: TritonServer, client_cpus: set[int], server_cpus: set[int]) -> None:
    """This process (the load generator) on ``client_cpus``, Triton and its stubs on ``server_cpus``."""
    if not client_cpus:
        return
    for process in server_processes(server):
        process.cpu_affinity(sorted(server_cpus))
    os.sched_setaffinity(0, client_cpus)


def resident_mb(server: TritonServer) -> float:
    """Resident memory of tritonserver and its python stubs together, MiB (shared pages counted once per
    process: an upper bound)."""
    return sum(p.memory_info().rss for p in server_processes(server)) / 2**20


def served_config(overrides: list[str]) -> ServingConfig:
    """BENCH_SERVING with ``serving.KEY=VALUE`` overrides, parsed and checked like the CLI's ``--set``."""
    return PipelineConfig(serving=BENCH_SERVING).with_settings(overrides).serving


def print_table(rows: list[tuple[str, str, dict]], args: argparse.Namespace, serving: ServingConfig,
                setup: dict) -> None:
    tuning = {name: getattr(serving, name) for name in TUNING_FIELDS}
    print(f"\n{args.products:,} products x {args.dim} d, top-{K}, history {HISTORY_LENGTH}, rerank {RERANK_SIZE} ids; "
          f"{args.seconds:g} s per cell (baselines: latency is per batch); served with {tuning}")
    pinned = (f"client on CPUs {sorted(setup['client_cpus'])}, Triton on {sorted(setup['server_cpus'])}"
              if setup["client_cpus"] else f"client and Triton share all {os.cpu_count()} CPUs (not pinned)")
    print(f"published in {setup['publish_s']:.1f} s; Triton ready {setup['ready_s']:.1f} s later, resident "
          f"{setup['resident_mb']:,.0f} MiB (tritonserver + stubs); {pinned}")
    if "catalogue_add" in setup:
        added = setup["catalogue_add"]
        print(f"catalogue add: {added['count']:,} products embedded, published as version {added['version']} "
              f"({added['products']:,} products) and loaded in {added['seconds']:.1f} s; Triton resident peak "
              f"{added['peak_mb']:,.0f} MiB during, {added['after_mb']:,.0f} MiB after")
    print(f"{'system':<64} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'fail':>5}")
    for system, concurrency, r in rows:
        p50, p95, p99 = r["lat"]
        print(f"{system:<64} {concurrency:>4} {r['rps']:>8.0f} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {r['failures']:>5}")
    print_where_time_goes(rows, serving)
    print_seen_cost(rows, args)
    print_context_cost(rows, args)
    print_one_query(rows)
    print(summary_line(rows))


def print_one_query(rows: list[tuple[str, str, dict]]) -> None:
    """``recommend``'s p50 at concurrency 1 over the in-process contract's one query: with every core for its
    BLAS, and with the stub's share (``serving.blas_threads``), which leaves Triton's own overhead."""
    single = next((r for system, concurrency, r in rows if system == "triton recommend" and concurrency == "1"), None)
    alone = [(system, r) for system, _, r in rows if system.startswith("in-process contract (1 query")]
    if single and alone:
        print("\none query, triton recommend p50 at concurrency 1 over " + "; over ".join(
            f"{system.removeprefix('in-process ')} {single['lat'][0] / r['lat'][0]:.2f}x" for system, r in alone))


def summary_line(rows: list[tuple[str, str, dict]]) -> str:
    """The issue's one-line verdict: recommend at its best concurrency against the fastest batched
    in-process brute force of the run (numpy, the contract or FAISS), p99/p50 at concurrency 16, and the
    cached over the uncached throughput (each 'n/a' when not measured)."""
    recommend = ({concurrency: r for system, concurrency, r in rows if system == f"triton {WRK_RECOMMEND}"}
                 or {concurrency: r for system, concurrency, r in rows if system == "triton recommend"})  # wrk's first
    fastest_rps = max((r["rps"] for system, _, r in rows if system.startswith("in-process") and "(batch" in system),
                      default=None)
    ratio = "n/a"
    if recommend and fastest_rps:
        concurrency, best = max(recommend.items(), key=lambda item: item[1]["rps"])
        ratio = f"{best['rps'] / fastest_rps:.2f} at concurrency {concurrency}"
    tail = f"{recommend['16']['lat'][2] / recommend['16']['lat'][0]:.2f}" if "16" in recommend else "n/a"
    speedup = "n/a"
    for cached_call, uncached_call in ((CACHED_CALL, UNCACHED_CALL), (WRK_CACHED, WRK_UNCACHED)):  # wrk's last
        cached = max((r["rps"] for system, _, r in rows if system == f"triton {cached_call}"), default=None)
        uncached = max((r["rps"] for system, _, r in rows if system == f"triton {uncached_call}"), default=None)
        speedup = f"{cached / uncached:.1f}" if cached and uncached else speedup
    return (f"\nratio recommend/in-process {ratio}; p99/p50 at 16 {tail}; cached/uncached {speedup} "
            f"(targets: >= 0.8, <= 2, >= 10)")


def step_order(serving: ServingConfig) -> list[str]:
    """The models a touchpoint's request passes through, ensembles first, then its steps in order."""
    return [serving.model_name, serving.rerank_model_name, serving.similar_model_name, serving.blend_model_name,
            serving.customer_model_name, serving.ranking_model_name]


def print_where_time_goes(rows: list[tuple[str, str, dict]], serving: ServingConfig) -> None:
    """Per measured cell: each model's requests, mean batch and µs per request in total and per phase
    (Triton's statistics), then the CPU per request on each side of the wire."""
    measured = [(system, concurrency, r) for system, concurrency, r in rows if "steps" in r]
    if not measured:
        return
    print("\nwhere the time goes: µs per request inside Triton, by model (batch = requests per execution)")
    print(f"{'system':<64} {'conc':>4}  {'model':<16} {'requests':>8} {'batch':>5} {'total':>7} {'queue':>7} "
          f"{'input':>7} {'infer':>7} {'output':>7}")
    for system, concurrency, r in measured:
        for n, (model, values) in enumerate(statistics.breakdown_rows(r["steps"], step_order(serving))):
            requests, batch, *phases = values
            label = (system, concurrency) if n == 0 else ("", "")
            print(f"{label[0]:<64} {label[1]:>4}  {model:<16} {requests:>8.0f} {batch:>5.1f} "
                  + " ".join(f"{us:>7.0f}" for us in phases))
        done = max(r["requests"], 1)
        client_ms, server_ms = 1e3 * r["client_cpu_s"] / done, 1e3 * r["server_cpu_s"] / done
        share = r["client_cpu_s"] / max(r["client_cpu_s"] + r["server_cpu_s"], 1e-9)
        print(f"{'':<64} {'':>4}  CPU per request: client {client_ms:.2f} ms, Triton {server_ms:.2f} ms "
              f"(client share {share:.0%})")


def print_seen_cost(rows: list[tuple[str, str, dict]], args: argparse.Namespace) -> None:
    """The `seen` case side by side: p50 / p95 ms of each request per concurrency, and what EXCLUDE_SEEN
    over the whole history adds to the window-long request."""
    names = [f"triton recommend, history {WINDOW}", f"triton recommend, history {args.seen_history}",
             f"triton recommend, history {args.seen_history} + EXCLUDE_SEEN"]
    cells = {(system, concurrency): r for system, concurrency, r in rows if system in names}
    if not cells:
        return
    print(f"\nEXCLUDE_SEEN over a {args.seen_history:,}-event history (p50 / p95 ms; pooled: the last {WINDOW})")
    print(f"{'conc':>4}  {f'history {WINDOW}':>18}  {f'history {args.seen_history}':>18}  "
          f"{'+ EXCLUDE_SEEN':>18}  {'added p50 / p95':>18}")
    for concurrency in map(str, args.concurrency):
        short, long, excluded = (cells[(name, concurrency)]["lat"] for name in names)
        print(f"{concurrency:>4}  " + "  ".join(f"{lat[0]:>8.2f} / {lat[1]:>7.2f}" for lat in (short, long, excluded))
              + f"  {excluded[0] - short[0]:>+8.2f} / {excluded[1] - short[1]:>+7.2f}")


def print_context_cost(rows: list[tuple[str, str, dict]], args: argparse.Namespace) -> None:
    """The `context` case side by side, from the Python gRPC client and (when it ran) from wrk: p50 / p99 ms
    without and with a context, and the p50 ratio. The closing line takes wrk's rows when wrk ran: the Python
    client's encoding of the four extra inputs costs CPU the server shares on a small box."""
    pairs = [(NO_CONTEXT_ROW, CONTEXT_ROW, "Python gRPC client"),
             (f"triton {WRK_NO_CONTEXT}", f"triton {WRK_CONTEXT}", "wrk")]
    cells = {(system, concurrency): r for system, concurrency, r in rows}
    worst, source = None, None
    for plain_row, context_row, client in pairs:
        if (plain_row, str(args.concurrency[0])) not in cells:
            continue
        print(f"\ncontext inputs (device, region of {args.context_regions}, hour, weekday) on recommend, from {client} "
              "(p50 / p99 ms)")
        print(f"{'conc':>4}  {'no context':>18}  {'context':>18}  {'p50 ratio':>9}")
        ratios = []
        for concurrency in map(str, args.concurrency):
            plain, moved = cells[(plain_row, concurrency)]["lat"], cells[(context_row, concurrency)]["lat"]
            ratios.append(moved[0] / plain[0])
            print(f"{concurrency:>4}  {plain[0]:>8.2f} / {plain[2]:>7.2f}  {moved[0]:>8.2f} / {moved[2]:>7.2f}  "
                  f"{ratios[-1]:>9.3f}")
        worst, source = max(ratios), client
    if worst is not None:
        print(f"context request cost: at most {worst - 1:+.1%} at p50 over concurrency {args.concurrency}, "
              f"from {source} (target <= +10 %)")


if __name__ == "__main__":
    main()
