"""The experiment definition: checked fields, stable and uniform assignment, the file beside the manifest."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fashionrec.config import ExperimentConfig
from fashionrec.repository.experiments import (Experiment, ExperimentError, arm_ensemble, assignment_point,
                                               read_experiment, remove_experiment, write_experiment)

ARMS = [{"name": "control", "version": 3, "share": 0.5}, {"name": "treatment", "version": 4, "share": 0.3},
        {"name": "blend", "version": 4, "share": 0.2, "similar_alpha": 0.7}]


def experiment(**fields: object) -> Experiment:
    return Experiment.from_dict({"name": "ranker-dec", "salt": "s1", "arms": ARMS, "start": "2026-12-01T00:00:00Z",
                                 **fields})


def test_the_assignment_point_is_the_first_8_bytes_of_sha256_as_a_fraction() -> None:
    digest = hashlib.sha256(b"s1:C000042").digest()
    expected = int.from_bytes(digest[:8], "big") / 2**64
    assert assignment_point("s1", "C000042") == expected
    # cut at the cumulative shares 0.5 | 0.8 | 1.0
    arm = experiment().arm_for("C000042").name
    assert arm == ("control" if expected < 0.5 else "treatment" if expected < 0.8 else "blend")


def test_assignment_is_sticky_across_replicas_and_uniform_over_100k_ids() -> None:
    replica_a, replica_b = experiment(), experiment()  # two processes reading the same file
    units = [f"C{i:07d}" for i in range(50_000)] + [f"session:{i:x}" for i in range(50_000)]
    arms_a = [replica_a.arm_for(unit).name for unit in units]
    assert arms_a == [replica_b.arm_for(unit).name for unit in units]
    counts = np.array([arms_a.count(name) for name in ("control", "treatment", "blend")])
    _, p_value = stats.chisquare(counts, np.array([0.5, 0.3, 0.2]) * len(units))
    assert p_value > 0.001, counts


def test_a_new_salt_reshuffles_about_as_many_visitors_as_chance_would() -> None:
    units = [f"C{i:06d}" for i in range(20_000)]
    before = [experiment().arm_for(u).name == "control" for u in units]
    after = [experiment(salt="s2").arm_for(u).name == "control" for u in units]
    both = np.mean(np.array(before) & np.array(after))
    assert abs(both - 0.25) < 0.015  # independent halves overlap in a quarter


def test_active_between_start_and_end() -> None:
    running = experiment(end="2026-12-08T00:00:00Z")
    assert not running.active(datetime(2026, 11, 30, tzinfo=timezone.utc))
    assert running.active(datetime(2026, 12, 3, tzinfo=timezone.utc).timestamp())
    assert not running.active(datetime(2026, 12, 8, tzinfo=timezone.utc))


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "Bad Name"}, "name must be 1-63 lowercase"),
    ({"arms": ARMS[:1]}, "arms must be a list of 2..8"),
    ({"arms": [{**ARMS[0], "share": 0.6}, ARMS[1], ARMS[2]]}, "shares must add up to 1, got 1.100000"),
    ({"arms": [ARMS[0], {**ARMS[1], "name": "control"}, ARMS[2]]}, "arm names must be distinct"),
    ({"arms": [ARMS[0], {**ARMS[1], "version": 0}, ARMS[2]]}, r"arms\[1\].version must be a published version"),
    ({"arms": [ARMS[0], {**ARMS[1], "colour": "red"}, ARMS[2]]}, r"arms\[1\] has unknown field\(s\) \['colour'\]"),
    ({"arms": [ARMS[0], ARMS[1], {**ARMS[2], "similar_alpha": 2}]}, r"arms\[2\].similar_alpha must be in \[0, 1\]"),
    ({"arms": [ARMS[0], ARMS[1], {**ARMS[2], "exploration_share": -0.1}]},
     r"arms\[2\].exploration_share must be in \[0, 1\]"),
    ({"arms": [ARMS[0], {**ARMS[1], "version": 3}, ARMS[2]]}, "two arms serve the same version"),
    ({"end": "2026-11-01T00:00:00Z"}, "end .* must be after start"),
    ({"start": "yesterday"}, "start must be an ISO 8601 time"),
    ({"owner": "me"}, r"unknown field\(s\) \['owner'\]"),
])
def test_a_definition_that_cannot_run_is_refused_with_its_reason(fields: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        experiment(**fields)


def test_an_a_a_test_may_repeat_one_version() -> None:
    same = Experiment.from_dict({"name": "aa", "arms": [{"name": "a", "version": 2, "share": 0.5},
                                                       {"name": "b", "version": 2, "share": 0.5}]})
    assert same.versions() == [2] and same.salt == "aa"


def test_more_arms_than_configured_are_refused() -> None:
    arms = [{"name": f"a{i}", "version": i + 1, "share": 1 / 3} for i in range(3)]
    with pytest.raises(ExperimentError, match="2..2 arms"):
        Experiment.from_dict({"name": "x", "arms": arms}, ExperimentConfig(max_arms=2))


def test_the_file_round_trips_and_removing_it_ends_the_experiment(tmp_path: Path) -> None:
    assert read_experiment(str(tmp_path)) is None
    original = experiment(end="2026-12-08T00:00:00Z")
    write_experiment(str(tmp_path), original)
    assert read_experiment(str(tmp_path)) == original
    assert original.to_dict()["arms"][0] == ARMS[0]  # unset settings are left out
    remove_experiment(str(tmp_path))
    assert read_experiment(str(tmp_path)) is None


def test_arm_ensembles_are_named_by_version() -> None:
    assert arm_ensemble("recommend", 4) == "recommend_v4"
    assert experiment().arms[2].ensemble("similar") == "similar_v4"
