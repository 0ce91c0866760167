"""Numpy twin of the item tower's content path: a new product's raw fields -> its served embedding.

Why: a product launched after training has no id embedding, so the model places it by content alone
(``ItemTower.call`` for an out-of-vocabulary row: ``normalize(content) / sqrt(temperature)``). This
module computes exactly that, from the raw catalogue fields, without TensorFlow: the export stage
writes the tower's weights (:data:`WEIGHTS_FILE`) and the transform's vocabularies and price
analysers (:data:`FEATURES_FILE`); the Triton model ``embed_products`` and
:mod:`fashionrec.repository.catalogue` (adding products to a served catalogue) both run this code.
Part of :mod:`fashionrec.contract` (copied into every ``embed_products`` version folder under the same
import path), so it imports nothing but numpy and the standard library, and works under numpy 1.26
(Triton's stub) as under numpy 2.

The contract with ``fashionrec.stages.transform.make_preprocessing_fn`` (a test holds the two equal, for
catalogue products and for an unseen one with unknown tokens and category):

* text: ``title + " " + description``; ASCII letters lower-cased and nothing else (like
  ``tf.strings.lower``: "É" stays "É", the Kelvin sign stays, where Python's ``str.lower`` would make
  it "k"); every run of characters outside ``[a-z0-9]`` becomes one space; whitespace split; the first
  ``max_tokens`` tokens. Vocabulary lookups: index in the vocabulary file, unknown -> its size (one OOV
  bucket: with more, TFT hashes unknown values with FarmHash, which this twin does not do, so
  :func:`check_features` refuses such an export). Token ``t`` is stored as ``t + 1``; 0 pads.
* price: refused unless finite and >= 0 (TFT would clip a negative price to 0; ingest quarantines
  them); bucket = ``searchsorted(boundaries, price, "right")``, z = ``(log1p(price) - mean) /
  sqrt(var)`` (centred only when var is 0), in float32.
* tower: mean of the token embeddings (padding masked) ++ z ++ category, colour, brand and price
  bucket embeddings -> Dense(gelu) -> Dense -> l2-normalised (if the model normalises) -> divided by
  ``sqrt(temperature)``. Keras' ``gelu`` is the exact one (erf), numpy has no erf: ``math.erf``
  element-wise (8k values per 64 products: ~1 ms).
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "content_tower.npz"  # the content tower's weights (see WEIGHT_NAMES)
FEATURES_FILE = "content_features.json"  # vocabularies, price analysers, tower settings
FORMAT_VERSION = 1
CATEGORICAL = ("category", "colour", "brand")  # looked up in vocabularies, in ItemTower's concat order
WEIGHT_NAMES = ("tokens", "category", "colour", "brand", "price_bucket",
                "hidden_kernel", "hidden_bias", "output_kernel", "output_bias")
GELU_VARIANTS = ("erf", "tanh")  # Keras gelu(approximate=False) / gelu(approximate=True)
# ingest's defaults for missing optional fields (fashionrec.stages.ingest.CATALOGUE_OPTIONAL; a test checks)
DEFAULT_DESCRIPTION, DEFAULT_COLOUR, DEFAULT_BRAND = "", "unknown", "unknown"
L2_EPSILON = 1e-12  # tf.math.l2_normalize's floor on the squared norm

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_NOT_ALPHANUMERIC = re.compile("[^a-z0-9]+")


class ProductError(ValueError):
    """A product that cannot be embedded (e.g. a negative price); the message says which and why."""


@dataclass(frozen=True)
class ProductContent:
    """A product's raw catalogue fields, as ingest keeps them (missing optional fields: ingest's defaults)."""

    title: str
    category: str
    price: float
    description: str = DEFAULT_DESCRIPTION
    colour: str = DEFAULT_COLOUR
    brand: str = DEFAULT_BRAND


@dataclass(frozen=True)
class EncodedProducts:
    """Products as the tower reads them (the transformed features, in the catalogue's storage form)."""

    token_rows: np.ndarray  # int64 [B, max_tokens]: token index + 1, 0 = padding
    category: np.ndarray  # int64 [B] vocabulary index, unknown = vocabulary size
    colour: np.ndarray
    brand: np.ndarray
    price_bucket: np.ndarray  # int64 [B]
    price_z: np.ndarray  # float32 [B]


def tokenize(title: str, description: str, max_tokens: int) -> list[str]:
    """The transform's tokens of a product's text (see the module docstring)."""
    text = f"{title} {description}".translate(_ASCII_LOWER)
    return _NOT_ALPHANUMERIC.sub(" ", text).split()[:max_tokens]


def gelu(x: np.ndarray, variant: str = "erf") -> np.ndarray:
    """Keras' gelu in float64: exact ``0.5 x (1 + erf(x / sqrt 2))`` or its tanh approximation."""
    x = np.asarray(x, dtype=np.float64)
    if variant == "erf":
        erf = np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2.0)).astype(np.float64)
        return 0.5 * x * (1.0 + erf)
    if variant == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(f"gelu variant must be one of {GELU_VARIANTS}, got {variant!r}")


