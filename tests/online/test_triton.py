"""The service's gRPC client of Triton: the wire format by hand, then the real server's answers and refusals."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pandas as pd
import pytest

from fashionrec.app.client import FashionrecClient
from fashionrec.config import OnlineConfig, ServingConfig
from fashionrec.online.triton import Touchpoints, TritonRefused, TritonUnavailable, WireFormat
from fashionrec.serving import requests
from fashionrec.serving.requests import History


def test_bytes_go_as_length_then_utf8_and_numbers_little_endian():
    wire = WireFormat()
    assert wire.contents(requests.text(["ab", "é"]), "BYTES") == b"\x02\x00\x00\x00ab" + b"\x02\x00\x00\x00\xc3\xa9"
    assert wire.contents(np.array([[b"P1", 7]], np.object_), "BYTES") == b"\x02\x00\x00\x00P1\x01\x00\x00\x007"
    assert wire.contents(np.array([[1, 256]], np.int64), "INT64") == struct.pack("<qq", 1, 256)
    assert wire.contents(np.array([[True]]), "BOOL") == b"\x01"
    assert wire.contents(np.array([[1.5]], np.dtype(">f4")), "FP32") == struct.pack("<f", 1.5)  # big-endian in


def test_known_ids_are_dropped_all_at_once_past_the_capacity():
    wire = WireFormat(capacity=2)
    one = b"\x01\x00\x00\x00"
    assert wire.contents(requests.text(["a", "b", "a"]), "BYTES") == one + b"a" + one + b"b" + one + b"a"
    assert wire.contents(requests.text(["c"]), "BYTES") == one + b"c"  # the third id: a fresh start
    assert list(wire._known) == ["c"]


def test_a_request_names_each_input_with_its_shape_and_asks_for_the_ranked_outputs():
    tensors = requests.recommend_tensors(History(["P1", "P2"], ["click", "purchase"]), 3, ServingConfig(),
                                         exclude_seen=True)
    request = WireFormat().request("recommend", tensors)
    assert request.model_name == "recommend"
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("HISTORY_PRODUCT_IDS", "BYTES", [1, 2]), ("HISTORY_EVENT_TYPES", "BYTES", [1, 2]),
        ("TOP_K", "INT32", [1, 1]), ("EXCLUDE_SEEN", "BOOL", [1, 1])]
    assert request.raw_input_contents[0] == b"\x02\x00\x00\x00P1\x02\x00\x00\x00P2"
    assert request.raw_input_contents[2] == struct.pack("<i", 3)
    assert [o.name for o in request.outputs] == list(requests.RANKED_OUTPUTS)


def _touchpoints(url: str, timeout_s: float = 5.0) -> Touchpoints:
    return Touchpoints(OnlineConfig(triton_url=url, triton_timeout_s=timeout_s), ServingConfig())


def _ask(url: str, call, timeout_s: float = 5.0):
    async def run():
        touchpoints = _touchpoints(url, timeout_s)
        try:
            return await call(touchpoints)
        finally:
            await touchpoints.close()
    return asyncio.run(run())


def test_each_touchpoint_answers_as_the_typed_client_does(shop_triton, shop_files):
    history = History(shop_files.events["product_id"].head(30).tolist(),
                      shop_files.events["event_type"].head(30).tolist(), request_time=1_800_000_000)
    products = shop_files.frame["product_id"].tolist()
    with FashionrecClient(shop_triton.grpc_url) as typed:
        expected = {"recommend": typed.recommend(history, k=7, exclude_seen=True),
                    "rerank": typed.rerank(history, products[:40]),
                    "similar": typed.similar(products[3], history, k=5)}
    answers = _ask(shop_triton.grpc_url, lambda t: asyncio.gather(
        t.recommend(history, 7, exclude_seen=True), t.rerank(history, products[:40]),
        t.similar(products[3], history, 5)))
    for (name, want), got in zip(expected.items(), answers, strict=True):
        assert list(got.product_ids) == [r.product_id for r in want], name
        np.testing.assert_allclose(got.scores, [r.score for r in want], rtol=1e-6, err_msg=name)
        assert got.model_version == 1


def test_a_request_triton_refuses_raises_refused_with_tritons_reason(shop_triton):
    with pytest.raises(TritonRefused, match="unknown product ids in HERO_PRODUCT_ID: .PNOSUCH.") as refused:
        _ask(shop_triton.grpc_url, lambda t: t.similar("PNOSUCH", History(["PNOSUCH"]), 5))
    assert str(refused.value).startswith("similar: ")


def test_a_triton_that_is_not_there_is_unavailable(closed_port):
    with pytest.raises(TritonUnavailable, match=f"127.0.0.1:{closed_port}"):
        _ask(f"127.0.0.1:{closed_port}", lambda t: t.recommend(History(["P1"]), 3), timeout_s=2.0)


# -- natural batching: requests in flight together go as one request's rows ------------------------------

def _batching(url: str, rows: int, observed: list[int] | None = None) -> Touchpoints:
    """A client that batches up to ``rows`` requests, with one call of a kind in flight at a time: of n
    requests sent together, the first goes alone and the other n - 1 as one batch."""
    online = OnlineConfig(triton_url=url, triton_timeout_s=5.0, triton_batch_rows=rows, triton_batch_calls=1)
    return Touchpoints(online, ServingConfig(), observe_batch=None if observed is None else observed.append)


def _together(touchpoints: Touchpoints, calls) -> list:
    """``calls(touchpoints)`` (coroutines) sent at once; each one's answer or error."""
    async def run():
        try:
            return await asyncio.gather(*calls(touchpoints), return_exceptions=True)
        finally:
            await touchpoints.close()
    return asyncio.run(run())


