"""The model repository's manifest and its whole-file writes: the one reader and writer of both.

``fashionrec_manifest.json`` at the repository root lists every published version (its configs,
blessing and metadata), the latest one and the one the ensembles are pinned to. Local and ``gs://``
repositories alike, through :mod:`fashionrec.storage`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fashionrec import storage

MANIFEST_FILE = "fashionrec_manifest.json"
CONFIG_FILE = "config.pbtxt"
STAGING_PREFIX = ".staging-"  # not a number, so Triton skips it as a version folder
CLAIM_PREFIX = ".fashionrec-claim-"  # + a version number: a gs:// publisher's create-only claim of that number


def read_manifest(repository: str) -> dict[str, Any]:
    """The repository's manifest; empty before the first publish."""
    uri = storage.join(str(repository), MANIFEST_FILE)
    return storage.read_json(uri) if storage.exists(uri) else {}


def write_manifest(repository: str, manifest: Mapping[str, Any]) -> None:
    write_text(storage.join(str(repository), MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def serving_version(manifest: Mapping[str, Any]) -> int | None:
    """The version the ensembles are pinned to (older manifests: the latest published)."""
    version = manifest.get("serving_version", manifest.get("latest_version"))
    return None if version is None else int(version)


def write_text(uri: str, text: str) -> None:
    """Replace a file whole: a local temp file + rename (a polling Triton never reads half a config);
    a GCS object appears whole when its upload completes."""
    if storage.is_gcs(uri):
        with storage.open_output(uri) as stream:
            stream.write(text.encode("utf-8"))
        return
    path = Path(uri.removeprefix("file://"))
    temporary = path.with_name(f"{STAGING_PREFIX}{uuid.uuid4().hex}-{path.name}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
