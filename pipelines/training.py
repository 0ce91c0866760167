"""The fashionrec training pipeline: data → features → model → embeddings → gate → Triton repository.

The same definition is compiled to YAML for Kubeflow / Vertex AI and run locally with ``kfp.local``.
Settings arrive as one JSON parameter per config section (``train_config``: a TrainConfig, ...), and
each task gets only the sections its stage reads, so KFP's cache skips a stage whose settings did not
change. :func:`config_arguments` turns a PipelineConfig into those parameters.

The publish task's ``published_model`` artifact (a KFP ``Model``) points at the Triton repository and records
the version it wrote, so the UIs show which run produced which served version; with ``registry.project`` and
``registry.region`` set, that version is also registered in Vertex AI Model Registry.
"""

from dataclasses import dataclass

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
from fashionrec.config import (
    EvaluateConfig,
    ExportConfig,
    IngestConfig,
    PipelineConfig,
    RegistryConfig,
    ServingConfig,
    ShopConfig,
    TrainConfig,
    TransformConfig,
)

PIPELINE_NAME = "fashionrec-training"
CONFIG_PARAMETER_SUFFIX = "_config"  # pipeline parameter of a config section: "train" -> "train_config"


@dataclass(frozen=True)
class TaskResources:
    """What a task asks its node for (Kubernetes quantities). Sized for the embedded shop and ML-1M on
    one node; raise them for a 1M-product catalogue (transform and train hold the catalogue in memory)."""

    cpu: str
    memory: str


TASK_RESOURCES = {  # by task; the limits equal the requests, so a task's resources are guaranteed
    "prepare-dataset": TaskResources("1", "2Gi"),
    "ingest-data": TaskResources("1", "4Gi"),
    "transform-data": TaskResources("2", "8Gi"),
    "train-model": TaskResources("4", "16Gi"),
    "export-embeddings": TaskResources("2", "8Gi"),
    "evaluate-model": TaskResources("2", "8Gi"),
    "publish-model": TaskResources("1", "4Gi"),
}
RETRIES = 2  # a task that fails (a preempted node, a storage hiccup) runs again this many times ...
RETRY_BACKOFF = "60s"  # ... after this long, doubling each time


def _placed(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """The task with its resources and retry policy (TASK_RESOURCES, RETRIES)."""
    resources = TASK_RESOURCES[task.name]
    return (task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu)
            .set_memory_request(resources.memory).set_memory_limit(resources.memory)
            .set_retry(num_retries=RETRIES, backoff_duration=RETRY_BACKOFF, backoff_factor=2.0))


TRAIN_TASK = "train-model"


@dataclass(frozen=True)
class Accelerator:
    """GPUs for the train task: Kubeflow takes a Kubernetes resource name (``nvidia.com/gpu``), Vertex AI an
    accelerator type (``NVIDIA_TESLA_T4``, ``NVIDIA_L4``, ...). The task then runs the GPU image
    (``images/component-gpu.Dockerfile``), which the compiler sets on the train executor."""

    type: str
    count: int = 1

    def __post_init__(self) -> None:
        if not self.type or self.count < 1:
            raise ValueError(f"an accelerator needs a type and a count of at least 1, got {self.type!r} x {self.count}")

    @classmethod
    def parse(cls, text: str) -> "Accelerator":
        """``TYPE`` or ``TYPE:COUNT`` (``nvidia.com/gpu:2``, ``NVIDIA_L4``)."""
        kind, _, count = text.partition(":")
        if count and not count.isdigit():
            raise ValueError(f"expected TYPE or TYPE:COUNT for the train accelerator, got {text!r}")
        return cls(kind, int(count) if count else 1)


def config_arguments(config: PipelineConfig) -> dict[str, str]:
    """The pipeline's config parameters for ``config``: each section's JSON by its parameter name."""
    return {f"{name}{CONFIG_PARAMETER_SUFFIX}": section.to_json() for name, section in config.sections().items()}


def build_training_pipeline(train_accelerator: "Accelerator | None" = None):
    """The pipeline, its train task on ``train_accelerator`` when given (a compile-time choice: KFP fixes a
    task's resources in the compiled spec)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Two-tower recommender for fashion retail, published to Triton.")
    def training_pipeline(
        model_repository: str,
        dataset: str = "synthetic",
        data_dir: str = "",
        shop_config: str = ShopConfig().to_json(),
        ingest_config: str = IngestConfig().to_json(),
        transform_config: str = TransformConfig().to_json(),
        train_config: str = TrainConfig().to_json(),
        export_config: str = ExportConfig().to_json(),
        evaluate_config: str = EvaluateConfig().to_json(),
        serving_config: str = ServingConfig().to_json(),
        registry_config: str = RegistryConfig().to_json(),
    ):
        """``dataset``: one of fashionrec.datasets.DATASET_NAMES; ``data_dir``: where its files are, if needed."""
        raw = _placed(prepare_dataset(shop_config=shop_config, dataset=dataset, data_dir=data_dir))
        ingested = _placed(ingest_data(ingest_config=ingest_config, raw_data=raw.outputs["raw_data"]))
        transformed = _placed(transform_data(transform_config=transform_config, ingested=ingested.outputs["ingested"]))
        trained = _placed(train_model(train_config=train_config, transform_config=transform_config,
                                      transformed=transformed.outputs["transformed"]))
        if train_accelerator is not None:
            trained.set_accelerator_type(train_accelerator.type).set_accelerator_limit(train_accelerator.count)
        exported = _placed(export_embeddings(
            ingest_config=ingest_config,
            export_config=export_config,
            ingested=ingested.outputs["ingested"],
            transformed=transformed.outputs["transformed"],
            model=trained.outputs["model"],
        ))
        evaluated = _placed(evaluate_model(
            evaluate_config=evaluate_config,
            serving_config=serving_config,
            ingested=ingested.outputs["ingested"],
            transformed=transformed.outputs["transformed"],
            embeddings=exported.outputs["embeddings"],
            model_repository=model_repository,
        ))
        raw.set_display_name("prepare dataset")
        ingested.set_display_name("ingest")
        transformed.set_display_name("transform (Beam + TFT)")
        trained.set_display_name("train two-tower")
        exported.set_display_name("export embeddings")
        evaluated.set_display_name("evaluate + gate")
        with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition syntax)
            _placed(publish_model(
                serving_config=serving_config,
                evaluate_config=evaluate_config,
                registry_config=registry_config,
                embeddings=exported.outputs["embeddings"],
                evaluation=evaluated.outputs["evaluation"],
                model_repository=model_repository,
            )).set_display_name("publish to Triton repository")

    return training_pipeline


training_pipeline = build_training_pipeline()  # CPU only: local runs and the default compile
