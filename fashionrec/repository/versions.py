"""Which published version Triton serves: pinned configs, hot loading and rollback, without dropped requests.

The model repository holds every published version of every model. What is served is decided by the
``config.pbtxt`` files, written here and only here:

* each ensemble (``recommend``, ``rerank``, ``similar``) pins ALL its steps to one version, the served
  one, so a request never mixes versions (e.g. a v2 customer vector ranked against the v1 table);
* each python model loads the served version AND the previously served one. Why: switching is then
  one atomic ensemble reload, while requests already inside the old ensemble finish on old steps
  that are still loaded; and a rollback is instant. (When the two versions' configs differ, e.g. a
  new embedding size, only the served one is loaded.) ``embed_products`` is pinned the same way; it
  is no ensemble step, so a version published before it existed leaves its pin as it is.

Order matters for a running server: python configs are written and loaded first (the new version
starts next to the old one), then the ensembles switch, then the manifest records it. With
``--model-control-mode=explicit`` :func:`load_models` drives Triton's repository API; with ``poll``
Triton finds the same files itself. Works on local and ``gs://`` repositories (through
:mod:`fashionrec.storage`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.messages import one_line
from fashionrec.repository.check import check_version
from fashionrec.repository.manifest import CONFIG_FILE, read_manifest, serving_version, write_manifest, write_text

HEADER = ("# Rendered by fashionrec.repository.publish from triton_models/; versions pinned by "
          "fashionrec.repository.versions (serving version {version}).\n")


MAX_REASON_CHARS = 300  # of a server's error quoted in a VersionError


class VersionError(RuntimeError):
    """A version that cannot be served (unknown, or no earlier one to roll back to)."""


def python_models(serving: ServingConfig) -> list[str]:
    """The python-backend models, in the order they are loaded (steps before ensembles)."""
    return [serving.customer_model_name, serving.blend_model_name, serving.ranking_model_name,
            serving.embed_model_name]


def optional_models(serving: ServingConfig) -> set[str]:
    """Python models that no ensemble uses: versions published before they existed lack them."""
    return {serving.embed_model_name}


def ensembles(serving: ServingConfig) -> list[str]:
    return [serving.model_name, serving.rerank_model_name, serving.similar_model_name]


def pin(config_text: str, versions: Sequence[int]) -> str:
    """A config with its versions pinned: a python model loads ``versions``; an ensemble serves the last
    of them (its own version folder and every step's ``model_version``)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    served = int(versions[-1])
    if config.platform == "ensemble":
        config.version_policy.specific.versions[:] = [served]
        for step in config.ensemble_scheduling.step:
            step.model_version = served
    else:
        config.version_policy.specific.versions[:] = sorted({int(v) for v in versions})
    return HEADER.format(version=served) + text_format.MessageToString(config)


def write_serving_configs(repository: str, manifest: dict[str, Any], target: int, serving: ServingConfig,
                          keep_previous: bool = True) -> dict:
    """Pin every model to ``target`` (python models also keep the previously served version, unless
    ``keep_previous`` is false: a version that failed to load is not kept) and record it in the manifest;
    return the updated manifest. No server is contacted."""
    entries = {int(entry["version"]): entry for entry in manifest.get("versions", [])}
    if target not in entries:
        raise VersionError(f"version {target} is not published in {repository} (published: {sorted(entries)})")
    check_version(repository, target, serving)  # before any config names it
    previous = manifest.get("serving_version")
    if previous is None:  # first activation, or a repository published before versions were pinned
        previous = max((v for v in entries if v != target), default=None)
    configs = _configs_of(repository, entries[target], serving)
    try:
        old_configs = _configs_of(repository, entries[previous], serving) if previous in entries else {}
    except FileNotFoundError:  # an old version whose configs are neither recorded nor at hand
        old_configs = {}
    for name in python_models(serving):
        if name not in configs or not storage.exists(storage.join(repository, name, str(target))):
            continue  # an optional model the target version does not have keeps its current pin
        keep = (keep_previous and previous is not None and previous != target
                and old_configs.get(name) == configs[name])
        write_text(storage.join(repository, name, CONFIG_FILE), pin(configs[name], [previous, target] if keep
                                                                      else [target]))
    for name in ensembles(serving):
        write_text(storage.join(repository, name, CONFIG_FILE), pin(configs[name], [target]))
    manifest = dict(manifest, serving_version=target,
                    serving_history=[*manifest.get("serving_history", []), target])
    write_manifest(repository, manifest)
    return manifest


def _configs_of(repository: str, entry: Mapping[str, Any], serving: ServingConfig) -> dict[str, str]:
    """The unpinned configs a version was published with (older versions: the current files)."""
    names = [*python_models(serving), *ensembles(serving)]
    stored = entry.get("configs") or {}
    configs = {}
    for name in names:
        uri = storage.join(repository, name, CONFIG_FILE)
        if name in stored:
            configs[name] = stored[name]
        elif name in optional_models(serving) and not storage.exists(uri):
            continue
        else:
            with storage.open_input(uri) as stream:
                configs[name] = stream.read().decode("utf-8")
    return configs


def load_models(url: str, serving: ServingConfig, protocol: str = "grpc") -> None:
    """Make a server started with ``--model-control-mode=explicit`` (re)load the repository's configs:
    python models first, then the ensembles. Triton swaps each model in when its new version is
    ready and lets in-flight requests finish on the old one."""
    from fashionrec.serving.connection import admin_headers, connect_raw

    headers = admin_headers(serving, protocol)  # the repository API may be restricted to a key
    with connect_raw(url, protocol, serving.client_timeout_s) as client:
        present = _repository_models(client, protocol, headers)
        for name in [*python_models(serving), *ensembles(serving)]:
            if name in present or name not in optional_models(serving):
                client.load_model(name, headers=headers)


def _repository_models(client: Any, protocol: str, headers: dict[str, str] | None) -> set[str]:
    """Names of the models in the server's repository (loaded or not)."""
    index = client.get_model_repository_index(headers=headers)
    if protocol == "grpc":
        return {model.name for model in index.models}
    return {model["name"] for model in index}


def activate(repository: str, version: int, serving: ServingConfig, url: str | None = None,
             protocol: str = "grpc") -> dict:
    """Serve ``version``: check it, write the pinned configs and, given a server ``url``, load them into
    it (:func:`load_or_revert`: a version Triton refuses is never left pinned)."""
    manifest = read_manifest(repository)
    previous = serving_version(manifest)
    manifest = write_serving_configs(repository, manifest, int(version), serving)
    return load_or_revert(url, repository, manifest, int(version), previous, serving, protocol) if url else manifest


def load_or_revert(url: str, repository: str, manifest: dict, target: int, previous: int | None,
                   serving: ServingConfig, protocol: str = "grpc") -> dict:
    """Load the configs pinned to ``target`` into a running server (explicit model control). When Triton
    refuses to load it, pin ``previous`` again, load that and raise VersionError with Triton's reason:
    a failed load never leaves the repository pinned to a version that did not load (the next restart
    would fail) nor the server's readiness pointing at it. Returns the manifest."""
    from tritonclient.utils import InferenceServerException

    try:
        load_models(url, serving, protocol)
        return manifest
    except InferenceServerException as error:
        reason = one_line(error, MAX_REASON_CHARS)
        if previous is None or previous == target:
            raise VersionError(f"version {target} failed to load: {reason}") from None
        write_serving_configs(repository, manifest, previous, serving, keep_previous=False)
        load_models(url, serving, protocol)
        raise VersionError(f"version {target} failed to load, so serving stays on version {previous}: "
                           f"{reason}") from None


def rollback(repository: str, serving: ServingConfig, to_version: int | None = None, url: str | None = None,
             protocol: str = "grpc") -> int:
    """Serve ``to_version`` (default: the highest published version below the served one); return it."""
    manifest = read_manifest(repository)
    current = serving_version(manifest)
    published = sorted(int(entry["version"]) for entry in manifest.get("versions", []))
    if to_version is None:
        earlier = [v for v in published if current is not None and v < current]
        if not earlier:
            raise VersionError(f"no version before {current} to roll back to in {repository} (published: {published})")
        to_version = earlier[-1]
    activate(repository, to_version, serving, url, protocol)
    return int(to_version)
