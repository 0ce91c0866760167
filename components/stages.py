"""One component per pipeline stage. Logic lives in ``fashionrec``; these only move artifacts.

Each component takes only the config sections its stage reads, as JSON (``<section>_config``), so KFP's
cache key of a task changes only with the settings that can change its output: a new ``evaluate.seed``
re-runs evaluation and publishing, never Beam or training.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from fashionrec.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def prepare_dataset(shop_config: str, dataset: str, data_dir: str, raw_data: Output[Dataset]):
    """Canonical input files for a named dataset (synthetic shop, MovieLens, H&M or a retailer's own)."""
    from dataclasses import asdict

    from fashionrec.config import ShopConfig
    from fashionrec.datasets import prepare_dataset as prepare

    raw = prepare(dataset, data_dir or None, raw_data.path, ShopConfig.from_json(shop_config))
    raw_data.metadata.update({"dataset": dataset, **asdict(raw)})


@dsl.component(base_image=COMPONENT_IMAGE)
def ingest_data(ingest_config: str, raw_data: Input[Dataset], ingested: Output[Dataset]):
    """Validate, quarantine bad rows and split by time."""
    from fashionrec.config import IngestConfig
    from fashionrec.stages.ingest import ingest

    summary = ingest(
        raw_data.metadata["catalogue_uri"],
        raw_data.metadata["events_uri"],
        ingested.path,
        IngestConfig.from_json(ingest_config),
    )
    ingested.metadata.update({k: v for k, v in summary.as_dict().items() if k != "quarantined"})
    ingested.metadata["quarantined"] = sum(summary.quarantined.values())


@dsl.component(base_image=COMPONENT_IMAGE)
def transform_data(transform_config: str, ingested: Input[Dataset], transformed: Output[Dataset]):
    """Beam + tensorflow-transform: vocabularies, tokens, features, training and holdout examples."""
    from dataclasses import asdict

    from fashionrec.config import TransformConfig
    from fashionrec.stages.transform import transform

    summary = transform(ingested.path, transformed.path, TransformConfig.from_json(transform_config))
    transformed.metadata.update(asdict(summary))


@dsl.component(base_image=COMPONENT_IMAGE)
def train_model(train_config: str, transform_config: str, transformed: Input[Dataset], model: Output[Model]):
    """Train the two-tower model."""
    from dataclasses import asdict

    from fashionrec.config import TrainConfig, TransformConfig
    from fashionrec.stages.train import train

    summary = train(transformed.path, model.path, TrainConfig.from_json(train_config),
                    TransformConfig.from_json(transform_config))
    model.metadata.update(asdict(summary))


@dsl.component(base_image=COMPONENT_IMAGE)
def export_embeddings(
    ingest_config: str, export_config: str, ingested: Input[Dataset], transformed: Input[Dataset],
    model: Input[Model], embeddings: Output[Dataset],
):
    """Embed every catalogue product, new products included; record how histories are pooled and the
    popularity prior every score adds."""
    from dataclasses import asdict

    from fashionrec.config import ExportConfig, IngestConfig
    from fashionrec.stages.export import export_embeddings as export

    event_weights = IngestConfig.from_json(ingest_config).event_weights
    embeddings.metadata.update(asdict(export(ingested.path, transformed.path, model.path, embeddings.path,
                                             event_weights, ExportConfig.from_json(export_config))))


@dsl.component(base_image=COMPONENT_IMAGE)
def evaluate_model(
    evaluate_config: str,
    serving_config: str,
    ingested: Input[Dataset],
    transformed: Input[Dataset],
    embeddings: Input[Dataset],
    model_repository: str,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
) -> bool:
    """Holdout metrics for the model, the baselines and the published model; returns the gate's verdict."""
    import os

    from fashionrec.config import EvaluateConfig, ServingConfig
    from fashionrec.artifacts import REPORT_FILE
    from fashionrec.evaluation.evaluate import evaluate

    result = evaluate(ingested.path, transformed.path, embeddings.path, evaluation.path,
                      EvaluateConfig.from_json(evaluate_config), model_repository=model_repository,
                      serving=ServingConfig.from_json(serving_config))
    for system, values in result.metrics.items():
        for name, value in values.items():
            metrics.log_metric(f"{system}/{name}", value)
    evaluation.metadata.update({"blessed": result.blessed, "reasons": result.blessing["reasons"]})
    with open(os.path.join(evaluation.path, REPORT_FILE), "rb") as source, open(report.path, "wb") as target:
        target.write(source.read())  # the same page, as an HTML artifact the Kubeflow / Vertex UI renders
    return result.blessed


@dsl.component(base_image=COMPONENT_IMAGE)
def publish_model(
    serving_config: str, evaluate_config: str, registry_config: str, embeddings: Input[Dataset],
    evaluation: Input[Artifact], model_repository: str, published_model: Output[Model],
) -> int:
    """Write the next version of the Triton model repository (refusing a model that is not blessed), register it
    in Vertex AI Model Registry when ``registry_config`` names a project and region, and return its number.
    ``published_model`` points at the repository (its URI) and records the version, the gate's verdict and
    headline metrics, the catalogue's size and the registry version: the run's lineage in the Pipelines UIs."""
    from fashionrec.config import EvaluateConfig, RegistryConfig, ServingConfig
    from fashionrec.repository.registry import publish_and_register

    record = publish_and_register(embeddings.path, evaluation.path, model_repository,
                                  ServingConfig.from_json(serving_config), EvaluateConfig.from_json(evaluate_config),
                                  RegistryConfig.from_json(registry_config))
    published_model.uri = record.repository_uri
    published_model.metadata.update(record.metadata())
    return record.version


@dsl.component(base_image=COMPONENT_IMAGE)
def report_experiment(
    experiment_config: str, experiment: str, log_dir: str, summary: Output[Artifact], metrics: Output[Metrics],
    report: Output[HTML],
) -> str:
    """The online report of an A/B experiment from a shop's event log; returns its verdict."""
    import json
    import os

    from fashionrec.config import ExperimentConfig
    from fashionrec.evaluation.experiment_report import HTML_FILE, report_from_log
    from fashionrec.repository.experiments import Experiment

    config = ExperimentConfig.from_json(experiment_config)
    result = report_from_log(Experiment.from_dict(json.loads(experiment), config), log_dir, summary.path, config)
    for arm in result.arms:
        for name, value in arm.metrics.items():
            if value is not None:
                metrics.log_metric(f"{arm.name}/{name}", value)
    summary.metadata.update({"verdict": result.verdict, "srm_p_value": result.sample_ratio.p_value})
    with open(os.path.join(summary.path, HTML_FILE), "rb") as source, open(report.path, "wb") as target:
        target.write(source.read())  # the same page, as an HTML artifact the Kubeflow / Vertex UI renders
    return result.verdict
