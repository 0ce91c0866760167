"""Online experiments between served versions: their definition, the visitors' assignment to arms, and
the Triton models that let every arm's version serve at once.

An experiment is a small JSON file beside the manifest (``fashionrec_experiment.json``), so it is
versioned with the repository and every shop replica reads the same one; the shop re-reads it every
``experiment.refresh_s``, so starting or stopping one needs no restart. It names a salt, arms (each a
published version, optionally with a serving setting such as the ``similar`` blend) with traffic shares,
and a start and end. The first arm is the control.

Assignment is a hash, not a table: ``sha256(salt:unit)`` read as a number in [0, 1) and cut at the
cumulative shares. Every replica, before and after restarts, puts a visitor in the same arm, and a new
salt reshuffles everyone.

Why arm ensembles: an ensemble's ``config.pbtxt`` pins every step to ONE version (so no request mixes
versions), and a model has one config for all its versions. So each arm's version gets its own copies
of the ensembles, ``recommend_v<N>``, ``rerank_v<N>`` and ``similar_v<N>``, pinned to N, while the python
steps load every arm's version next to the served one (:func:`arm_versions` is read by
:func:`fashionrec.repository.versions.write_serving_configs`). The plain ensembles keep serving
everyone outside the experiment.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from fashionrec import storage
from fashionrec.config import ExperimentConfig, ServingConfig
from fashionrec.repository.manifest import write_text

EXPERIMENT_FILE = "fashionrec_experiment.json"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SHARE_TOLERANCE = 1e-6  # shares must add up to 1 within this
SETTINGS = ("similar_alpha", "exploration_share")  # the serving settings an arm may change


class ExperimentError(ValueError):
    """An experiment definition that cannot run; the message names the field and what is wrong."""


@dataclass(frozen=True)
class Arm:
    """One arm: a published version, its share of visitors and, optionally, a serving setting."""

    name: str
    version: int
    share: float
    similar_alpha: float | None = None  # the hero's weight in ``similar`` (None: the version's default)
    exploration_share: float | None = None  # carousels with an explored slot (None: online.exploration_share)

    def ensemble(self, base: str) -> str:
        """The name of this arm's copy of ensemble ``base`` (``recommend`` → ``recommend_v4``)."""
        return arm_ensemble(base, self.version)


@dataclass(frozen=True)
class Experiment:
    """A running comparison of arms. ``start``/``end`` are UTC; ``end`` None: until stopped."""

    name: str
    salt: str
    arms: tuple[Arm, ...]
    start: datetime
    end: datetime | None = None

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def active(self, at: datetime | float) -> bool:
        """Whether visitors are assigned at ``at`` (a datetime or epoch seconds)."""
        moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, timezone.utc)
        return self.start <= moment and (self.end is None or moment < self.end)

    def arm_for(self, unit: str) -> Arm:
        """The arm of a visitor (customer id or ``session:<id>``): stable, and uniform over the shares."""
        point = assignment_point(self.salt, unit)
        cumulative = 0.0
        for arm in self.arms:
            cumulative += arm.share
            if point < cumulative:
                return arm
        return self.arms[-1]  # rounding of the last cumulative share

    def versions(self) -> list[int]:
        return sorted({arm.version for arm in self.arms})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"] = _iso(self.start)
        data["end"] = _iso(self.end) if self.end else None
        data["arms"] = [{k: v for k, v in asdict(arm).items() if v is not None} for arm in self.arms]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: ExperimentConfig | None = None) -> Experiment:
        """The experiment, checked: names, shares adding up to 1, distinct arms, start before end."""
        config = config or ExperimentConfig()
        unknown = set(data) - {"name", "salt", "arms", "start", "end"}
        if unknown:
            raise ExperimentError(f"unknown field(s) {sorted(unknown)}; an experiment has name, salt, arms, start, end")
        name = _name(data.get("name"), "name")
        salt = data.get("salt") or name
        if not isinstance(salt, str) or len(salt) > 200:
            raise ExperimentError(f"salt must be a text of at most 200 characters, got {salt!r:.80}")
        arms = _arms(data.get("arms"), config)
        start = _time(data.get("start"), "start") if data.get("start") else datetime.now(timezone.utc)
        end = _time(data["end"], "end") if data.get("end") else None
        if end is not None and end <= start:
            raise ExperimentError(f"end ({_iso(end)}) must be after start ({_iso(start)})")
        return cls(name, salt, arms, start, end)


