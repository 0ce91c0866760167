"""Publish blessed product embeddings as a versioned Triton model repository.

Layout written (names from ServingConfig; every model gets the same version number ``v``)::

    <repo>/fashionrec_manifest.json              versions (with their configs), latest, served, metadata
    <repo>/customer_vector/config.pbtxt          rendered from triton_models/customer_vector, versions pinned
    <repo>/customer_vector/<v>/model.py          + product_embeddings.npy, product_ids.txt, aggregation.json
                                                   (history pooling), fashionrec/contract/ (the serving contract)
                                                   and, when the export has them, the context tables (context.json)
    <repo>/rank_products/<v>/model.py            + the same catalogue files, pooling settings and context
                                                   tables (it pools `recommend`'s and `rerank`'s histories
                                                   itself), candidate_sets.json
    <repo>/blend_hero/<v>/model.py               + the same catalogue files (`similar`'s hero blend)
    <repo>/embed_products/<v>/model.py           + fashionrec/contract/ and, when the export has one, the
                                                   content tower (content_tower.npz, content_features.json)
    <repo>/recommend|rerank|similar/config.pbtxt the ensembles, every step pinned to the served version
    <repo>/recommend|rerank|similar/<v>/         (empty: Triton needs a version folder for ensembles)

Why each version folder holds everything: Triton's python stub only puts the model folder and the
version folder on ``sys.path``, so a version that carries its own code and data keeps working when a
later version changes them (safe rollbacks). Which version is served is decided by the pinned configs
(:mod:`fashionrec.repository.versions`); given a running server's URL, publish also loads the new
version into it (explicit model control) without dropping requests. The gate is enforced here: a model
whose blessing says not blessed is never published.

Concurrent publishers never take the same version number. Locally, versions are staged under a
non-numeric name (which Triton ignores) and renamed into place under a file lock, so a polling server
never sees half a version. On ``gs://`` (no rename, no lock) each number is claimed with a create-only
object and the manifest is replaced only over the generation that was read (:func:`_publish_to_gcs`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import shutil
import string
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import fashionrec
import triton_models
from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.model.aggregation import Aggregation
from fashionrec.embeddings_file import ExportedEmbeddings, read_exported
from fashionrec.contract import content, context, layout, ops
from fashionrec.repository import versions
from fashionrec.repository.manifest import (
    CLAIM_PREFIX,
    CONFIG_FILE,
    MANIFEST_FILE,
    STAGING_PREFIX,
    read_manifest,
    repository_lock,
    serving_version,
    write_manifest,
)

MODEL_FILE = "model.py"
# Template folder under triton_models/ -> the ServingConfig field naming the published model.
PYTHON_MODELS = {"customer_vector": "customer_model_name", "rank_products": "ranking_model_name",
                 "blend_hero": "blend_model_name"}  # each version folder holds the catalogue
CONTENT_MODELS = {"embed_products": "embed_model_name"}  # each version folder holds the content tower
ENSEMBLES = {"recommend": "model_name", "rerank": "rerank_model_name", "similar": "similar_model_name"}
CLAIM_ATTEMPTS = 10  # numbers tried when other publishers keep claiming the next one
NEW_IN_SET = "new_in"  # candidate set published automatically: the products flagged is_new


class ConcurrentPublishError(RuntimeError):
    """Another publisher took the version number or changed the manifest while this one published."""


class NotBlessedError(RuntimeError):
    """The evaluation gate did not bless the model; it must not be published."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("model is not blessed: " + ("; ".join(reasons) or "no reason given"))
        self.reasons = reasons


@dataclass(frozen=True)
class PublishedModel:
    """What publishing produced: the version number and the model repository it lives in."""

    version: int
    path: str
    num_products: int
    embedding_dim: int


def _local_path(uri: str | os.PathLike[str]) -> Path:
    """The local path behind a URI; the one place to add remote stores (gs://) later."""
    text = os.fspath(uri)
    if "://" in text and not text.startswith("file://"):
        raise NotImplementedError(f"only local paths are supported for now, got {text}")
    return Path(text.removeprefix("file://"))


def default_templates_dir() -> Path:
    """The Triton model templates installed with fashionrec (the ``triton_models`` package's data)."""
    return Path(str(importlib.resources.files(triton_models)))


