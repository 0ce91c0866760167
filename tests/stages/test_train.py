import dataclasses

from fashionrec import storage
from fashionrec.config import TrainConfig
from fashionrec.stages.train import load_saved_configs
from fashionrec.artifacts import TRAIN_CONFIG_FILE


def test_a_model_saved_before_the_id_fade_in_loads_with_it_off(tmp_path):
    saved = dataclasses.asdict(TrainConfig())
    del saved["id_fade_in_events"]
    storage.write_json(str(tmp_path / TRAIN_CONFIG_FILE), {"train": saved, "transform": {}})
    assert load_saved_configs(str(tmp_path)).train.id_fade_in_events == 0.0
    assert TrainConfig().id_fade_in_events > 0  # what a new model gets
