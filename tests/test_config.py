import pytest

from fashionrec.config import PipelineConfig, TrainConfig


def test_json_round_trip_keeps_nested_values_and_tuples():
    config = PipelineConfig().with_overrides({"train.epochs": 7, "evaluate.top_k": [5, 50]})
    restored = PipelineConfig.from_json(config.to_json())
    assert restored == config
    assert restored.train.epochs == 7
    assert restored.evaluate.top_k == (5, 50)


def test_overrides_leave_other_fields_at_their_defaults():
    config = PipelineConfig().with_overrides({"shop.num_products": 123})
    assert config.shop.num_products == 123
    assert config.train == TrainConfig()


@pytest.mark.parametrize("key", ["train.epoch", "nosuch.field", "train.epochs.deeper"])
def test_unknown_override_is_rejected(key):
    with pytest.raises(KeyError):
        PipelineConfig().with_overrides({key: 1})


def test_unknown_json_field_is_rejected():
    with pytest.raises(KeyError, match="bogus"):
        PipelineConfig.from_json('{"train": {"bogus": 1}}')
