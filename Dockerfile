# syntax=docker/dockerfile:1
# modelsync images. Default target: with the tensorflow extra (validate.tensorflow).
# deploy/kubernetes/ runs the slim one; put your registry's name in the tag and the
# manifests (docs/operations.md#install):
#   docker build --target slim -t ghcr.io/example/modelsync:0.1.0-slim .   # without TensorFlow
#   docker build -t ghcr.io/example/modelsync:0.1.0 .                       # with TensorFlow (CPU)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a self-contained virtual environment in /opt/modelsync ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelsync ./modelsync
RUN python -m venv /opt/modelsync \
    && /opt/modelsync/bin/pip install --no-cache-dir ".[s3,azure,oms,pubsub]" \
    && /opt/modelsync/bin/modelsync --version

FROM build AS build-tensorflow
RUN /opt/modelsync/bin/pip install --no-cache-dir ".[tensorflow]" \
    && /opt/modelsync/bin/python -c "import tensorflow"

# --- runtime base: no compilers, no caches, a fixed non-root user ---------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 modelsync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin modelsync \
    && mkdir -p /data/models \
    && chown -R 10001:10001 /data
ENV PATH=/opt/modelsync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODELSYNC_ADMIN_LISTEN=0.0.0.0:8686 \
    MODELSYNC_STORE=/data/models
USER 10001:10001
WORKDIR /data
EXPOSE 8686
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8686/healthz', timeout=2)"]
ENTRYPOINT ["modelsync"]
CMD ["run"]

FROM runtime AS slim
COPY --from=build /opt/modelsync /opt/modelsync

FROM runtime AS tensorflow
COPY --from=build-tensorflow /opt/modelsync /opt/modelsync