CONTRACT_FOLDER = Path("fashionrec") / "contract"  # inside a version folder: the contract's own import path


def copy_contract(folder: Path) -> None:
    """Copy :mod:`fashionrec.contract` into a version folder under its own import path, so the Triton
    model imports ``fashionrec.contract.ops`` as the rest of the package does (the stub puts the version
    folder on ``sys.path``; the serving environment has no fashionrec of its own). The package's
    ``__init__`` comes along: it imports nothing."""
    package = importlib.resources.files(fashionrec)
    (folder / CONTRACT_FOLDER).mkdir(parents=True)
    (folder / CONTRACT_FOLDER.parent / "__init__.py").write_bytes((package / "__init__.py").read_bytes())
    for module in (package / CONTRACT_FOLDER.name).iterdir():
        if module.name.endswith(".py"):
            (folder / CONTRACT_FOLDER / module.name).write_bytes(module.read_bytes())


def read_blessing(blessing_path: str) -> dict[str, Any]:
    """The evaluation verdict; raises NotBlessedError unless it says ``"blessed": true``."""
    blessing = storage.read_json(str(blessing_path))
    if blessing.get("blessed") is not True:
        raise NotBlessedError([str(reason) for reason in blessing.get("reasons", [])])
    return blessing


# The ServingConfig fields a version's configs are rendered from. Recorded with the version, so that a republish
# of it (`catalogue add`, `refresh-prior`, which run with the CLI's defaults) serves the same way: on GPU
# instances when it was published for them, with its table dtype, batching, instance counts and limits.
PUBLISHED_SERVING_FIELDS = ("max_batch_size", "max_queue_delay_us", "instance_count", "ranking_instance_count",
                            "instance_kind", "max_top_k", "max_history_length", "max_candidates", "similar_alpha",
                            "purchase_event_type", "table_dtype", "response_cache_mb")


def published_settings(serving: ServingConfig) -> dict[str, Any]:
    """The :data:`PUBLISHED_SERVING_FIELDS` of ``serving``, as a version's manifest entry records them."""
    return {name: getattr(serving, name) for name in PUBLISHED_SERVING_FIELDS}


def serving_as_published(entry: Mapping[str, Any], serving: ServingConfig) -> ServingConfig:
    """``serving`` with a published version's recorded settings (its manifest ``entry``): what a republish
    of that version renders. A version recorded before the settings were kept leaves ``serving`` as it is."""
    recorded = {name: value for name, value in (entry.get("serving") or {}).items() if name in PUBLISHED_SERVING_FIELDS}
    return dataclasses.replace(serving, **recorded)


def render_configs(serving: ServingConfig, embedding_dim: int, templates: Path) -> dict[str, str]:
    """config.pbtxt text per published model name, from the templates, checked by Triton's schema.

    Versions are not pinned yet (:func:`fashionrec.repository.versions.pin` does that when serving)."""
    values = {
        **{field_name: getattr(serving, field_name)
           for field_name in (*PYTHON_MODELS.values(), *CONTENT_MODELS.values(), *ENSEMBLES.values())},
        "max_batch_size": serving.max_batch_size,
        "max_queue_delay_us": serving.max_queue_delay_us,
        "customer_instance_count": serving.instance_count,
        "ranking_instance_count": serving.ranking_instance_count,
        "instance_kind": serving.instance_kind,
        "max_top_k": serving.max_top_k,
        "max_history_length": serving.max_history_length,
        "max_candidates": serving.max_candidates,
        "similar_alpha": serving.similar_alpha,
        "purchase_event_type": serving.purchase_event_type,
        "table_dtype": serving.table_dtype,
        "embedding_dim": embedding_dim,
        "response_cache": "true" if serving.response_cache_mb else "false",
    }
    configs = {}
    for template, field_name in (*PYTHON_MODELS.items(), *CONTENT_MODELS.items(), *ENSEMBLES.items()):
        name = getattr(serving, field_name)
        text = string.Template((templates / template / CONFIG_FILE).read_text(encoding="utf-8")).substitute(values)
        check_model_config(text, name)
        configs[name] = text
    return configs


