"""One-line errors, exit status 3, for a Triton that cannot be reached or refuses the caller.

Real parts: a port nothing listens on (the connection is refused), and a real HTTP server standing in for an
authenticating proxy in front of Triton that answers 401 or 403 to every request.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from fashionrec.app.cli import main
from fashionrec.config import ServingConfig

NO_RETRIES = ServingConfig(client_retries=0)  # the root context's ServingConfig: fail on the first refusal
EMBED = ["embed-products", "--title", "Linen shirt", "--category", "shirts", "--price", "49.9"]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on once the probe is closed: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_unreachable_triton_is_one_line_with_exit_3(closed_port, protocol):
    result = CliRunner().invoke(main, [*EMBED, "--url", f"127.0.0.1:{closed_port}", "--protocol", protocol],
                                obj=NO_RETRIES)
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot reach Triton")
    assert f"127.0.0.1:{closed_port}" in line and "Connection refused" in line
    assert result.stdout == ""


@pytest.fixture
def refusing_proxy() -> Iterator[dict[str, Any]]:
    """An HTTP server answering every request with ``state["status"]`` and a JSON error, recording paths."""
    state: dict[str, Any] = {"status": 403, "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state["paths"].append(self.path)
            body = json.dumps({"error": "RBAC: access denied"}).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [401, 403])
def test_a_triton_behind_a_refusing_proxy_is_one_line_with_exit_3(refusing_proxy, status):
    refusing_proxy["status"] = status
    result = CliRunner().invoke(main, [*EMBED, "--url", refusing_proxy["url"], "--protocol", "http"], obj=NO_RETRIES)
    assert result.exit_code == 3, result.output
    assert refusing_proxy["paths"] == [f"/v2/models/{ServingConfig().embed_model_name}/infer"]
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"Error: Triton refused the request ({status}): {ServingConfig().embed_model_name} at "
                    f"{refusing_proxy['url']} (http): RBAC: access denied")


def test_a_server_error_is_still_exit_1(refusing_proxy):
    refusing_proxy["status"] = 400  # a refused request, not a refused caller
    result = CliRunner().invoke(main, [*EMBED, "--url", refusing_proxy["url"], "--protocol", "http"], obj=NO_RETRIES)
    assert result.exit_code == 1, result.output
    assert "RBAC: access denied" in result.stderr and "Traceback" not in result.output


def test_an_unreachable_shop_service_is_one_line_with_exit_3(closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    result = CliRunner().invoke(main, ["simulate", "--shop-url", url, "--size", "small",
                                       "--set", "simulation.days=1", "--set", "simulation.visitors_per_day=1"])
    assert result.exit_code == 3, result.output
    (line,) = [text for text in result.stderr.strip().splitlines() if text.startswith("Error")]
    assert line.startswith(f"Error: cannot reach the shop service at {url}")
