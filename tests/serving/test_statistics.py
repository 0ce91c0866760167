"""Parsing and differencing Triton's per-model statistics, with hand-computed numbers."""

from __future__ import annotations

from fashionrec.serving import statistics


def _payload(name: str, count: int, executions: int, ns: dict[str, int], hits: int = 0) -> dict:
    phases = {phase: {"count": str(count), "ns": str(value)} for phase, value in ns.items()}
    return {"name": name, "version": "1", "execution_count": str(executions),
            "inference_stats": {**phases, "cache_hit": {"count": str(hits), "ns": "5"}}}


def test_counters_are_read_as_integers_summed_over_versions_and_differenced_per_window() -> None:
    before = statistics.parse_statistics({"model_stats": [
        _payload("rank", 10, 5, {"success": 10_000, "queue": 2_000, "compute_infer": 6_000}),
        _payload("idle", 3, 3, {"success": 300}),
    ]})
    after = statistics.parse_statistics({"model_stats": [
        _payload("rank", 30, 10, {"success": 70_000, "queue": 12_000, "compute_infer": 36_000}, hits=4),
        {**_payload("rank", 2, 1, {"success": 4_000}), "version": "2"},  # a second version, summed
        _payload("idle", 3, 3, {"success": 300}),
    ]})
    seen = statistics.window(before, after)
    assert set(seen) == {"rank"}  # "idle" served nothing in between
    rank = seen["rank"]
    assert (rank.requests, rank.executions) == (22, 6)  # 30 + 2 - 10, 10 + 1 - 5
    assert rank.mean_batch == 22 / 6
    assert rank.per_request_us("success") == (70_000 + 4_000 - 10_000) / 22 / 1e3
    assert rank.per_request_us("queue") == 10_000 / 22 / 1e3
    assert rank.per_request_us("compute_input") == 0.0  # absent counters are 0
    assert rank.cache_counts == {"cache_hit": 4, "cache_miss": 0}
    [(name, values)] = statistics.breakdown_rows(seen, ["missing", "rank"])
    assert name == "rank" and values[:3] == [22.0, 22 / 6, 64_000 / 22 / 1e3]