def check_prices(prices: Sequence[float] | np.ndarray) -> np.ndarray:
    """float32 prices; ProductError naming the first bad one unless every price is finite and >= 0."""
    values = np.asarray(prices, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise ProductError(f"PRICE must be finite and non-negative; product {int(bad[0])} has {values[bad[0]]}")
    return values.astype(np.float32)


def check_features(features: Mapping[str, object]) -> None:
    """Refuse a features file this twin cannot reproduce exactly (ValueError saying why)."""
    if features.get("format") != FORMAT_VERSION:
        raise ValueError(f"{FEATURES_FILE}: format {features.get('format')!r}, expected {FORMAT_VERSION}")
    if features.get("oov_buckets") != 1:
        raise ValueError(f"embed_products needs TransformConfig.vocab_oov_buckets=1 (TFT hashes unknown values "
                         f"into several buckets with FarmHash), got {features.get('oov_buckets')}")
    if features.get("gelu") not in GELU_VARIANTS:
        raise ValueError(f"{FEATURES_FILE}: gelu must be one of {GELU_VARIANTS}, got {features.get('gelu')!r}")
    missing = {"max_tokens", "temperature", "normalize", "vocabularies", "price"} - set(features)
    if missing:
        raise ValueError(f"{FEATURES_FILE} lacks {sorted(missing)}")


class ContentTower:
    """Raw product fields -> embeddings, as the trained tower gives a product without id embedding."""

    def __init__(self, features: Mapping[str, object], weights: Mapping[str, np.ndarray]) -> None:
        check_features(features)
        missing = set(WEIGHT_NAMES) - set(weights)
        if missing:
            raise ValueError(f"{WEIGHTS_FILE} lacks {sorted(missing)}")
        self.features = dict(features)
        self.weights = {name: np.asarray(weights[name], dtype=np.float32) for name in WEIGHT_NAMES}
        self.max_tokens = int(features["max_tokens"])  # type: ignore[arg-type]
        self.scale = np.float32(math.sqrt(float(features["temperature"])))  # type: ignore[arg-type]
        self.normalize = bool(features["normalize"])
        self.gelu_variant = str(features["gelu"])
        vocabularies: Mapping[str, Sequence[str]] = features["vocabularies"]  # type: ignore[assignment]
        self.index = {name: {value: i for i, value in enumerate(vocabularies[name])}
                      for name in ("tokens", *CATEGORICAL)}
        price: Mapping[str, object] = features["price"]  # type: ignore[assignment]
        self.boundaries = np.asarray(price["boundaries"], dtype=np.float32).reshape(-1)
        self.mean = np.float32(price["mean"])  # type: ignore[arg-type]
        self.var = np.float32(price["var"])  # type: ignore[arg-type]
        self._check_shapes()

    @property
    def dim(self) -> int:
        """Length of an embedding."""
        return int(self.weights["output_bias"].shape[0])

    def _check_shapes(self) -> None:
        """The weights must fit the vocabularies (a mismatched pair of files fails here, not per request)."""
        expected = {"tokens": len(self.index["tokens"]) + 2,  # + OOV bucket + padding row
                    **{name: len(self.index[name]) + 1 for name in CATEGORICAL},
                    "price_bucket": len(self.boundaries) + 1}
        for name, rows in expected.items():
            if self.weights[name].ndim != 2 or self.weights[name].shape[0] < rows:
                raise ValueError(f"{WEIGHTS_FILE}: {name} has shape {self.weights[name].shape}, needs {rows} rows")
        width = sum(self.weights[name].shape[1] for name in ("tokens", *CATEGORICAL, "price_bucket")) + 1
        if self.weights["hidden_kernel"].shape[0] != width:
            raise ValueError(f"{WEIGHTS_FILE}: hidden_kernel takes {self.weights['hidden_kernel'].shape[0]} "
                             f"inputs, the features make {width}")

    @classmethod
    def load(cls, folder: Path | str) -> ContentTower:
        """The tower saved in ``folder`` (:data:`FEATURES_FILE` + :data:`WEIGHTS_FILE`)."""
        folder = Path(folder)
        features = json.loads((folder / FEATURES_FILE).read_text(encoding="utf-8"))
        with np.load(folder / WEIGHTS_FILE) as weights:
            return cls(features, {name: weights[name] for name in weights.files})

    def save(self, folder: Path | str) -> None:
        """Write :data:`FEATURES_FILE` and :data:`WEIGHTS_FILE` into ``folder``."""
        write(Path(folder), self.features, self.weights)

    # -- features -----------------------------------------------------------------------------------
    def encode(self, titles: Sequence[str], descriptions: Sequence[str], categories: Sequence[str],
               colours: Sequence[str], brands: Sequence[str], prices: Sequence[float] | np.ndarray) -> EncodedProducts:
        """Raw field columns (one value per product) -> the transformed features."""
        columns = (titles, descriptions, categories, colours, brands)
        if len({len(column) for column in columns} | {len(np.asarray(prices).reshape(-1))}) != 1:
            raise ProductError("TITLE, DESCRIPTION, CATEGORY, COLOUR, BRAND and PRICE need one value per product")
        price = check_prices(prices)
        tokens = np.zeros((len(titles), self.max_tokens), np.int64)
        oov = len(self.index["tokens"])
        for row, (title, description) in enumerate(zip(titles, descriptions, strict=True)):
            found = [self.index["tokens"].get(t, oov) + 1 for t in tokenize(title, description, self.max_tokens)]
            tokens[row, : len(found)] = found
        looked_up = {name: self._lookup(name, values) for name, values in zip(CATEGORICAL, columns[2:], strict=True)}
        buckets = np.searchsorted(self.boundaries, price, side="right").astype(np.int64)
        centred = (np.log1p(price) - self.mean).astype(np.float32)
        std = np.sqrt(self.var)
        z = centred / std if std != 0 else centred
        return EncodedProducts(tokens, looked_up["category"], looked_up["colour"], looked_up["brand"], buckets,
                               z.astype(np.float32))

    def _lookup(self, name: str, values: Sequence[str]) -> np.ndarray:
        index = self.index[name]
        return np.fromiter((index.get(v, len(index)) for v in values), dtype=np.int64, count=len(values))

    # -- tower --------------------------------------------------------------------------------------
    def embed_encoded(self, encoded: EncodedProducts) -> np.ndarray:
        """float32 [B, dim]: the served embedding of products given as transformed features."""
        w = self.weights
        mask = (encoded.token_rows > 0).astype(np.float32)[..., None]
        pooled = (w["tokens"][encoded.token_rows] * mask).sum(axis=-2) / np.maximum(mask.sum(axis=-2), 1.0)
        parts = [pooled, encoded.price_z.reshape(-1, 1)]
        parts += [w[name][getattr(encoded, name)] for name in (*CATEGORICAL, "price_bucket")]
        hidden = gelu(np.concatenate(parts, axis=-1).astype(np.float32) @ w["hidden_kernel"] + w["hidden_bias"],
                      self.gelu_variant).astype(np.float32)
        content = hidden @ w["output_kernel"] + w["output_bias"]
        if self.normalize:
            squared = np.maximum((content * content).sum(axis=-1, keepdims=True), np.float32(L2_EPSILON))
            content = content / np.sqrt(squared)
        return (content / self.scale).astype(np.float32)

    def embed_columns(self, titles: Sequence[str], descriptions: Sequence[str], categories: Sequence[str],
                      colours: Sequence[str], brands: Sequence[str],
                      prices: Sequence[float] | np.ndarray) -> np.ndarray:
        """float32 [B, dim] from raw field columns (what the Triton model receives)."""
        return self.embed_encoded(self.encode(titles, descriptions, categories, colours, brands, prices))

    def embed(self, products: Sequence[ProductContent]) -> np.ndarray:
        """float32 [B, dim] for products given as records."""
        return self.embed_columns([p.title for p in products], [p.description for p in products],
                                  [p.category for p in products], [p.colour for p in products],
                                  [p.brand for p in products], [p.price for p in products])


def write(folder: Path, features: Mapping[str, object], weights: Mapping[str, np.ndarray]) -> None:
    """Write a content tower's two files into ``folder`` (checked by loading them back)."""
    folder.mkdir(parents=True, exist_ok=True)
    ContentTower(features, weights)  # refuse an inconsistent pair before writing
    (folder / FEATURES_FILE).write_text(json.dumps(features, ensure_ascii=False), encoding="utf-8")
    with open(folder / WEIGHTS_FILE, "wb") as stream:
        np.savez(stream, **{name: np.asarray(weights[name], np.float32) for name in WEIGHT_NAMES})


def exists(folder: Path | str) -> bool:
    """Whether ``folder`` holds a content tower."""
    return (Path(folder) / FEATURES_FILE).is_file() and (Path(folder) / WEIGHTS_FILE).is_file()
