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

Concurrency: each operation here that writes configs or the manifest (activate, rollback, a revert, an
experiment's start and stop) holds the repository's lock (:func:`fashionrec.repository.manifest.repository_lock`)
from its first read to its last write, as a publish does, so on a local repository they run one at a time.
The manifest itself is only ever changed through :func:`~fashionrec.repository.manifest.update_manifest`, so a
version a publisher recorded meanwhile is never dropped; on ``gs://`` (no lock) that is a conditional write,
while the config files of two operations racing there can still interleave: run one at a time per bucket.
"""

from __future__ import annotations

import itertools
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.messages import one_line
from fashionrec.repository.check import check_version
from fashionrec.repository.experiments import (Experiment, ExperimentError, arm_ensemble, arm_models, arm_versions,
                                               read_experiment, remove_experiment, write_experiment)
from fashionrec.repository.manifest import (CONFIG_FILE, locked, read_manifest, serving_version, update_manifest,
                                            write_text)

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


@locked
def write_serving_configs(repository: str, manifest: dict[str, Any], target: int, serving: ServingConfig,
                          keep_previous: bool = True, also_load: Sequence[int] | None = None,
                          record: bool = True) -> dict:
    """Pin every model to ``target`` (python models also keep the previously served version, unless
    ``keep_previous`` is false: a version that failed to load is not kept, and every version of
    ``also_load``, by default the running experiment's arms) and, when ``record``, record it in the
    manifest as it is then (:func:`update_manifest`: entries recorded meanwhile are kept); return the
    updated manifest. No server is contacted."""
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
    arms = _arm_configs(repository, entries, target, configs, serving, also_load)
    for name in python_models(serving):
        if name not in configs or not storage.exists(storage.join(repository, name, str(target))):
            continue  # an optional model the target version does not have keeps its current pin
        keep = (keep_previous and previous is not None and previous != target
                and old_configs.get(name) == configs[name])
        loaded = [previous, target] if keep else [target]
        loaded += [v for v, arm in arms.items() if storage.exists(storage.join(repository, name, str(v)))]
        write_text(storage.join(repository, name, CONFIG_FILE), pin(configs[name], loaded))
    for name in ensembles(serving):
        write_text(storage.join(repository, name, CONFIG_FILE), pin(configs[name], [target]))
    if not record:
        return manifest
    return update_manifest(repository, lambda current: dict(
        current, serving_version=target, serving_history=[*current.get("serving_history", []), target]))


def _arm_configs(repository: str, entries: Mapping[int, Mapping[str, Any]], target: int,
                 configs: Mapping[str, str], serving: ServingConfig,
                 also_load: Sequence[int] | None) -> dict[int, dict[str, str]]:
    """The configs of each experiment version the python models load beside ``target``. A model has one
    config for all its versions, so an arm whose python configs differ from the target's (e.g. another
    embedding size) cannot be loaded beside it: VersionError, before anything is written."""
    wanted = arm_versions(repository) if also_load is None else list(also_load)
    arms = {}
    for version in sorted({int(v) for v in wanted} - {target}):
        if version not in entries:
            raise VersionError(f"experiment version {version} is not published in {repository}")
        arms[version] = _configs_of(repository, entries[version], serving)
    if clash := _unservable_pair({target: configs, **arms}, serving):
        first, second, differing = clash
        raise VersionError(f"version {second} cannot serve beside version {first}: their {', '.join(differing)} "
                           "configs differ (one config per Triton model); stop the experiment first")
    return arms


def _unservable_pair(configs: Mapping[int, Mapping[str, str]],
                     serving: ServingConfig) -> tuple[int, int, list[str]] | None:
    """The first two versions of ``configs`` (in its order) that Triton cannot load side by side, with the
    python models both have whose configs differ (Triton keeps one config per model); None when all can."""
    for first, second in itertools.combinations(configs, 2):
        one, other = configs[first], configs[second]
        both = [name for name in python_models(serving) if name in one and name in other]
        differing = [name for name in both if one[name] != other[name]]
        if differing:
            return first, second, differing
    return None


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


def load_models(url: str, serving: ServingConfig, protocol: str = "grpc", arm_ensembles: Sequence[str] = ()) -> None:
    """Make a server started with ``--model-control-mode=explicit`` (re)load the repository's configs:
    python models first, then the ensembles, then ``arm_ensembles`` (an experiment's). Triton swaps each
    model in when its new version is ready and lets in-flight requests finish on the old one."""
    from fashionrec.serving.connection import admin_headers, connect_raw

    headers = admin_headers(serving, protocol)  # the repository API may be restricted to a key
    with connect_raw(url, protocol, serving.client_timeout_s) as client:
        present = _repository_models(client, protocol, headers)
        for name in [*python_models(serving), *ensembles(serving), *arm_ensembles]:
            if name in present or name not in optional_models(serving):
                client.load_model(name, headers=headers)


def _repository_models(client: Any, protocol: str, headers: dict[str, str] | None) -> set[str]:
    """Names of the models in the server's repository (loaded or not)."""
    index = client.get_model_repository_index(headers=headers)
    if protocol == "grpc":
        return {model.name for model in index.models}
    return {model["name"] for model in index}


@locked
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
    would fail) nor the server's readiness pointing at it. Returns the manifest. (Loading only reads the
    repository; the revert's writes take the lock in :func:`write_serving_configs`.)"""
    from tritonclient.utils import InferenceServerException

    arms = arm_models(read_experiment(repository), serving)
    try:
        load_models(url, serving, protocol, arms)
        return manifest
    except InferenceServerException as error:
        reason = one_line(error, MAX_REASON_CHARS)
        if previous is None or previous == target:
            raise VersionError(f"version {target} failed to load: {reason}") from None
        write_serving_configs(repository, manifest, previous, serving, keep_previous=False)
        load_models(url, serving, protocol, arms)
        raise VersionError(f"version {target} failed to load, so serving stays on version {previous}: "
                           f"{reason}") from None


@locked
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


# -- experiments: every arm's version served at once --------------------------------------------------------------
@locked
def start_experiment(repository: str, experiment: Experiment, serving: ServingConfig, url: str | None = None,
                     protocol: str = "grpc", settle_s: float = 0.0) -> None:
    """Serve every arm of ``experiment`` beside the served version, then write the experiment file that
    shops route by. Order: the python models load the arms' versions, the arm ensembles appear and (given a
    ``url``) load, ``settle_s`` pass (polling servers: their next poll loads them), and only then the file:
    no shop routes to an ensemble that is not there. When Triton refuses to load them, everything is undone
    and VersionError says why."""
    running = read_experiment(repository)
    if running is not None:
        raise ExperimentError(f"experiment {running.name!r} is running in {repository}; stop it first "
                              "(fashionrec experiment stop)")
    manifest = read_manifest(repository)
    served = serving_version(manifest)
    if served is None:
        raise VersionError(f"nothing is published in {repository} yet")
    entries = {int(entry["version"]): entry for entry in manifest.get("versions", [])}
    for version in experiment.versions():
        if version not in entries:
            raise VersionError(f"arm version {version} is not published in {repository} (published: {sorted(entries)})")
        check_version(repository, version, serving)
    _check_servable_together(repository, entries, [served, *experiment.versions()], serving)
    _repin_python_models(repository, manifest, served, serving, experiment.versions())
    names = write_arm_ensembles(repository, experiment, {v: _configs_of(repository, entries[v], serving)
                                                         for v in experiment.versions()}, serving)
    if url:
        try:
            load_models(url, serving, protocol, names)
        except Exception as error:  # noqa: BLE001 - undone whatever failed, then reported with its reason
            # the versions that failed are not kept loaded, even the previously served one (as a failed activation)
            _end_arms(repository, manifest, served, serving, names, url, protocol, keep_previous=False)
            raise VersionError(f"experiment {experiment.name!r} could not start: {one_line(error, MAX_REASON_CHARS)}"
                               ) from None
    time.sleep(settle_s)
    write_experiment(repository, experiment)


def _check_servable_together(repository: str, entries: Mapping[int, Mapping[str, Any]], served_versions: Sequence[int],
                             serving: ServingConfig) -> None:
    """VersionError naming the first two versions that cannot be loaded side by side (e.g. two serving layouts, or
    two embedding sizes), before anything is written."""
    configs = {v: _configs_of(repository, entries[v], serving) for v in dict.fromkeys(served_versions)}
    if clash := _unservable_pair(configs, serving):
        first, second, differing = clash
        raise VersionError(f"versions {first} and {second} cannot be served side by side: their "
                           f"{', '.join(differing)} configs differ (one config per Triton model), so no experiment "
                           "can compare them (e.g. versions published by releases with different serving layouts)")


@locked
def stop_experiment(repository: str, serving: ServingConfig, url: str | None = None, protocol: str = "grpc",
                    drain_s: float = 0.0) -> Experiment:
    """End the running experiment: remove its file (shops stop routing at their next re-read), wait
    ``drain_s`` for that, then unload and remove the arm ensembles and the arms' python versions. The
    experiment is recorded in the manifest's ``experiments``; returns it."""
    experiment = read_experiment(repository)
    if experiment is None:
        raise ExperimentError(f"no experiment is running in {repository}")
    remove_experiment(repository)
    time.sleep(drain_s)
    manifest = read_manifest(repository)
    _end_arms(repository, manifest, serving_version(manifest), serving, arm_models(experiment, serving), url, protocol)
    record = dict(experiment.to_dict(), stopped=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    update_manifest(repository, lambda current: dict(current, experiments=[*current.get("experiments", []), record]))
    return experiment


def write_arm_ensembles(repository: str, experiment: Experiment, configs: Mapping[int, Mapping[str, str]],
                        serving: ServingConfig) -> list[str]:
    """Write each arm version's copies of the ensembles (``configs[version][ensemble]``: that version's
    unpinned config), each pinned to its version, with the empty version folder Triton needs; return
    their names. Staged locally and copied, so it works on ``gs://`` too."""
    names = []
    with tempfile.TemporaryDirectory() as staging:
        for version in experiment.versions():
            for base in ensembles(serving):
                name = arm_ensemble(base, version)
                text = re.sub(r'^name: ".*"$', f'name: "{name}"', pin(configs[version][base], [version]), count=1,
                              flags=re.MULTILINE)
                folder = Path(staging) / name
                (folder / str(version)).mkdir(parents=True)
                (folder / CONFIG_FILE).write_text(text, encoding="utf-8")
                names.append(name)
        storage.copy_tree(staging, str(repository))
    return names


def _repin_python_models(repository: str, manifest: dict[str, Any], served: int, serving: ServingConfig,
                         arms: Sequence[int], keep_previous: bool = True) -> None:
    """Pin the python models again to the served version, the one served before it and ``arms``."""
    history = [int(v) for v in manifest.get("serving_history", []) if int(v) != served]
    previous = history[-1] if history else None
    pinned = dict(manifest, serving_version=previous) if previous is not None else manifest
    write_serving_configs(repository, pinned, served, serving, keep_previous, also_load=arms, record=False)


def _end_arms(repository: str, manifest: dict[str, Any], served: int | None, serving: ServingConfig,
              names: Sequence[str], url: str | None, protocol: str, keep_previous: bool = True) -> None:
    """Unload (given a ``url``) and remove arm ensembles, then pin and load the python models without the arms."""
    if url:
        _unload(url, serving, protocol, names)
    for name in names:
        storage.remove(storage.join(repository, name))
    if served is not None:
        _repin_python_models(repository, manifest, served, serving, [], keep_previous)
        if url:
            load_models(url, serving, protocol)


def _unload(url: str, serving: ServingConfig, protocol: str, names: Sequence[str]) -> None:
    from tritonclient.utils import InferenceServerException

    from fashionrec.serving.connection import admin_headers, connect_raw

    headers = admin_headers(serving, protocol)
    with connect_raw(url, protocol, serving.client_timeout_s) as client:
        for name in names:
            try:
                client.unload_model(name, headers=headers)
            except InferenceServerException:  # never loaded (a start that failed half-way): nothing to unload
                continue
