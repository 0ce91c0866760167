"""fashionrec: a production recommender workflow for fashion e-commerce.

The whole project uses Keras 2 (``tf_keras``): tensorflow-transform switches a process to it on import
and tensorflow-recommenders requires it, so we choose it explicitly before TensorFlow is ever imported.
This module stays import-light: Triton model code and the CLI import parts of the package without
TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
