# syntax=docker/dockerfile:1
# fashionrec shop image: the shop's front door (`fashionrec shop serve`, fashionrec/online), the storefront and the
# /v1 JSON API on port 8080 in front of Triton's gRPC endpoint, with live state in Redis.
#   docker build -f images/shop.Dockerfile -t REGISTRY/fashionrec-shop:0.1.0 .   (from the repo root)
# k8s/shop/statefulset.yaml runs it; its `args` are this CMD (tests/test_images.py keeps the two equal).
#
# Same base and install as the component image: Python 3.11.7, the interpreter constraints.txt was frozen on, and
# every dependency pinned by it. No data is baked in (MovieLens may not be redistributed; the catalogue and the
# model repository are read at start-up from CATALOGUE and MODEL_REPOSITORY, gs:// or mounted).
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

# 1. The pinned dependencies alone (a layer that survives code changes): install the package from empty stand-in
#    sources, then drop it and keep its dependencies.
COPY setup.py constraints.txt ./
RUN mkdir -p fashionrec components pipelines \
    && touch fashionrec/__init__.py components/__init__.py pipelines/__init__.py \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip uninstall --yes fashionrec \
    && rm -rf build fashionrec.egg-info fashionrec components pipelines

# 2. The code, installed like a wheel (the storefront's templates and stylesheet are package data), the sources
#    removed so that nothing runs from the build folder.
COPY fashionrec ./fashionrec
COPY components ./components
COPY pipelines ./pipelines
COPY triton_models ./triton_models
RUN pip install --no-cache-dir --no-deps -c constraints.txt . \
    && rm -rf build fashionrec.egg-info fashionrec components pipelines triton_models \
    && python -c "import fashionrec.app.cli, fashionrec.online.service"

# The journal (online.journal_dir): on Kubernetes the pod's own persistent disk is mounted here; with `docker run`,
# mount a volume (-v shop-journal:/var/lib/fashionrec-shop) so that nothing acknowledged is lost with the container.
RUN mkdir -p /var/lib/fashionrec-shop/journal && chown -R 1000:1000 /var/lib/fashionrec-shop

# Defaults of the settings the CMD reads that are not the shop's inputs (CATALOGUE and MODEL_REPOSITORY, which
# have none: pass them with -e). Kubernetes sets every one of them (k8s/shop/statefulset.yaml).
ENV TRITON_URL=127.0.0.1:8001 \
    REDIS_URL=redis://127.0.0.1:6379/0 \
    EVENT_LOG_DIR=/var/lib/fashionrec-shop/log
EXPOSE 8080

USER 1000:1000
ENV HOME=/home/fashionrec
WORKDIR /home/fashionrec

# uvicorn answers SIGTERM gracefully (finishes the requests in flight, then the app rolls its journal into the
# event log): `exec` makes it PID 1, so `docker stop` and Kubernetes reach it.
CMD ["sh", "-c", "exec fashionrec shop serve --catalogue \"$CATALOGUE\" --model-repository \"$MODEL_REPOSITORY\" --set online.host=0.0.0.0 --set online.port=8080 --set online.triton_url=\"$TRITON_URL\" --set online.store=redis --set online.redis_url=\"$REDIS_URL\" --set online.event_log_dir=\"$EVENT_LOG_DIR\" --set online.journal_dir=/var/lib/fashionrec-shop/journal"]
