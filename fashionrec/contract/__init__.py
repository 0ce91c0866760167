"""The serving contract: numpy-only code that runs inside Triton's python models AND in-process.

Why a package of its own: the customer vector, the ranking and the content tower must be computed
identically in Triton, in offline evaluation and in tests. Triton's python backend runs an isolated
interpreter that sees only the model's version folder, so publishing copies this package there under
the same import path (``<version>/fashionrec/contract/``, :func:`fashionrec.repository.publish.copy_contract`):
the Triton models import ``fashionrec.contract.ops`` exactly as the rest of the package does. Its
modules therefore import nothing but numpy, the standard library and each other.

- :mod:`~fashionrec.contract.ops`: history pooling and exact top-k ranking.
- :mod:`~fashionrec.contract.validation`: checks of a Triton request's inputs (each failure is that
  request's error).
- :mod:`~fashionrec.contract.layout`: the version folder's file names and their loaders.
- :mod:`~fashionrec.contract.scoring`: the served table's dot products and exact top-k (numpy/BLAS).
- :mod:`~fashionrec.contract.device`: the same on a GPU (CuPy, cuBLAS), for ``KIND_GPU`` instances.
- :mod:`~fashionrec.contract.content`: the item tower's content path in numpy (``embed_products``).
- :mod:`~fashionrec.contract.wire`: Triton's BYTES inputs decoded at numpy speed in the python models.
"""