def check_model_config(text: str, expected_name: str) -> None:
    """Parse with Triton's ModelConfig protobuf (rejects unknown fields) and check the model name."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    if config.name != expected_name:
        raise ValueError(f"rendered config names model {config.name!r}, expected {expected_name!r}")


def existing_versions(repository: Path) -> set[int]:
    """Every version number already used by a model folder or recorded in the manifest."""
    versions = {int(entry["version"]) for entry in read_manifest(str(repository)).get("versions", [])}
    for model in (p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else ():
        versions.update(int(v.name) for v in model.iterdir() if v.is_dir() and v.name.isdigit())
    return versions


def _choose_version(repository: Path, requested: int | None) -> int:
    """max existing + 1, or the requested number if it is positive and unused (never overwrite)."""
    used = existing_versions(repository)
    if requested is None:
        return max(used, default=0) + 1
    if requested < 1 or requested in used:
        raise ValueError(f"version {requested} is not a new positive version (used: {sorted(used)})")
    return requested


def _stage_python_model(folder: Path, template: Path, catalogue: ExportedEmbeddings, extras: dict[str, str]) -> None:
    """Fill one version folder: model code, the shared numpy modules, the catalogue and ``extras``
    (file name -> text: the pooling settings, the candidate sets)."""
    folder.mkdir(parents=True)
    shutil.copy2(template / MODEL_FILE, folder / MODEL_FILE)
    copy_contract(folder)
    np.save(folder / layout.EMBEDDINGS_FILE, catalogue.embeddings)
    if catalogue.prior is not None:
        np.save(folder / layout.PRIOR_FILE, catalogue.prior)
    (folder / layout.PRODUCT_IDS_FILE).write_text("\n".join(catalogue.product_ids) + "\n", encoding="utf-8")
    for name, text in extras.items():
        (folder / name).write_text(text, encoding="utf-8")


def _stage_content_model(folder: Path, template: Path, tower: content.ContentTower | None) -> None:
    """Fill an embed_products version folder: model code, the contract and (if any) the content tower."""
    folder.mkdir(parents=True)
    shutil.copy2(template / MODEL_FILE, folder / MODEL_FILE)
    copy_contract(folder)
    if tower is not None:
        tower.save(folder)


def _stage_versions(repository: Path, serving: ServingConfig, catalogue: ExportedEmbeddings, templates: Path,
                    extras: dict[str, dict[str, str]], tower: content.ContentTower | None = None) -> dict[Path, Path]:
    """Write every model's new version under a staging name; return staging -> final folder names."""
    staged: dict[Path, Path] = {}
    tag = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    try:
        for template, field_name in PYTHON_MODELS.items():
            model_dir = repository / getattr(serving, field_name)
            staged[model_dir / tag] = model_dir
            _stage_python_model(model_dir / tag, templates / template, catalogue, extras.get(template, {}))
        for template, field_name in CONTENT_MODELS.items():
            model_dir = repository / getattr(serving, field_name)
            staged[model_dir / tag] = model_dir
            _stage_content_model(model_dir / tag, templates / template, tower)
        for field_name in ENSEMBLES.values():
            ensemble_dir = repository / getattr(serving, field_name)
            staged[ensemble_dir / tag] = ensemble_dir
            (ensemble_dir / tag).mkdir(parents=True)
    except BaseException:
        for folder in staged:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return staged


