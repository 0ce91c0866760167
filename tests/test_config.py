import subprocess
import sys

import pytest

from fashionrec.config import (
    POOLINGS,
    FUTURE_SET_SETTINGS,
    ConfigError,
    EvaluateConfig,
    PipelineConfig,
    TrainConfig,
    parse_assignments,
)


def test_json_round_trip_keeps_nested_values_and_tuples():
    config = PipelineConfig().with_overrides({"train.epochs": 7, "evaluate.top_k": [5, 10, 20, 50]})
    restored = PipelineConfig.from_json(config.to_json())
    assert restored == config
    assert restored.train.epochs == 7
    assert restored.evaluate.top_k == (5, 10, 20, 50)


def test_overrides_leave_other_fields_at_their_defaults():
    config = PipelineConfig().with_overrides({"shop.num_products": 123})
    assert config.shop.num_products == 123
    assert config.train == TrainConfig()


@pytest.mark.parametrize("key", ["train.epoch", "nosuch.field", "train.epochs.deeper"])
def test_unknown_override_is_rejected(key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        PipelineConfig().with_overrides({key: 1})


def test_unknown_field_names_the_close_match_and_every_field():
    with pytest.raises(ConfigError) as raised:
        PipelineConfig().with_overrides({"train.epoch": 1})
    assert "did you mean 'epochs'?" in str(raised.value)
    assert "learning_rate" in str(raised.value)  # the section's fields are listed


def test_unknown_json_field_is_rejected_with_its_section():
    with pytest.raises(ConfigError, match=r"^train\.bogus: unknown field"):
        PipelineConfig.from_json('{"train": {"bogus": 1}}')


@pytest.mark.parametrize(("overrides", "message"), [
    ({"train.epochs": "five"}, "train.epochs: expected a whole number, got 'five'"),
    ({"train.epochs": 2.5}, "train.epochs: expected a whole number, got 2.5"),
    ({"train.pooling": "recncy"}, "train.pooling: 'recncy' is not one of " + ", ".join(POOLINGS)),
    ({"train.temperature": 0}, "train.temperature: must be above 0.0, got 0.0"),
    ({"train.logq_correction": "maybe"}, "train.logq_correction: expected true or false, got 'maybe'"),
    ({"ingest.holdout_fraction": 1.0}, "ingest.holdout_fraction: must lie strictly between 0 and 1, got 1.0"),
    ({"ingest.split_time": "yesterday"}, "ingest.split_time: expected an ISO date or time"),
    ({"ingest.event_weights.click": -1}, "ingest.event_weights.click: must be at least 0.0, got -1.0"),
    ({"evaluate.top_k": [10, 0]}, "evaluate.top_k: must be at least 1, got 0"),
    ({"evaluate.gate_metric": "recall@30"}, "evaluate.gate_metric: 'recall@30' is not one of mrr, recall@10"),
    ({"evaluate.exclude": "everything"}, "evaluate.exclude: 'everything' is not one of all_seen, window"),
    ({"serving.table_dtype": "int8"}, "serving.table_dtype: 'int8' is not one of float32, float16"),
    ({"serving.http_port": 70_000}, "serving.http_port: must be at most 65535, got 70000"),
    ({"serving.default_top_k": 5_000}, "serving.default_top_k: must be at most max_top_k (1000), got 5000"),
    ({"transform.next_event_examples": False}, "transform.next_event_examples: train.objective=next_event trains on"),
    ({"train.weight_averaging": 1.0}, "train.weight_averaging: a momentum of 1 never moves the average"),
    ({"train.weight_averaging": 1.5}, "train.weight_averaging: must be at most 1.0, got 1.5"),
])
def test_a_bad_value_names_the_field_and_what_it_accepts(overrides, message):
    with pytest.raises(ConfigError) as raised:
        PipelineConfig().with_overrides(overrides)
    assert str(raised.value).startswith(message)


def test_the_future_set_objective_needs_no_next_event_examples():
    assert not PipelineConfig().with_overrides(FUTURE_SET_SETTINGS).transform.next_event_examples
    assert PipelineConfig().with_overrides({"train.objective": "future_set"}).transform.next_event_examples  # allowed


def test_sections_check_themselves_when_built_directly():
    with pytest.raises(ConfigError, match="pooling: 'recncy' is not one of"):
        TrainConfig(pooling="recncy")
    with pytest.raises(ConfigError, match="compare_metrics: 'auc' is not one of"):
        EvaluateConfig(compare_metrics=("auc",))


def test_text_values_are_read_as_the_fields_types():
    config = PipelineConfig().with_settings([
        "train.epochs=3", "train.learning_rate=1e-3", "train.logq_correction=false", "train.pooling=mean",
        "evaluate.top_k=10,20,50", "ingest.split_time=none", "ingest.latest_timestamp=2027-01-01",
        "transform.beam_options=[\"--project=p\", \"--region=r\"]", "ingest.event_weights.purchase=4",
    ])
    assert (config.train.epochs, config.train.learning_rate, config.train.logq_correction) == (3, 0.001, False)
    assert config.train.pooling == "mean"
    assert config.evaluate.top_k == (10, 20, 50)
    assert config.ingest.split_time is None and config.ingest.latest_timestamp == "2027-01-01"
    assert config.transform.beam_options == ("--project=p", "--region=r")
    assert config.ingest.event_weights.purchase == 4.0


def test_ints_are_accepted_for_float_fields_and_stored_as_floats():
    config = PipelineConfig().with_overrides({"export.popularity_prior_weight": 2})
    assert isinstance(config.export.popularity_prior_weight, float)
    assert PipelineConfig.from_json(config.to_json()) == config


def test_assignments_need_a_key_and_an_equals_sign():
    assert parse_assignments(["a.b=1", "c.d=x=y"]) == {"a.b": "1", "c.d": "x=y"}
    for bad in ("train.epochs", "=3"):
        with pytest.raises(ConfigError, match="expected KEY=VALUE"):
            parse_assignments([bad])


CHECK_TYPO = """
import sys
from click.testing import CliRunner
from fashionrec.app.cli import main
result = CliRunner().invoke(main, ["pipeline", "run", "--local", "--set", "train.poolng=mean"])
heavy = sorted(m for m in ("tensorflow", "apache_beam", "tensorflow_transform", "kfp") if m in sys.modules)
print(result.exit_code, heavy)
print(result.output)
"""


def test_a_typo_in_set_fails_before_the_heavy_stack_is_imported():
    """The CLI checks --set before it imports TensorFlow, Beam or KFP, so a typo costs well under a second."""
    result = subprocess.run([sys.executable, "-c", CHECK_TYPO], capture_output=True, text=True, timeout=120)
    first, output = result.stdout.split("\n", 1)
    assert first == "2 []"
    assert "train.poolng: unknown field 'poolng' in train; did you mean 'pooling'?" in output
