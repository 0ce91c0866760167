"""The whole loop at a small size, every part real: the pipeline trains and publishes a model; an A/B test
against a shuffled copy of it runs through a real Triton and the real shop service with simulated customers;
the report finds the trained model better; the pipeline retrains on the shop's event log, position-debiased by
the curve from the control arm's exploration; the new version goes into an experiment against the old one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashionrec import artifacts
from fashionrec.app.lab import ShopInputs, ShopLab, publish_shuffled, report_of, resalted
from fashionrec.app.training_data import training_data
from fashionrec.app.runner import run_local
from fashionrec.config import SimulationConfig, dataset_config
from fashionrec.embeddings_file import read_exported
from fashionrec.evaluation.experiment_report import read_experiment_log
from fashionrec.model.popularity import prior_from_events
from fashionrec.repository.experiments import Experiment
from fashionrec.repository.manifest import read_manifest

pytestmark = pytest.mark.e2e

# Shuffled carousels (RandTop-n) make every slot of an explored carousel a randomised one: about 300 explored
# clicks where inserting one product makes 15, whose fitted curve came out flat (nothing to debias) now and then.
SMALL = {"shop.num_customers": 2_000, "shop.num_products": 600, "train.epochs": 2, "experiment.refresh_s": 0.5,
         "online.exploration_mode": "shuffle"}
CONFIG = dataset_config("synthetic", SMALL)
TRAFFIC = SimulationConfig(days=2, visitors_per_day=150, concurrency=4, seed=11)
# The loop's retrain checks the plumbing, not the model: the gate lets any model of the log through.
LENIENT_GATE = {"evaluate.min_gate_metric": 0.0, "evaluate.min_lift_over_baseline": -1.0,
                "evaluate.allowed_change": -1.0, "evaluate.equal_within_noise": "bless"}
AA_SALTS = 40
EXPLORATION = 0.5  # of the control arm's carousels: the retrain's examination curve comes from them
# The log is the newest 2.5 % of the retrain's events: a 1 % holdout leaves most of it for training.
DEBIASED = {"train.position_debiasing": "ips", "ingest.holdout_fraction": 0.01}


def ab(name: str, control: int, treatment: int, control_exploration: float = 0.0) -> Experiment:
    return Experiment.from_dict({"name": name, "salt": name, "arms": [
        {"name": "control", "version": control, "share": 0.5, "exploration_share": control_exploration},
        {"name": "treatment", "version": treatment, "share": 0.5}]})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> ShopInputs:
    return ShopInputs.of_run(run_local(str(tmp_path_factory.mktemp("pipeline")), CONFIG))


def test_the_loop_finds_the_trained_model_better_then_retrains_on_the_log_and_tests_again(
        trained: ShopInputs, tmp_path: Path) -> None:
    shuffled = publish_shuffled(trained.model_repository, CONFIG.serving)
    assert shuffled == 2 and read_manifest(trained.model_repository)["serving_version"] == 1
    with ShopLab(trained, CONFIG, tmp_path / "lab", echo=lambda line: None) as lab:
        first = lab.run(ab("trained-vs-shuffled", 1, shuffled, control_exploration=EXPLORATION), TRAFFIC)
        report = first.report
        assert first.summary.errors == {} and first.summary.fallbacks == 0
        assert not report.sample_ratio.detected
        ctr = report.comparison("treatment", "ctr")
        assert ctr.verdict == "worse" and ctr.difference.high < 0, ctr  # the shuffled table loses clicks

        events, impressions = read_experiment_log(first.log_dir)
        same = [report_of(experiment, first.log_dir, CONFIG, resalted(events, impressions, "control", experiment))
                for experiment in (ab(f"aa-{salt}", 1, 1) for salt in range(AA_SALTS))]
        equal = sum(r.verdict == "equal within noise" for r in same)
        # At a 95 % interval's 5 % error, more than 6 of 40 differ with probability 0.3 % (more than 4: 4.8 %, so
        # one correct CI run in 21 failed); a report whose intervals erred 20 % of the time would fail 71 % of runs.
        assert equal >= AA_SALTS - 6, [r.verdict for r in same]

        data = training_data(first.log_dir, tmp_path / "retrain", history=trained.history,
                             debias_window_s=CONFIG.experiment.attribution_window_s)
        assert data.curve[1] == 1.0 and 0 < data.examined_events <= data.log_events, data
        assert data.curve[max(data.curve)] < 0.8, data  # the simulator's true curve is 0.85 ** 9 = 0.23 there
        retrained = run_local(str(tmp_path / "pipeline"), CONFIG.with_overrides({**LENIENT_GATE, **DEBIASED}),
                              model_repository=trained.model_repository, dataset="canonical", data_dir=data.folder)
        ingested = pd.read_parquet(retrained.artifact("ingest-data", "ingested") / artifacts.TRAIN_EVENTS_FILE)
        known = ingested["examination"].dropna()  # the seed history's events were shown nowhere: unknown
        assert len(known) > 0 and known.between(0, 1, inclusive="right").all()
        exported = read_exported(str(retrained.artifact("export-embeddings", "embeddings") / artifacts.EMBEDDINGS_FILE))
        cap = CONFIG.train.max_inverse_examination  # the prior counts the log's clicks as the towers weigh them
        debiased = prior_from_events(ingested, exported.product_ids, CONFIG.export, max_inverse_examination=cap)
        np.testing.assert_allclose(exported.prior, debiased, rtol=1e-6)
        assert not np.allclose(exported.prior, prior_from_events(ingested, exported.product_ids, CONFIG.export))
        assert retrained.model_repository == Path(trained.model_repository)
        new = read_manifest(trained.model_repository)["latest_version"]
        assert new == 3
        second = lab.run(ab("trained-vs-retrained", 1, new), SimulationConfig(days=1, visitors_per_day=40, seed=12))
    assert {arm.name: arm.version for arm in second.report.arms} == {"control": 1, "treatment": 3}
    assert all(arm.visitors > 0 and arm.impressions > 0 for arm in second.report.arms)
    assert second.summary.errors == {}
