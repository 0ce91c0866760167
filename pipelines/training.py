"""The fashionrec training pipeline: data → features → model → embeddings → gate → Triton repository.

The same definition is compiled to YAML for Kubeflow / Vertex AI and run locally with ``kfp.local``.
"""

from kfp import dsl

from components.stages import (
    evaluate_model,
    export_embeddings,
    ingest_data,
    prepare_dataset,
    publish_model,
    train_model,
    transform_data,
)
from fashionrec.config import PipelineConfig

PIPELINE_NAME = "fashionrec-training"


@dsl.pipeline(name=PIPELINE_NAME, description="Two-tower recommender for fashion retail, published to Triton.")
def training_pipeline(
    model_repository: str,
    dataset: str = "synthetic",
    data_dir: str = "",
    config_json: str = PipelineConfig().to_json(),
):
    """``dataset``: one of fashionrec.datasets.DATASET_NAMES; ``data_dir``: where its files are, if needed."""
    raw = prepare_dataset(config_json=config_json, dataset=dataset, data_dir=data_dir).set_display_name(
        "prepare dataset"
    )
    ingested = ingest_data(config_json=config_json, raw_data=raw.outputs["raw_data"]).set_display_name("ingest")
    transformed = transform_data(config_json=config_json, ingested=ingested.outputs["ingested"]).set_display_name(
        "transform (Beam + TFT)"
    )
    trained = train_model(config_json=config_json, transformed=transformed.outputs["transformed"]).set_display_name(
        "train two-tower"
    )
    exported = export_embeddings(
        config_json=config_json,
        ingested=ingested.outputs["ingested"],
        transformed=transformed.outputs["transformed"],
        model=trained.outputs["model"],
    ).set_display_name("export embeddings")
    evaluated = evaluate_model(
        config_json=config_json,
        ingested=ingested.outputs["ingested"],
        transformed=transformed.outputs["transformed"],
        embeddings=exported.outputs["embeddings"],
        model_repository=model_repository,
    ).set_display_name("evaluate + gate")
    with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition syntax)
        publish_model(
            config_json=config_json,
            embeddings=exported.outputs["embeddings"],
            evaluation=evaluated.outputs["evaluation"],
            model_repository=model_repository,
        ).set_display_name("publish to Triton repository")
