"""Triton's BYTES wire format decoded by the contract: element for element what the backend's own loop gives."""

from __future__ import annotations

import struct
import types

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor as client_decoder

from fashionrec.contract import wire


def _wire(elements: list[bytes]) -> np.ndarray:
    """A BYTES tensor as the stub hands it over: each element's uint32 little-endian length, then its bytes."""
    return np.frombuffer(b"".join(struct.pack("<I", len(e)) + e for e in elements), dtype=np.uint8)


@pytest.mark.parametrize("elements", [
    [],
    [b"P000001", b"P000002", b"P000003"],  # one length: numpy's fixed-width path
    [b"click", b"add_to_bag", b"purchase"],  # mixed lengths
    [b"", b""],  # empty elements (a padded batch's unknown id)
    [b"", b"P1", b""],
    [b"a\x00", b"b\x00"],  # one length, but a trailing NUL that fixed-width bytes would drop
    [b"\x00a", b"\x00b"],  # a leading NUL is kept either way
    ["caf\u00e9".encode(), "r\u00f6d".encode()],  # UTF-8 of different character counts, one byte length
    [b"x" * 70_000],  # longer than 16 bits
])
def test_elements_come_back_in_order_as_bytes(elements):
    decoded = wire.deserialize_bytes_tensor(_wire(elements))
    assert decoded.dtype == np.object_ and decoded.shape == (len(elements),)
    assert decoded.tolist() == elements
    assert all(type(element) is bytes for element in decoded)


def test_a_random_tensor_decodes_as_tritons_own_decoder_does():
    rng = np.random.default_rng(7)
    for _ in range(200):
        width = int(rng.integers(0, 6))
        same = rng.random() < 0.5
        elements = [bytes(rng.integers(0, 256, size=width if same else int(rng.integers(0, 6)), dtype=np.uint8))
                    for _ in range(int(rng.integers(0, 12)))]
        encoded = _wire(elements)
        assert wire.deserialize_bytes_tensor(encoded).tolist() == client_decoder(encoded.tobytes()).tolist()


def test_install_replaces_the_stubs_decoder_by_name():
    pb_utils = types.ModuleType("triton_python_backend_utils")
    pb_utils.deserialize_bytes_tensor = client_decoder
    wire.install(pb_utils)
    assert pb_utils.deserialize_bytes_tensor is wire.deserialize_bytes_tensor
