# syntax=docker/dockerfile:1
# Build: docker build -t oneai .   Run: docker compose up (see README, "Operating").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: the package and its dependencies installed into a virtualenv, which is
# all the runtime stage takes. Every dependency ships wheels for amd64 and arm64 or is
# pure Python (yookassa, razorpay), so no compiler is needed.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/oneai
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY core ./core
COPY payments ./payments
COPY migrations ./migrations
# Not editable: the image must run from the installed package alone (migrations,
# plans.json and models.json are package data). tests/test_docker.py runs these lines.
RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/oneai \
    PATH=/opt/oneai/bin:$PATH \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    DATABASE_URL=sqlite+aiosqlite:////data/oneai.db \
    MODEL_CATALOG_CACHE_FILE=/data/models-cache.json
RUN groupadd --system --gid 10001 oneai \
    && useradd --system --uid 10001 --gid oneai --create-home oneai \
    && mkdir /data && chown oneai:oneai /data
COPY --from=build /opt/oneai /opt/oneai
COPY docker/entrypoint.sh /usr/local/bin/oneai-entrypoint
# Relative paths in a copied .env (./oneai.db, the model cache) land in the volume.
WORKDIR /data
VOLUME ["/data"]
# A numeric id, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 8080
# /healthz answers without I/O: the process is up. Exec form with no shell, so the
# port is read from the environment in Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HTTP_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["oneai-entrypoint"]
CMD ["run"]
