# syntax=docker/dockerfile:1
#
# depwatch image. Stage 1 builds depwatch's wheel and installs it, with its
# dependencies, into a virtualenv; stage 2 copies only that virtualenv onto a
# clean base: no compiler, no build tools, no pip cache, no source tree.
# Runs as the numeric non-root user 65532 and with a read-only root
# filesystem (bytecode is compiled at build time; nothing is written at run
# time). Build: docker build -t depwatch .   Run: docker run --rm -p 9478:9478 depwatch demo

# The same base in both stages: the virtualenv's python links to
# /usr/local/bin/python3.11. Pin a digest here for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Extras baked into the image: aws = boto3 for REDIS_PASSWORD_FROM_SECRETS.
ARG DEPWATCH_EXTRAS=aws
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel needs (.dockerignore allows nothing else in).
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# Every dependency ships binary wheels for amd64 and arm64 (aiohttp, grpcio,
# protobuf, bcrypt), so no compiler is installed, not even in this stage.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/depwatch \
 && wheel="$(ls /wheels/depwatch-*.whl)" \
 && /opt/depwatch/bin/pip install "${wheel}[${DEPWATCH_EXTRAS}]" \
 && /opt/depwatch/bin/pip uninstall --yes pip setuptools \
 && /opt/depwatch/bin/python -m compileall -q /opt/depwatch/lib \
 && /opt/depwatch/bin/depwatch --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="depwatch" \
      org.opencontainers.image.description="Prometheus exporter sidecar that health-checks a pod's Redis and OpenTelemetry Collector" \
      org.opencontainers.image.source="https://github.com/depwatch/depwatch" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/depwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/depwatch /opt/depwatch
# Numeric uid:gid so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 9478
STOPSIGNAL SIGTERM
ENTRYPOINT ["depwatch"]
