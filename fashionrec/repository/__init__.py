"""The Triton model repository, owned here and only here: its layout and manifest (``manifest``),
publishing a blessed version (``publish``), which version is served and rollbacks (``versions``),
catalogue updates without retraining (``catalogue``) and reading back the served version (``served``).

Every module works on local and ``gs://`` repositories through :mod:`fashionrec.storage`.
"""