def assignment_point(salt: str, unit: str) -> float:
    """``sha256(salt:unit)`` as a number in [0, 1): the same everywhere, for every process."""
    digest = hashlib.sha256(f"{salt}:{unit}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm_ensemble(base: str, version: int) -> str:
    return f"{base}_v{int(version)}"


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ExperimentError(f"{field} must be 1-63 lowercase letters, digits, '-' or '_' (starting with a letter or "
                              f"digit), got {value!r:.80}")
    return value


def _arms(raw: Any, config: ExperimentConfig) -> tuple[Arm, ...]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= config.max_arms:
        raise ExperimentError(f"arms must be a list of 2..{config.max_arms} arms, the first the control")
    arms = []
    for index, item in enumerate(raw):
        where = f"arms[{index}]"
        if not isinstance(item, Mapping):
            raise ExperimentError(f"{where} must be an object with name, version, share")
        unknown = set(item) - {"name", "version", "share", *SETTINGS}
        if unknown:
            raise ExperimentError(f"{where} has unknown field(s) {sorted(unknown)}; an arm has name, version, share "
                                  f"and optionally {', '.join(SETTINGS)}")
        version, share = item.get("version"), item.get("share")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ExperimentError(f"{where}.version must be a published version number, got {version!r:.40}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ExperimentError(f"{where}.share must be in (0, 1], got {share!r:.40}")
        settings = {name: _fraction(item.get(name), f"{where}.{name}") for name in SETTINGS}
        arms.append(Arm(_name(item.get("name"), f"{where}.name"), version, float(share), **settings))
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names must be distinct, got {names}")
    variants = [(arm.version, arm.similar_alpha, arm.exploration_share) for arm in arms]
    if len(set(variants)) != len(variants) and len({arm.version for arm in arms}) > 1:
        raise ExperimentError("two arms serve the same version with the same settings; only an A/A test (every arm "
                              "the same) may repeat one")
    total = sum(arm.share for arm in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ExperimentError(f"arm shares must add up to 1, got {total:.6f}")
    return tuple(arms)


def _fraction(value: Any, field: str) -> float | None:
    """An optional setting in [0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ExperimentError(f"{field} must be in [0, 1], got {value!r:.40}")
    return float(value)


def _time(value: Any, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ExperimentError(f"{field} must be an ISO 8601 time, got {value!r:.60}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the file beside the manifest ------------------------------------------------------------------------------
def experiment_uri(repository: str) -> str:
    return storage.join(str(repository), EXPERIMENT_FILE)


def read_experiment(repository: str, config: ExperimentConfig | None = None) -> Experiment | None:
    """The repository's experiment (running, scheduled or ended but not stopped); None when there is none."""
    uri = experiment_uri(repository)
    if not storage.exists(uri):
        return None
    return Experiment.from_dict(storage.read_json(uri), config)


def arm_versions(repository: str) -> list[int]:
    """The versions the python steps must keep loaded for the repository's experiment (none without one)."""
    experiment = read_experiment(repository)
    return experiment.versions() if experiment else []


def arm_models(experiment: Experiment | None, serving: ServingConfig) -> list[str]:
    """The arm ensembles an experiment needs in the repository."""
    if experiment is None:
        return []
    bases = [serving.model_name, serving.rerank_model_name, serving.similar_model_name]
    return [arm_ensemble(base, version) for version in experiment.versions() for base in bases]


def write_experiment(repository: str, experiment: Experiment) -> None:
    """Replace the file whole (a shop re-reading it never sees half of it)."""
    write_text(experiment_uri(repository), json.dumps(experiment.to_dict(), indent=2, sort_keys=True) + "\n")


def remove_experiment(repository: str) -> None:
    storage.remove(experiment_uri(repository))
