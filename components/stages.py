"""One component per pipeline stage. Logic lives in ``fashionrec``; these only move artifacts."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from fashionrec.config import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def prepare_dataset(config_json: str, dataset: str, data_dir: str, raw_data: Output[Dataset]):
    """Canonical input files for a named dataset (synthetic shop, MovieLens, H&M or a retailer's own)."""
    from dataclasses import asdict

    from fashionrec.config import PipelineConfig
    from fashionrec.datasets import prepare_dataset as prepare

    raw = prepare(dataset, data_dir or None, raw_data.path, PipelineConfig.from_json(config_json).shop)
    raw_data.metadata.update({"dataset": dataset, **asdict(raw)})


@dsl.component(base_image=COMPONENT_IMAGE)
def ingest_data(config_json: str, raw_data: Input[Dataset], ingested: Output[Dataset]):
    """Validate, quarantine bad rows and split by time."""
    from fashionrec.config import PipelineConfig
    from fashionrec.ingest import ingest

    summary = ingest(
        raw_data.metadata["catalogue_uri"],
        raw_data.metadata["events_uri"],
        ingested.path,
        PipelineConfig.from_json(config_json).ingest,
    )
    ingested.metadata.update({k: v for k, v in summary.as_dict().items() if k != "quarantined"})
    ingested.metadata["quarantined"] = sum(summary.quarantined.values())


@dsl.component(base_image=COMPONENT_IMAGE)
def transform_data(config_json: str, ingested: Input[Dataset], transformed: Output[Dataset]):
    """Beam + tensorflow-transform: vocabularies, tokens, features, training and holdout examples."""
    from dataclasses import asdict

    from fashionrec.config import PipelineConfig
    from fashionrec.transform import transform

    summary = transform(ingested.path, transformed.path, PipelineConfig.from_json(config_json).transform)
    transformed.metadata.update(asdict(summary))


@dsl.component(base_image=COMPONENT_IMAGE)
def train_model(config_json: str, transformed: Input[Dataset], model: Output[Model]):
    """Train the two-tower model."""
    from dataclasses import asdict

    from fashionrec.config import PipelineConfig
    from fashionrec.train import train

    config = PipelineConfig.from_json(config_json)
    summary = train(transformed.path, model.path, config.train, config.transform)
    model.metadata.update(asdict(summary))


@dsl.component(base_image=COMPONENT_IMAGE)
def export_embeddings(
    config_json: str, ingested: Input[Dataset], transformed: Input[Dataset], model: Input[Model],
    embeddings: Output[Dataset],
):
    """Embed every catalogue product, new products included; record how histories are pooled and the
    popularity prior every score adds."""
    from dataclasses import asdict

    from fashionrec.config import PipelineConfig
    from fashionrec.export import export_embeddings as export

    config = PipelineConfig.from_json(config_json)
    embeddings.metadata.update(asdict(export(ingested.path, transformed.path, model.path, embeddings.path,
                                             config.ingest.event_weights, config.export)))


@dsl.component(base_image=COMPONENT_IMAGE)
def evaluate_model(
    config_json: str,
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

    from fashionrec.config import PipelineConfig
    from fashionrec.evaluation.evaluate import REPORT_FILE, evaluate

    config = PipelineConfig.from_json(config_json)
    result = evaluate(ingested.path, transformed.path, embeddings.path, evaluation.path, config.evaluate,
                      model_repository=model_repository, serving=config.serving)
    for system, values in result.metrics.items():
        for name, value in values.items():
            metrics.log_metric(f"{system}/{name}", value)
    evaluation.metadata.update({"blessed": result.blessed, "reasons": result.blessing["reasons"]})
    with open(os.path.join(evaluation.path, REPORT_FILE), "rb") as source, open(report.path, "wb") as target:
        target.write(source.read())  # the same page, as an HTML artifact the Kubeflow / Vertex UI renders
    return result.blessed


@dsl.component(base_image=COMPONENT_IMAGE)
def publish_model(
    config_json: str, embeddings: Input[Dataset], evaluation: Input[Artifact], model_repository: str
) -> int:
    """Write the next version of the Triton model repository; refuses a model that is not blessed."""
    import os

    from fashionrec.config import PipelineConfig
    from fashionrec.evaluation.evaluate import BLESSING_FILE, METRICS_FILE
    from fashionrec.export import EMBEDDINGS_FILE
    from fashionrec.publish import publish_model_repository
    from fashionrec.storage import read_json

    published = publish_model_repository(
        embeddings_path=os.path.join(embeddings.path, EMBEDDINGS_FILE),
        blessing_path=os.path.join(evaluation.path, BLESSING_FILE),
        model_repository=model_repository,
        serving=PipelineConfig.from_json(config_json).serving,
        metadata={"metrics": read_json(os.path.join(evaluation.path, METRICS_FILE))},
    )
    return published.version
