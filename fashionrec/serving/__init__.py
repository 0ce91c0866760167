"""Serving half of fashionrec: Triton model code helpers, the server runner, the client and the CLI.

Modules (import the one you need; this package imports nothing so that Triton's model code and the
CLI stay light, and nothing here imports TensorFlow):

- :mod:`fashionrec.serving.ops`: numpy-only customer vector and top-k ranking, shared with Triton.
- :mod:`fashionrec.serving.environment`: the pinned venv Triton's python backend runs in.
- :mod:`fashionrec.serving.server`: ``TritonServer``, a real tritonserver process as a context manager.
- :mod:`fashionrec.serving.client`: ``RecommendClient`` for the ``recommend`` ensemble (gRPC or HTTP).
- :mod:`fashionrec.serving.cli`: the ``serve`` command and ``print_recommendations``.
"""
