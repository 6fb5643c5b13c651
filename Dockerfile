# The one naaice image: operator, node agent, emulated NAA runtime and the host applications of
# NAAJob pods all run it, as `naaice operator run`, `naaice agent run`, `naaice runtime serve`,
# `naaice train poet`. The Helm chart (charts/naaice) and examples/naajob.yaml use it as
# naaice:0.1.0; .github/workflows/kind.yaml builds it and loads it into kind.
#
#   docker build -t naaice:0.1.0 .
#
# Build stage: a wheel of this checkout, then it and its dependencies (pinned by
# requirements.lock, used as constraints so the dev tools stay out) into a venv. The C
# extensions (setup.py) need gcc and Intel ISA-L's headers here, its shared library at run time.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libisal-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py requirements.lock README.md ./
COPY naaice ./naaice
COPY naaice_cli ./naaice_cli
COPY naaice_cluster ./naaice_cluster
COPY naa_runtime ./naa_runtime
COPY device_plugin ./device_plugin
COPY operator ./operator
RUN python -m venv /opt/naaice/venv \
 && /opt/naaice/venv/bin/pip install -c requirements.lock . \
 && /opt/naaice/venv/bin/naaice --help > /dev/null

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libisal2 \
 && rm -rf /var/lib/apt/lists/*
LABEL org.opencontainers.image.title="naaice" \
      org.opencontainers.image.description="Network-Attached Accelerators in Kubernetes: operator, node agent, software NAA" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/naaice/venv /opt/naaice/venv
# The example Bitstreams point at file:///opt/naaice/bitstreams/<file> (docs/design/contracts.md).
COPY examples/bitstreams /opt/naaice/bitstreams
RUN groupadd --gid 10001 naaice \
 && useradd --uid 10001 --gid naaice --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin naaice
ENV PATH=/opt/naaice/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The chart runs the agent as root (it writes the kubelet's device-plugin socket directory)
# and everything else as this user.
USER 10001:10001
ENTRYPOINT ["naaice"]
CMD ["--help"]
