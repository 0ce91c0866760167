"""Triton's admin APIs restricted to a key on a REAL tritonserver: nobody without it can load or unload
models (and so run code from a repository), while inference stays open and fashionrec's own version
switches carry the key."""

from __future__ import annotations

import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from fashionrec.app.client import FashionrecClient, History
from fashionrec.config import ServingConfig
from fashionrec.repository import versions
from fashionrec.repository.publish import PublishedModel
from fashionrec.serving.server import TritonServer

KEY = "a-test-secret"


def test_admin_apis_answer_only_requests_with_the_key(published: PublishedModel,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    serving = ServingConfig()
    monkeypatch.setenv(serving.admin_key_env, KEY)
    with TritonServer(published.path, serving, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        http = triton_http.InferenceServerClient(server.http_url)
        grpc = triton_grpc.InferenceServerClient(server.grpc_url)
        try:
            with pytest.raises(InferenceServerException, match="restricted, expecting header 'admin-key'"):
                http.unload_model(serving.model_name)
            with pytest.raises(InferenceServerException, match="triton-grpc-protocol-admin-key"):
                grpc.load_model(serving.model_name)
            with pytest.raises(InferenceServerException, match="restricted"):
                http.load_model(serving.model_name, headers={"admin-key": "a wrong key"})
            assert http.is_model_ready(serving.model_name)  # nothing was unloaded
        finally:
            http.close()
            grpc.close()
        for protocol, url in (("grpc", server.grpc_url), ("http", server.http_url)):
            versions.load_models(url, serving, protocol)  # fashionrec's own switches send the key
        with FashionrecClient(server.grpc_url, "grpc", serving) as client:  # inference needs no key
            assert len(client.recommend(History(["P000001"]), 3)) == 3