def publish_model_repository(
    embeddings_path: str,
    blessing_path: str,
    model_repository: str,
    serving: ServingConfig,
    version: int | None = None,
    metadata: dict | None = None,
    templates_dir: str | None = None,
    candidate_sets: Mapping[str, Sequence[str]] | None = None,
    server_url: str | None = None,
    protocol: str = "grpc",
    catalogue_update: Mapping[str, Any] | None = None,
) -> PublishedModel:
    """Publish a blessed catalogue as version ``version`` (default: max existing + 1) of every model,
    and make it the served version.

    The pooling settings come from ``aggregation.json`` beside ``embeddings_path`` (the export stage
    writes it; default: event-type weighted mean). ``candidate_sets`` (name -> product ids; default:
    ``candidate_sets.json`` beside the embeddings, if any) become the named candidate restrictions,
    plus ``new_in`` (the products flagged is_new) unless given. The content tower beside the
    embeddings (``content_tower.npz`` + ``content_features.json``, if the export wrote them) goes to
    ``embed_products``; its embedding size must be the catalogue's, and so must the width of the
    context tables beside the embeddings (``context.json``, if the export wrote it), which go to
    ``customer_vector``. ``server_url``: a running Triton with explicit model control to load the new
    version into (steps first, then the ensembles). Raises NotBlessedError (repository untouched) when
    the gate failed, ValueError on a bad catalogue, aggregation, context tables or candidate set, or a
    version already used. ``metadata`` (JSON-serialisable, e.g. metrics) is kept in the manifest.
    ``catalogue_update`` (from :mod:`fashionrec.repository.catalogue`: base_version, added_product_ids,
    products, embeddings_path of the trained export) marks the version as products added to
    ``base_version`` without retraining; its ``embeddings_path`` is recorded in place of the (temporary)
    one given.
    """
    if storage.is_gcs(str(model_repository)):
        return _publish_to_gcs(embeddings_path, blessing_path, str(model_repository), serving, version, metadata,
                               templates_dir, candidate_sets, server_url, protocol, catalogue_update)
    blessing = read_blessing(blessing_path)
    catalogue = read_exported(embeddings_path)
    tower = read_content_tower(embeddings_path, catalogue.embeddings.shape[1])
    pooling = {layout.AGGREGATION_FILE: json.dumps(read_aggregation(embeddings_path), indent=2),
               **read_context(embeddings_path, catalogue.embeddings.shape[1])}  # both models pool histories
    extras = {"customer_vector": pooling,
              "rank_products": {**pooling, layout.CANDIDATE_SETS_FILE: json.dumps(
                  resolve_candidate_sets(catalogue, embeddings_path, candidate_sets))}}
    templates = _local_path(templates_dir) if templates_dir else default_templates_dir()
    repository = _local_path(model_repository)
    configs = render_configs(serving, catalogue.embeddings.shape[1], templates)
    json.dumps([metadata or {}, dict(catalogue_update or {})])  # fail before writing if they cannot be stored
    repository.mkdir(parents=True, exist_ok=True)
    with repository_lock(str(repository)):  # one publisher at a time: no version number taken twice
        chosen = _choose_version(repository, version)
        for staging, model_dir in _stage_versions(repository, serving, catalogue, templates, extras, tower).items():
            staging.rename(model_dir / str(chosen))
        manifest = read_manifest(str(repository))
        previous = serving_version(manifest)
        manifest = _record_version(repository, manifest, chosen, catalogue, blessing, embeddings_path, metadata or {}, configs,
                                   content_tower=tower is not None, catalogue_update=catalogue_update,
                                   serving=published_settings(serving))
        manifest = versions.write_serving_configs(str(repository), manifest, chosen, serving)
    if server_url:
        versions.load_or_revert(server_url, str(repository), manifest, chosen, previous, serving, protocol)
    return PublishedModel(chosen, str(repository), len(catalogue.product_ids), catalogue.embeddings.shape[1])


def read_content_tower(embeddings_path: str, embedding_dim: int) -> content.ContentTower | None:
    """The export's content tower beside the embeddings (None without one), checked: it must load and
    give embeddings of the catalogue's size (ValueError otherwise, before anything is written)."""
    folder = os.path.dirname(str(embeddings_path))
    uris = {name: storage.join(folder, name) for name in (content.FEATURES_FILE, content.WEIGHTS_FILE)}
    if not storage.exists(uris[content.FEATURES_FILE]):
        return None
    with tempfile.TemporaryDirectory(prefix="fashionrec-content-") as local:
        for name, uri in uris.items():
            with storage.open_input(uri) as source, open(Path(local) / name, "wb") as target:
                shutil.copyfileobj(source, target)
        tower = content.ContentTower.load(local)
    if tower.dim != embedding_dim:
        raise ValueError(f"the content tower beside {embeddings_path} gives {tower.dim}-d embeddings, "
                         f"the catalogue has {embedding_dim}")
    return tower


def read_context(embeddings_path: str, embedding_dim: int) -> dict[str, str]:
    """The export's ``context.json`` beside the embeddings as ``{file name: text}`` for the version folders
    of the models that pool histories (empty without one), checked as the model loads it: tables that
    load (row 0 zeros, one row per value, finite) and as wide as the catalogue's embeddings (ValueError
    otherwise, before anything is written). The text is copied as it is: the model reads the export's own file."""
    uri = storage.join(os.path.dirname(str(embeddings_path)), context.CONTEXT_FILE)
    if not storage.exists(uri):
        return {}
    with storage.open_input(uri) as stream:
        raw = stream.read()
    context.parse(raw, uri, embedding_dim)  # CorruptVersion, a ValueError
    return {context.CONTEXT_FILE: raw.decode("utf-8")}


