"""A one-step pipeline that reports an A/B experiment from a shop's event log (local or gs://), so the
report can run where the training pipeline runs (Kubeflow, Vertex AI, ``kfp.local``) and its HTML shows in
their UI. The same definition is compiled to YAML and run locally."""

from kfp import dsl

from components.stages import report_experiment
from fashionrec.config import ExperimentConfig

PIPELINE_NAME = "fashionrec-experiment-report"


@dsl.pipeline(name=PIPELINE_NAME, description="Online A/B experiment report from the shop's event log.")
def experiment_report_pipeline(experiment: str, log_dir: str,
                               experiment_config: str = ExperimentConfig().to_json()):
    """``experiment``: the experiment's JSON definition (``fashionrec experiment status`` prints it)."""
    report_experiment(experiment_config=experiment_config, experiment=experiment, log_dir=log_dir)
