FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HTTP_HOST=0.0.0.0 \
    DATABASE_URL=sqlite+aiosqlite:////data/oneai.db \
    MODEL_CATALOG_CACHE_FILE=/data/models-cache.json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY core ./core
COPY payments ./payments
COPY migrations ./migrations
RUN pip install . && useradd --create-home --uid 10001 oneai && mkdir /data && chown oneai /data

USER oneai
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)" || exit 1
CMD ["oneai", "run"]