def read_aggregation(embeddings_path: str) -> dict[str, Any]:
    """The export stage's ``aggregation.json`` beside the embeddings, checked; the default without one."""
    uri = storage.join(os.path.dirname(str(embeddings_path)), layout.AGGREGATION_FILE)
    aggregation = dataclasses.asdict(Aggregation.read(uri))
    if aggregation["pooling"] not in ops.POOLINGS:
        raise ValueError(f"{uri}: pooling must be one of {ops.POOLINGS}, got {aggregation['pooling']!r}")
    weights = aggregation["event_weights"]
    if not weights or not all(isinstance(w, int | float) and w >= 0 for w in weights.values()):
        raise ValueError(f"{uri}: event_weights must map event types to non-negative numbers")
    if aggregation["pooling"] == "recency" and not float(aggregation["half_life_days"]) > 0:
        raise ValueError(f"{uri}: half_life_days must be positive")
    if not float(aggregation["half_life_events"]) >= 0:
        raise ValueError(f"{uri}: half_life_events must be 0 (off) or positive")
    if not isinstance(aggregation["window"], int) or aggregation["window"] < 0:
        raise ValueError(f"{uri}: window must be 0 (every event) or a positive number of events")
    return aggregation


def resolve_candidate_sets(catalogue: ExportedEmbeddings, embeddings_path: str,
                           candidate_sets: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Named candidate sets to publish: the given ones (else ``candidate_sets.json`` beside the
    embeddings), plus ``new_in``. Every id must be in the catalogue: a typo fails the publish, not
    every request that names the set."""
    uri = storage.join(os.path.dirname(str(embeddings_path)), layout.CANDIDATE_SETS_FILE)
    if candidate_sets is None:
        candidate_sets = storage.read_json(uri) if storage.exists(uri) else {}
    sets = {str(name): [str(pid) for pid in members] for name, members in candidate_sets.items()}
    if NEW_IN_SET not in sets and catalogue.is_new.any():
        sets[NEW_IN_SET] = [pid for pid, new in zip(catalogue.product_ids, catalogue.is_new, strict=True) if new]
    known = set(catalogue.product_ids)
    for name, members in sets.items():
        unknown = [pid for pid in members if pid not in known]
        if not name or not members or unknown or len(set(members)) != len(members):
            raise ValueError(f"candidate set {name!r} must be a non-empty list of distinct catalogue products"
                             + (f"; unknown: {unknown[:5]}" if unknown else ""))
    return sets


def _record_version(repository: Path, manifest: dict[str, Any], version: int, catalogue: ExportedEmbeddings,
                    blessing: dict[str, Any], embeddings_path: str, metadata: dict, configs: dict[str, str],
                    content_tower: bool = False, catalogue_update: Mapping[str, Any] | None = None,
                    serving: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Append the version (with its unpinned configs, for rollbacks) to ``manifest`` (the repository's, read
    under the repository lock), point ``latest_version`` at the highest one, write it; return it."""
    update = dict(catalogue_update or {})
    if update:
        embeddings_path = update.pop("embeddings_path", None) or embeddings_path
    entries = [*manifest.get("versions", []), {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "num_products": len(catalogue.product_ids),
        "num_new_products": int(catalogue.is_new.sum()),
        "embedding_dim": int(catalogue.embeddings.shape[1]),
        "embeddings_path": str(embeddings_path),
        "content_tower": content_tower,  # embed_products can embed new products (and `catalogue add` add them)
        "blessing": blessing,
        "metadata": metadata,
        "configs": configs,
        "serving": dict(serving or {}),  # the settings its configs were rendered from (PUBLISHED_SERVING_FIELDS)
        **({"catalogue_update": update} if update else {}),
    }]
    entries.sort(key=lambda entry: entry["version"])
    manifest.update(versions=entries, latest_version=entries[-1]["version"])
    write_manifest(str(repository), manifest)
    return manifest


def _publish_to_gcs(embeddings_path: str, blessing_path: str, model_repository: str, serving: ServingConfig,
                    version: int | None, metadata: dict | None, templates_dir: str | None,
                    candidate_sets: Mapping[str, Sequence[str]] | None, server_url: str | None,
                    protocol: str, catalogue_update: Mapping[str, Any] | None = None) -> PublishedModel:
    """Publish into a local copy of the repository's metadata, then upload in a reader-safe order.

    GCS has no rename, no lock and no multi-object atomicity, so: the version number is claimed first
    with a create-only object (:func:`_claim_version`: two publishers never take the same number); every
    file of the new version folders is uploaded; then the manifest, only if it is still the generation
    read at the start (another publisher in between: :class:`ConcurrentPublishError`, and nothing names
    or serves the uploaded version); then the ``config.pbtxt`` files that switch serving to it.
    """
    read_blessing(blessing_path)  # refuse before touching anything remote
    with tempfile.TemporaryDirectory(prefix="fashionrec-publish-") as staging:
        local = Path(staging)
        manifest_uri = storage.join(model_repository, MANIFEST_FILE)
        manifest, generation = storage.read_json_generation(manifest_uri)
        if manifest is not None:
            (local / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
        chosen = _claim_version(model_repository, version, existing_versions(local))
        published = publish_model_repository(embeddings_path, blessing_path, staging, serving, chosen, metadata,
                                              templates_dir, candidate_sets, catalogue_update=catalogue_update)
        models = [p.name for p in local.iterdir() if p.is_dir()]
        for model in models:
            storage.copy_tree(str(local / model / str(chosen)), storage.join(model_repository, model, str(chosen)))
        try:
            storage.write_if_generation(manifest_uri, (local / MANIFEST_FILE).read_bytes(), generation)
        except storage.ConcurrentWriteError as error:
            raise ConcurrentPublishError(
                f"{manifest_uri} changed while version {chosen} was being uploaded (another publisher?): nothing "
                f"names or serves version {chosen}; publish again") from error
        for model in models:
            storage.upload_file(str(local / model / CONFIG_FILE), storage.join(model_repository, model, CONFIG_FILE))
    if server_url:
        versions.load_or_revert(server_url, model_repository, read_manifest(model_repository), chosen,
                                serving_version(manifest or {}), serving, protocol)
    return PublishedModel(published.version, model_repository, published.num_products, published.embedding_dim)


def _claim_version(model_repository: str, requested: int | None, known: set[int]) -> int:
    """A version number no other publisher can take: a create-only claim object per number at the
    repository root (files there are ignored by Triton). The next free number, or ``requested``."""
    used = _remote_versions(model_repository) | known | _claimed_versions(model_repository)
    if requested is not None and (requested < 1 or requested in used):
        raise ValueError(f"version {requested} is not a new positive version of {model_repository} "
                         f"(used: {sorted(used)})")
    candidate = requested if requested is not None else max(used, default=0) + 1
    for _ in range(CLAIM_ATTEMPTS):
        claim = {"claimed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            storage.write_if_generation(storage.join(model_repository, f"{CLAIM_PREFIX}{candidate}"),
                                        json.dumps(claim).encode("utf-8"), 0)
            return candidate
        except storage.ConcurrentWriteError:
            if requested is not None:
                raise ConcurrentPublishError(f"version {requested} is being published by another run") from None
            candidate += 1
    raise ConcurrentPublishError(f"{CLAIM_ATTEMPTS} version numbers in a row were claimed by other publishers")


def _claimed_versions(model_repository: str) -> set[int]:
    """The numbers claimed at the root of a remote repository, published or not."""
    if not storage.exists(model_repository):
        return set()
    return {int(name.removeprefix(CLAIM_PREFIX)) for name in storage.list_dir(model_repository)
            if name.startswith(CLAIM_PREFIX) and name.removeprefix(CLAIM_PREFIX).isdigit()}


def _remote_versions(model_repository: str) -> set[int]:
    """Version numbers of the model folders already in a remote repository."""
    if not storage.exists(model_repository):
        return set()
    versions: set[int] = set()
    for name in storage.list_dir(model_repository):
        folder = storage.join(model_repository, name)
        if name != MANIFEST_FILE and storage.exists(folder) and not name.startswith("."):
            try:
                versions.update(int(v) for v in storage.list_dir(folder) if v.isdigit())
            except NotADirectoryError:
                continue
    return versions
