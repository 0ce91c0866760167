"""Connections to a running Triton server over gRPC or HTTP (tritonclient), for the typed client
(:mod:`fashionrec.app.client`) and for loading versions through the repository API
(:mod:`fashionrec.repository.versions`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from fashionrec.config import ServingConfig

Protocol = Literal["grpc", "http"]
# A gRPC channel whose server went away waits before connecting again, by default up to 120 s and growing
# with each failure, and fails every call meanwhile: a restarted server (back within seconds) would stay
# unreachable. Reconnect within a second instead.
GRPC_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 1000)]
# Spread calls over every address the target resolves to (a headless Service's pod IPs: `dns:///host:port`),
# one call at a time, instead of pinning the channel to the first; one address behaves as before.
GRPC_ROUND_ROBIN = [("grpc.lb_policy_name", "round_robin")]
# Given channel options, tritonclient drops its own: keep its unlimited message sizes (a 10,000-id history).
GRPC_MESSAGE_LIMITS = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]


GRPC_CHANNEL_ARGS = GRPC_MESSAGE_LIMITS + GRPC_RECONNECT + GRPC_ROUND_ROBIN  # every gRPC channel to Triton


def tritonclient_module(protocol: Protocol) -> Any:
    """The tritonclient module for a protocol (imported lazily: each pulls in its own stack)."""
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    return module


WEB_SCHEMES = ("http://", "https://", "grpc://")  # dropped from a URL; gRPC's own targets (dns:///...) are kept


def server_address(url: str) -> str:
    """``host:port`` of ``http://host:port`` (or ``grpc://``); any other text as it is, e.g. a gRPC target
    such as ``dns:///fashionrec-triton-grpc:8001``."""
    for scheme in WEB_SCHEMES:
        if url.startswith(scheme):
            return url[len(scheme):]
    return url


def raw_client(module: Any, url: str, protocol: Protocol, timeout_s: float) -> Any:
    """An InferenceServerClient of ``module`` (HTTP takes the timeout at connection; gRPC per call). A gRPC
    ``url`` may be any gRPC target: ``host:port``, ``dns:///host:port`` or ``ipv4:a:p,b:q``."""
    if protocol == "http":
        return module.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
    return module.InferenceServerClient(url, channel_args=GRPC_CHANNEL_ARGS)


@contextmanager
def connect_raw(url: str, protocol: Protocol = "grpc",
                timeout_s: float = ServingConfig().client_timeout_s) -> Iterator[Any]:
    """A plain tritonclient InferenceServerClient (repository API: load/unload), closed afterwards."""
    client = raw_client(tritonclient_module(protocol), server_address(url), protocol, timeout_s)
    try:
        yield client
    finally:
        client.close()


RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")  # Triton's names for its admin APIs
GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"  # Triton expects a restricted gRPC protocol's header so named


def admin_key(serving: ServingConfig) -> str | None:
    """The admin APIs' key from ``serving.admin_key_env``; None when the APIs are not restricted."""
    return os.environ.get(serving.admin_key_env) or None


def admin_headers(serving: ServingConfig, protocol: Protocol) -> dict[str, str] | None:
    """The header a request to a restricted admin API carries (None: no key configured)."""
    key = admin_key(serving)
    if key is None:
        return None
    prefix = GRPC_RESTRICTED_PREFIX if protocol == "grpc" else ""
    return {f"{prefix}{serving.admin_key_header}": key}


def restriction_flags(serving: ServingConfig) -> list[str]:
    """tritonserver arguments that restrict the admin APIs to requests with the key (none without one)."""
    key = admin_key(serving)
    if key is None:
        return []
    rule = f"{','.join(RESTRICTED_APIS)}:{serving.admin_key_header}={key}"
    return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
