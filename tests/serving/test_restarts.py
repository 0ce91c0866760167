"""Clean restarts on a REAL tritonserver: kill -9 of the wrapper takes the server and its python stubs
with it, frees the ports for the next start and leaves no shared memory behind (counted by df: a region
an orphaned stub still maps is invisible to ls)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from fashionrec.app.client import FashionrecClient, History, RecommendError
from fashionrec.repository.publish import PublishedModel
from fashionrec.serving.server import SHM_DIR, TritonServer, free_ports

WRAPPER = """
import sys, time
from fashionrec.config import ServingConfig
from fashionrec.serving.server import TritonServer
server = TritonServer(sys.argv[1], ServingConfig(), http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]),
                      metrics_port=int(sys.argv[4])).start()
print(server.pid, flush=True)
time.sleep(600)
"""
GONE_WITHIN_S = 30.0  # generous: the kernel signals at once, the stubs notice their parent's death


def _gone(check, within_s: float = GONE_WITHIN_S) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_kill_9_of_the_wrapper_leaves_no_server_no_stub_and_no_shm(published: PublishedModel) -> None:
    shm_before = shutil.disk_usage(SHM_DIR).used
    ports = free_ports("127.0.0.1", 3)
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, published.path, *map(str, ports)],
                               stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(wrapper.stdout.readline())  # once the server is ready
    finally:
        wrapper.send_signal(signal.SIGKILL)
        wrapper.wait()
    assert _gone(lambda: _group_gone(server_pid)), "tritonserver or a python stub outlived its wrapper"

    with TritonServer(published.path, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]) as server:
        assert list(SHM_DIR.glob(f"fashionrec_{wrapper.pid}_*")) == []  # the sweep removed the dead one's
        with FashionrecClient(server.grpc_url, "grpc") as client:
            assert len(client.recommend(History(["P000001", "P000002"]), 5)) == 5
    assert shutil.disk_usage(SHM_DIR).used <= shm_before + 1_000_000  # nothing mapped by an orphan


def test_clients_that_retry_lose_no_request_when_a_killed_server_is_restarted(published: PublishedModel) -> None:
    """A crash as a pod's supervisor sees it: tritonserver is killed (-9) under load and started again on
    its ports while gRPC clients keep asking; each unavailable moment is retried (serving.client_retries),
    so no request fails. (An HTTP request in flight at the kill can wait out client_timeout_s first.)"""
    ports = free_ports("127.0.0.1", 3)
    history = History(["P000001", "P000002"])
    answers: dict[str, list[int]] = {"grpc": [], "grpc, second client": []}
    failures: list[str] = []
    stop = threading.Event()

    def ask(name: str, url: str) -> None:
        with FashionrecClient(url, "grpc") as client:
            while not stop.is_set():
                try:
                    answers[name].append(len(client.recommend(history, 5)))
                except RecommendError as error:
                    failures.append(f"{name}: {error}")

    def answered(count: int) -> None:
        deadline = time.monotonic() + GONE_WITHIN_S
        while min(len(a) for a in answers.values()) < count:
            assert time.monotonic() < deadline, f"answers stalled at {[len(a) for a in answers.values()]}: {failures}"
            time.sleep(0.01)

    first = TritonServer(published.path, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]).start()
    threads = [threading.Thread(target=ask, args=(name, first.grpc_url)) for name in answers]
    for thread in threads:
        thread.start()
    try:
        answered(10)
        os.kill(first.pid, signal.SIGKILL)
        first.stop()  # reaps it, kills its stubs, sweeps its shm
        with TritonServer(published.path, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]):
            answered(min(len(a) for a in answers.values()) + 20)  # both clients answered by the new server
            stop.set()
            for thread in threads:
                thread.join()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and {n for a in answers.values() for n in a} == {5}
