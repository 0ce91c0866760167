from fashionrec.config import EvaluateConfig
from fashionrec.evaluation import gate

CONFIG = EvaluateConfig(gate_metric="recall@20", min_gate_metric=0.05, min_lift_over_popularity=0.1)


def test_model_clearly_better_than_popularity_is_blessed():
    checks = gate.gate_checks({"recall@20": 0.3}, {"recall@20": 0.2}, CONFIG)
    result = gate.blessing(checks, {})
    assert result["blessed"] is True
    assert result["reasons"] == []
    assert [c["passed"] for c in result["checks"]] == [True, True]


def test_model_within_the_required_lift_is_not_blessed_and_says_why():
    checks = gate.gate_checks({"recall@20": 0.21}, {"recall@20": 0.2}, CONFIG)
    result = gate.blessing(checks, {})
    assert result["blessed"] is False
    assert result["reasons"] == ["recall@20 beats popularity: 0.2100 vs 0.2200"]


def test_model_below_the_floor_is_not_blessed():
    checks = gate.gate_checks({"recall@20": 0.04}, {"recall@20": 0.0}, CONFIG)
    assert not gate.blessing(checks, {})["blessed"]
