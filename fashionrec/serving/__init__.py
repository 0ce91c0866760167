"""Serving: a running tritonserver and the connections to it. The code that runs inside Triton is the
contract, :mod:`fashionrec.contract`; the model repository it serves is :mod:`fashionrec.repository`.

Modules (import the one you need; this package imports nothing so that the CLI stays light, and
nothing here imports TensorFlow):

- :mod:`fashionrec.serving.environment`: the pinned venv Triton's python backend runs in.
- :mod:`fashionrec.serving.server`: ``TritonServer``, a real tritonserver process as a context manager.
- :mod:`fashionrec.serving.connection`: gRPC / HTTP connections (round robin, reconnects, admin headers).
- :mod:`fashionrec.serving.requests`: the request tensors of every touchpoint, for every client.
- :mod:`fashionrec.serving.canary`: readiness that asks every touchpoint a real question (``serve-canary``).
"""
