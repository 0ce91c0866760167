"""Shared fixtures: a real, in-process Google Cloud Storage emulator."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from gcp_storage_emulator.server import create_server
from google.cloud import storage

EMULATOR_BUCKET = "fashionrec-test"


def _free_port() -> int:
    """A port nothing listens on right now (the OS picks it; tiny race until the emulator binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """``gs://<bucket>`` on a gcp-storage-emulator serving from memory on 127.0.0.1, for the session.

    STORAGE_EMULATOR_HOST points google-cloud-storage (and so Beam's gcsio and fashionrec.storage)
    at it, with anonymous credentials; the previous value is restored afterwards. TensorFlow's own
    gs:// filesystem ignores the variable and cannot reach the emulator. Tests share the bucket, so
    each should write under a prefix of its own.
    """
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
            storage.Client().create_bucket(EMULATOR_BUCKET)
            yield f"gs://{EMULATOR_BUCKET}"
    finally:
        server.stop()
