"""Which published versions Triton can load side by side: one config per model, so two versions whose
python-model configs differ cannot both serve (the check behind activation during an experiment and
``experiment start``; both run on a real server in tests/serving/test_versions.py)."""

from __future__ import annotations

from fashionrec.config import ServingConfig
from fashionrec.repository.versions import _unservable_pair

SERVING = ServingConfig()
RANKING, EMBED = SERVING.ranking_model_name, SERVING.embed_model_name


def configs(ranking: str, **others: str) -> dict[str, str]:
    return {SERVING.customer_model_name: "c", SERVING.blend_model_name: "b", RANKING: ranking,
            SERVING.model_name: "ensemble", **others}


def test_versions_with_the_same_python_configs_serve_together_whatever_their_ensembles() -> None:
    assert _unservable_pair({1: configs("r"), 2: configs("r", **{SERVING.model_name: "other"})}, SERVING) is None


def test_the_first_clashing_pair_in_order_is_named_with_the_models_that_differ() -> None:
    versions = {3: configs("r"), 1: configs("r"), 2: configs("wider", **{EMBED: "e"})}
    assert _unservable_pair(versions, SERVING) == (3, 2, [RANKING])


def test_a_model_only_one_version_has_does_not_clash() -> None:
    assert _unservable_pair({1: configs("r", **{EMBED: "e1"}), 2: configs("r")}, SERVING) is None
    assert _unservable_pair({1: configs("r", **{EMBED: "e1"}), 2: configs("r", **{EMBED: "e2"})},
                            SERVING) == (1, 2, [EMBED])
