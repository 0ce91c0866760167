"""The service's gRPC client of Triton: the wire format by hand, then the real server's answers and refusals."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
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
