# syntax=docker/dockerfile:1
# fashionrec serving image, CPU and GPU nodes alike: NVIDIA Triton Inference Server with what the
# fashionrec models (python backend) import, pinned by fashionrec/serving/requirements-serving.txt.
#   docker build -f images/serving.Dockerfile -t REGISTRY/fashionrec-serving:0.1.0 .   (from the repo root)
# GPU ranking with CuPy: images/serving-gpu.Dockerfile adds it on top of the same base.
#
# 24.12-py3 is Triton 2.53.0 on Ubuntu 24.04 with Python 3.12 (CUDA 12.6.3; runs on CPU-only nodes
# too). Older tags (24.10 = Triton 2.51) ship Python 3.10, on which the pinned requirements do not
# install (e.g. annotated-doc 0.0.7 needs Python >= 3.11).
FROM nvcr.io/nvidia/tritonserver:24.12-py3

USER root
COPY fashionrec/serving/requirements-serving.txt /opt/fashionrec/requirements-serving.txt
# The stub of Triton's python backend runs the image's system Python: install there (Ubuntu 24.04
# marks it externally managed, hence PIP_BREAK_SYSTEM_PACKAGES; nothing else in the image uses pip).
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        -r /opt/fashionrec/requirements-serving.txt \
    && python3 -c "import numpy; assert numpy.__version__.startswith('1.'), numpy.__version__"

# The model repository (gs://..., s3://... or a mounted folder); k8s sets it from a ConfigMap.
ENV MODEL_REPOSITORY=/models
EXPOSE 8000 8001 8002

# uid/gid 1000 is the base image's `triton-server` user, the one k8s/base/deployment.yaml runs as.
USER 1000:1000

# The base image's ENTRYPOINT (/opt/nvidia/nvidia_entrypoint.sh) stays: it runs this CMD, or the
# Deployment's `args` (the same tritonserver flags; tests/test_images.py keeps the two equal). The admin
# APIs answer only requests with the key: run with -e FASHIONREC_ADMIN_KEY=<a secret> (k8s: a Secret).
CMD ["sh", "-c", "exec tritonserver --model-repository=\"$MODEL_REPOSITORY\" --model-control-mode=poll --repository-poll-secs=30 --strict-readiness=true --metrics-config=summary_latencies=true --grpc-max-connection-age=60000 --grpc-max-connection-age-grace=30000 \"--http-restricted-api=model-repository,shared-memory,logging,trace:admin-key=$FASHIONREC_ADMIN_KEY\" \"--grpc-restricted-protocol=model-repository,shared-memory,logging,trace:admin-key=$FASHIONREC_ADMIN_KEY\""]
