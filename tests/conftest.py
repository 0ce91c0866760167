"""Shared fixtures: a real, in-process Google Cloud Storage emulator, and its uploads made to honour
``ifGenerationMatch`` as GCS does."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

import pytest
from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
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


@dataclass
class GcsPreconditions:
    """What :func:`gcs_preconditions` saw and what it stages: ``conditional`` lists (object, expected
    generation) of every conditional upload; ``refused`` the objects it answered 412; ``races`` maps an
    object name to bytes another writer puts there just before that object's conditional upload is handled."""

    conditional: list[tuple[str, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    races: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture
def gcs_preconditions(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsPreconditions]:
    """The emulator's object uploads answer 412 when ``ifGenerationMatch`` is not the object's generation (0:
    it must not exist), as GCS does; gcp-storage-emulator accepts the parameter but does not enforce it."""
    seen = GcsPreconditions()
    original = objects.insert

    def insert(request, response, backend, *args, **kwargs):
        expected = request.query.get("ifGenerationMatch")
        if expected is not None:
            bucket = request.params["bucket_name"]
            name = request.query["name"][0] if "name" in request.query else request.data["meta"]["name"]
            seen.conditional.append((name, int(expected[0])))
            if name in seen.races:
                content = seen.races.pop(name)
                resource = objects._checksums(content, objects._make_object_resource(
                    request.base_url, bucket, name, "application/json", str(len(content))))
                backend.create_file(bucket, name, content, resource)
            try:
                current = int(backend.get_file_obj(bucket, name)["generation"])
            except NotFound:
                current = 0
            if current != int(expected[0]):
                seen.refused.append(name)
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
        return original(request, response, backend, *args, **kwargs)

    for _, handlers in emulator_server.HANDLERS:
        if handlers.get(emulator_server.POST) is original:
            monkeypatch.setitem(handlers, emulator_server.POST, insert)
    monkeypatch.setattr(objects, "insert", insert)
    yield seen