def _histories(shop_files, lengths: list[int]) -> list[History]:
    """Histories of the given lengths, with event types and timestamps, cut from the shop's past events."""
    events, start, histories = shop_files.events, 0, []
    for length in lengths:
        rows = events.iloc[start:start + length]
        start += length
        stamps = (rows["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        histories.append(History(rows["product_id"].tolist(), rows["event_type"].tolist(), stamps.tolist(),
                                 request_time=1_800_000_000))
    return histories


def _assert_same_answers(got: list, want: list) -> None:
    assert len(got) == len(want)
    for batched, alone in zip(got, want, strict=True):
        assert batched.product_ids == alone.product_ids
        np.testing.assert_allclose(batched.scores, alone.scores, rtol=1e-6)
        assert batched.model_version == alone.model_version


def test_requests_in_flight_together_go_as_one_batch_and_each_row_answers_as_alone(shop_triton, shop_files):
    """Six histories of one length class (33-63 events: padded at the front to 63; the pooling window is 50,
    so the padding is pooled for the shorter ones and ignored), with and without a candidate set."""
    histories = _histories(shop_files, [35, 63, 40, 50, 58, 33])

    def calls(touchpoints):
        return [*(touchpoints.recommend(h, 7, exclude_seen=True) for h in histories),
                *(touchpoints.recommend(h, 5, candidate_set="sale", exclude_seen=True) for h in histories)]

    batches: list[int] = []
    batched = _together(_batching(shop_triton.grpc_url, 8, batches), calls)
    alone = _together(_batching(shop_triton.grpc_url, 1), calls)
    assert sorted(batches) == [1, 1, 5, 5]  # per lane (k 7; k 5 among the sale set): one alone, then five as one
    _assert_same_answers(batched, alone)
    assert all(len(r.product_ids) == 5 and set(r.product_ids) <= set(shop_files.frame["product_id"][::5])
               for r in batched[6:])


def test_a_batch_triton_refuses_is_asked_row_by_row_so_only_the_bad_request_fails(shop_triton, shop_files):
    histories = _histories(shop_files, [40, 41, 42, 43, 44])
    products = shop_files.frame["product_id"].tolist()
    heroes = [products[3], products[4], "PNOSUCH", products[6], products[7]]

    def calls(touchpoints):
        return [touchpoints.similar(hero, history, 5) for hero, history in zip(heroes, histories, strict=True)]

    batches: list[int] = []
    batched = _together(_batching(shop_triton.grpc_url, 8, batches), calls)
    alone = _together(_batching(shop_triton.grpc_url, 1), calls)
    assert batches == [1, 4, 1, 1, 1, 1]  # the batch of four refused, then each of the four alone
    assert isinstance(batched[2], TritonRefused) and "PNOSUCH" in str(batched[2])
    _assert_same_answers(batched[:2] + batched[3:], alone[:2] + alone[3:])


def test_a_batch_cut_short_of_k_is_asked_row_by_row(shop_triton, shop_files):
    """k = the whole sale set (48): a customer who saw some of it gets fewer; alone, each row keeps its own."""
    sale = shop_files.frame["product_id"].tolist()[::5]
    histories = [History(sale[:n] + ["P-unknown"] * (40 - n), request_time=1_800_000_000) for n in (0, 3, 1, 5)]

    def calls(touchpoints):
        return [touchpoints.recommend(h, len(sale), candidate_set="sale", exclude_seen=True) for h in histories]

    batches: list[int] = []
    batched = _together(_batching(shop_triton.grpc_url, 8, batches), calls)
    assert batches == [1, 3, 1, 1, 1]
    assert [len(r.product_ids) for r in batched] == [48, 45, 47, 43]
    _assert_same_answers(batched, _together(_batching(shop_triton.grpc_url, 1), calls))


def test_every_request_waiting_on_a_triton_that_is_not_there_is_unavailable(closed_port):
    histories = [History([f"P{i}", "P2"], request_time=1_800_000_000) for i in range(4)]
    batches: list[int] = []
    answers = _together(_batching(f"127.0.0.1:{closed_port}", 8, batches),
                        lambda t: [t.recommend(h, 3) for h in histories])
    assert batches == [1, 3] and all(isinstance(a, TritonUnavailable) for a in answers)


def test_an_unexpected_error_in_a_batch_reaches_every_caller_of_it(shop_triton, shop_files, monkeypatch):
    """A fault of ours while building the batch (injected here) must not leave its callers waiting."""
    def broken(requests_):
        raise RuntimeError("batch could not be built")

    monkeypatch.setattr("fashionrec.online.triton.batching.stack", broken)
    histories = _histories(shop_files, [40, 41, 42, 43])
    answers = _together(_batching(shop_triton.grpc_url, 8),
                        lambda t: [asyncio.wait_for(t.recommend(h, 5), timeout=10.0) for h in histories])
    assert answers[0].product_ids  # alone: no batch to build
    assert all(isinstance(a, RuntimeError) and "could not be built" in str(a) for a in answers[1:])
