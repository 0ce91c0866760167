# syntax=docker/dockerfile:1
# fashionrec component image, GPU: the CPU image's content with TensorFlow's CUDA libraries, for the
# training (and export/evaluation) tasks on NVIDIA GPU nodes.
#   docker build -f images/component-gpu.Dockerfile -t REGISTRY/fashionrec-component-gpu:0.1.0 .
#
# Base: NVIDIA's CUDA 12.6 "base" image (the NVIDIA_* and LD_LIBRARY_PATH settings through which the
# container runtime / GKE mount the host driver, same CUDA as the Triton 24.12 serving image). The CUDA
# user-space libraries TensorFlow 2.21 loads come from NVIDIA's pip wheels (`tensorflow[and-cuda]`,
# versions pinned in images/constraints-gpu.txt to TensorFlow's tested set). Ubuntu's own Python is
# not 3.11, so uv installs CPython 3.11.7, the interpreter constraints.txt was frozen on.
# As in the CPU image, no data is baked in (MovieLens may not be redistributed: use --data-dir gs://...).
FROM ghcr.io/astral-sh/uv:0.5.11 AS uv

FROM nvidia/cuda:12.6.3-base-ubuntu22.04

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_NO_CACHE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    PATH=/opt/venv/bin:$PATH

COPY --from=uv /uv /usr/local/bin/uv
# --seed: pip inside the venv (KFP's task launcher runs `python3 -m pip install kfp==... --no-deps`,
# already satisfied, before each task).
RUN uv python install 3.11.7 \
    && uv venv --seed --python 3.11.7 /opt/venv \
    && rm /usr/local/bin/uv

RUN groupadd --gid 1000 fashionrec \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/fashionrec --shell /usr/sbin/nologin fashionrec

WORKDIR /opt/fashionrec

COPY setup.py constraints.txt ./
COPY images/constraints-gpu.txt ./images/constraints-gpu.txt
RUN mkdir -p fashionrec components pipelines \
    && touch fashionrec/__init__.py components/__init__.py pipelines/__init__.py \
    && pip install --no-cache-dir -c constraints.txt -c images/constraints-gpu.txt ".[gpu]" \
    && pip uninstall --yes fashionrec \
    && rm -rf build fashionrec.egg-info fashionrec components pipelines

COPY fashionrec ./fashionrec
COPY components ./components
COPY pipelines ./pipelines
COPY triton_models ./triton_models
RUN pip install --no-cache-dir --no-deps -c constraints.txt . \
    && rm -rf build fashionrec.egg-info fashionrec components pipelines triton_models \
    && python -c "import fashionrec.app.cli, components.stages, pipelines.training, triton_models"

USER 1000:1000
ENV HOME=/home/fashionrec
WORKDIR /home/fashionrec
