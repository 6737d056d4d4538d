# syntax=docker/dockerfile:1
# The serving image: ONNX Runtime and the gRPC server, no PyTorch, no training code.
#   GPU (default): docker build -t nmt-serving:gpu .
#   CPU only:      docker build -t nmt-serving:cpu --build-arg RUNTIME_BASE=python:3.11-slim-bookworm --build-arg SERVE_EXTRA=serve-cpu .
# onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9: the base image must match them.
ARG RUNTIME_BASE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir grpcio-tools==1.85.1
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY nmt/__init__.py nmt/
COPY nmt/v1/__init__.py nmt/v1/
COPY nmt_spec/ nmt_spec/
COPY decoding/ decoding/
COPY server/ server/
# The gRPC code is generated from the proto here; the wheel holds only the serving packages.
RUN python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/nmt/v1/translator.proto \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${RUNTIME_BASE} AS runtime
ARG SERVE_EXTRA=serve
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    NMT_MODEL_REPOSITORY=/opt/nmt/models \
    NMT_HOST=0.0.0.0 \
    NMT_PORT=50051 \
    NMT_METRICS_PORT=9100 \
    NMT_HTTP_PORT=8080
# The CUDA base has no Python; the slim Python base has one. Either way the server gets a venv.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin nmt
COPY --from=build /wheels/ /tmp/wheels/
COPY deploy/install-server.sh deploy/constraints-serve.txt /opt/nmt/install/
RUN /opt/nmt/install/install-server.sh /tmp/wheels "${SERVE_EXTRA}" && rm -rf /tmp/wheels
# The default models; mount another repository at $NMT_MODEL_REPOSITORY to serve others.
COPY models/ /opt/nmt/models/
USER 10001:10001
EXPOSE 50051 9100 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["nmt-translate", "--target", "localhost:50051", "--health"]
ENTRYPOINT ["nmt-serve"]
