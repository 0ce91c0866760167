# syntax=docker/dockerfile:1
# fashionrec serving image for GPU nodes: images/serving.Dockerfile plus CuPy, so ranking can run on
# the GPU (cupy-cuda12x against the base image's CUDA 12.6 runtime).
#   docker build -f images/serving-gpu.Dockerfile -t REGISTRY/fashionrec-serving-gpu:0.1.0 .
# cupy-cuda12x 13.6.0 is the newest that accepts the python backend's numpy 1.26.4 (14.x needs numpy 2).
FROM nvcr.io/nvidia/tritonserver:24.12-py3

USER root
COPY fashionrec/serving/requirements-serving.txt /opt/fashionrec/requirements-serving.txt
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        -r /opt/fashionrec/requirements-serving.txt \
    && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        -c /opt/fashionrec/requirements-serving.txt cupy-cuda12x==13.6.0 fastrlock==0.8.4 \
    && python3 -c "import numpy; assert numpy.__version__.startswith('1.'), numpy.__version__"

ENV MODEL_REPOSITORY=/models
EXPOSE 8000 8001 8002

USER 1000:1000

CMD ["sh", "-c", "exec tritonserver --model-repository=\"$MODEL_REPOSITORY\" --model-control-mode=poll --repository-poll-secs=30 --strict-readiness=true --metrics-config=summary_latencies=true --grpc-max-connection-age=60000 --grpc-max-connection-age-grace=30000 \"--http-restricted-api=model-repository,shared-memory,logging,trace:admin-key=$FASHIONREC_ADMIN_KEY\" \"--grpc-restricted-protocol=model-repository,shared-memory,logging,trace:admin-key=$FASHIONREC_ADMIN_KEY\""]
