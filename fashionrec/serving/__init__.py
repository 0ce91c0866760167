"""Serving half of fashionrec: Triton model code helpers, the server runner, the client and the CLI.

Modules (import the one you need; this package imports nothing so that Triton's model code and the
CLI stay light, and nothing here imports TensorFlow):

- :mod:`fashionrec.serving.ops`: numpy-only customer vector and top-k ranking, shared with Triton.
- :mod:`fashionrec.serving.content`: numpy-only twin of the item tower's content path (``embed_products``).
- :mod:`fashionrec.serving.catalogue`: add new products or refresh the popularity prior, without retraining.
- :mod:`fashionrec.serving.environment`: the pinned venv Triton's python backend runs in.
- :mod:`fashionrec.serving.server`: ``TritonServer``, a real tritonserver process as a context manager.
- :mod:`fashionrec.serving.scoring`: the served table's dot products (numpy/BLAS, or CuPy on a GPU).
- :mod:`fashionrec.serving.versions`: pinned versions, hot loading into a running server, rollback.
- :mod:`fashionrec.serving.client`: kept for old imports; the client is :mod:`fashionrec.client`.
- :mod:`fashionrec.serving.cli`: the ``serve``, ``model rollback``, ``catalogue add|refresh-prior`` and
  ``embed-products`` commands and the result tables.
"""
