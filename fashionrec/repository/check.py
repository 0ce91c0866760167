"""A version is read as its Triton models will read it before any config or manifest names it.

Why: Triton switches a pinned config to whatever folder it names. A truncated embeddings file, NaN
rows, a row count that is not the id count or a candidate set naming unknown products would then
take a touchpoint down (poll mode: every pod), or be served silently. The checks are the Triton
models' own loaders (:mod:`fashionrec.contract.layout`, the content tower, the context tables, the
candidate sets' lookup), so a version that passes here loads there; what they refuse is named with its file.
"""

from __future__ import annotations

from pathlib import Path

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.contract import content, context, layout, ops, validation

MODEL_FILE = "model.py"
CONTRACT_MODULE = Path("fashionrec") / "contract" / "ops.py"  # present when the contract was copied


class InvalidVersion(ValueError):
    """A version that must not be served; the message names the model, the file and the fault."""


def check_version(repository: str, version: int, serving: ServingConfig) -> None:
    """Read every python model's folder of ``version`` (local or gs://) with the serving code's own
    loaders; InvalidVersion naming the first fault. ``embed_products`` may be absent (versions published
    before it existed); every other model must be there, each catalogue the same."""
    shapes = {}
    for model in (serving.customer_model_name, serving.blend_model_name, serving.ranking_model_name,
                  serving.embed_model_name):
        uri = storage.join(str(repository), model, str(version))
        if not storage.exists(uri):
            if model == serving.embed_model_name:
                continue
            raise InvalidVersion(f"version {version}: {model}/{version} is missing")
        with storage.local_copy(uri) as local:
            try:
                shapes[model] = _check_folder(Path(local), model, serving)
            except (ValueError, KeyError, OSError) as error:  # CorruptVersion and RequestError are ValueErrors
                raise InvalidVersion(f"version {version}: {model}: {error}") from None
    catalogues = {model: shape for model, shape in shapes.items() if shape is not None}
    if len(set(catalogues.values())) > 1:
        raise InvalidVersion(f"version {version}: the models' catalogues differ: {catalogues}")


def _check_folder(folder: Path, model: str, serving: ServingConfig) -> tuple[int, int] | None:
    """One version folder; the (products, dimensions) of its catalogue, None for ``embed_products``."""
    for required in (MODEL_FILE, CONTRACT_MODULE):
        if not (folder / required).is_file():
            raise layout.CorruptVersion(f"{required} is missing")
    if model == serving.embed_model_name:
        if content.exists(folder):
            content.ContentTower.load(folder)
        return None
    embeddings, ids = layout.load_catalogue(folder)
    pools = model == serving.customer_model_name or (  # rank_products pools since 2026-12; older ones do not
        model == serving.ranking_model_name and (folder / layout.AGGREGATION_FILE).exists())
    if pools:
        aggregation = layout.load_json(folder / layout.AGGREGATION_FILE)
        if aggregation.get("pooling") not in ops.POOLINGS:
            raise layout.CorruptVersion(f"{layout.AGGREGATION_FILE}: pooling must be one of {ops.POOLINGS}")
        context.load(folder, embeddings.shape[1])  # the version's context tables, if any
    if model == serving.ranking_model_name:
        layout.load_prior(folder, len(ids))
        sets_file = folder / layout.CANDIDATE_SETS_FILE
        index = {pid: row for row, pid in enumerate(ids)}
        for name, members in (layout.load_json(sets_file) if sets_file.exists() else {}).items():
            validation.known_rows(index, [str(p).encode("utf-8") for p in members], f"candidate set {name!r}")
    return embeddings.shape

