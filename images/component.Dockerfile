# syntax=docker/dockerfile:1
# fashionrec component image, CPU: what every task of the KFP training pipeline runs.
#   docker build -f images/component.Dockerfile -t REGISTRY/fashionrec-component:0.1.0 .   (from the repo root)
# Then `fashionrec pipeline compile|submit --image REGISTRY/fashionrec-component:0.1.0`.
#
# Python 3.11.7 is the interpreter constraints.txt was frozen on; every dependency is pinned by it.
# No data is baked in: MovieLens (GroupLens licence: no redistribution) is read at run time from
# --data-dir gs://.../ml-1m when that dataset is chosen; the synthetic shop is generated.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 1000 fashionrec \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/fashionrec --shell /usr/sbin/nologin fashionrec

WORKDIR /opt/fashionrec

# 1. The pinned dependencies alone (a layer that survives code changes): install the package from
#    empty stand-in sources, then drop it and keep its dependencies.
COPY setup.py constraints.txt ./
RUN mkdir -p fashionrec components pipelines \
    && touch fashionrec/__init__.py components/__init__.py pipelines/__init__.py \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip uninstall --yes fashionrec \
    && rm -rf build fashionrec.egg-info fashionrec components pipelines

# 2. The code, installed like a wheel (the Triton model templates are package data), the sources removed
#    so that nothing runs from the build folder.
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
