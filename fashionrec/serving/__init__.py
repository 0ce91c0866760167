"""Serving half of fashionrec: the served repository's versions and catalogue, the server runner and
the CLI. The code that runs inside Triton is the contract, :mod:`fashionrec.contract`.

Modules (import the one you need; this package imports nothing so that the CLI stays light, and
nothing here imports TensorFlow):

- :mod:`fashionrec.repository.catalogue`: add new products or refresh the popularity prior, without retraining.
- :mod:`fashionrec.serving.environment`: the pinned venv Triton's python backend runs in.
- :mod:`fashionrec.serving.server`: ``TritonServer``, a real tritonserver process as a context manager.
- :mod:`fashionrec.repository.versions`: pinned versions, hot loading into a running server, rollback.
- :mod:`fashionrec.app.serving_commands`: the ``serve``, ``model rollback``, ``catalogue add|refresh-prior`` and
  ``embed-products`` commands and the result tables.
"""
