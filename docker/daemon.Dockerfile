# docker/daemon.Dockerfile: the sqlcoder model daemon on an NVIDIA GPU.
#
# Build from the repository root (compose.yaml does):
#   docker build -f docker/daemon.Dockerfile -t sqlcoder-daemon .
# Weights: mount a model directory at /models (read-only is fine), or leave
# /models empty and set SQLCODER_HUB_ID (plus HF_TOKEN for a gated model): the
# entrypoint then downloads the snapshot once, before the daemon starts.
#
# The CUDA base and the torch build go together. The defaults pair CUDA 13.0
# with PyPI's torch, whose Linux wheels are CUDA 13.0 builds (NVIDIA driver
# 580 or newer). For an older driver, build a CUDA 12 pair, e.g.
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# (torch's wheels carry their own CUDA libraries; the base image supplies the
# NVIDIA container runtime's settings and a matching userland.)

# Ubuntu 24.04: its python3 is 3.12 (the daemon needs 3.11 or newer; 22.04 has 3.10).
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
# The official postgres image runs the server as uid/gid 999. The daemon's
# container gives those ids the name `postgres`, so that the daemon's default
# allowlist (its own uid and the postgres user's) and `--socket-group postgres`
# mean the server in the other container. Change both for another image.
ARG POSTGRES_UID=999
ARG POSTGRES_GID=999
ARG SQLCODER_UID=10001

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini: PID 1 that forwards SIGTERM, so `docker stop` lets the daemon drain.
# Distribution packages follow the pinned base image (hadolint DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/*

# A virtual environment: Ubuntu's python3 refuses system-wide pip installs (PEP 668).
RUN python3 -m venv /opt/sqlcoder
ENV PATH=/opt/sqlcoder/bin:$PATH

# torch first and on its own, so that the build arg decides which CUDA build
# is installed and the daemon's install below finds torch already satisfied.
# (Pinned through the build arg, which hadolint cannot see: DL3013.)
# hadolint ignore=DL3013
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"}

# Only the daemon's own distribution: the page, the eval tool and the
# developer tooling (stand-in daemons, the tiny-model trainer) stay out.
WORKDIR /src
COPY python/sqlcoder_daemon ./sqlcoder_daemon
# [quant] brings bitsandbytes (nf4/int8); huggingface_hub (a transformers
# dependency, named for clarity) does the optional download at start. Versions
# are the distribution's ranges, like any other install of the daemon (DL3013).
# hadolint ignore=DL3013
RUN pip install "./sqlcoder_daemon[quant]" huggingface_hub \
 && python -c "import torch, transformers, accelerate, bitsandbytes, sqlcoder_daemon" \
 && rm -rf /src
WORKDIR /

COPY docker/daemon_entrypoint.py docker/daemon_healthcheck.py /usr/local/lib/sqlcoder/

RUN groupadd --gid "${POSTGRES_GID}" postgres \
 && useradd --uid "${POSTGRES_UID}" --gid postgres --no-create-home --shell /usr/sbin/nologin postgres \
 && groupadd --gid "${SQLCODER_UID}" sqlcoder \
 && useradd --uid "${SQLCODER_UID}" --gid sqlcoder --groups postgres --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin sqlcoder \
 && install -d -o sqlcoder -g postgres -m 0755 /run/sqlcoder \
 && install -d -o sqlcoder -g sqlcoder -m 0755 /models

ENV SQLCODER_MODEL_DIR=/models \
    SQLCODER_SOCKET_PATH=/run/sqlcoder/sqlcoder.sock \
    HF_HOME=/tmp/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
VOLUME ["/run/sqlcoder"]
# By name, so that the supplementary group postgres applies (DL3066).
# hadolint ignore=DL3066
USER sqlcoder

# The entrypoint makes sure /models holds weights (downloading them only when
# it is empty and SQLCODER_HUB_ID is set), then execs sqlcoder-daemon with
# the command's arguments.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/sqlcoder/bin/python", "/usr/local/lib/sqlcoder/daemon_entrypoint.py"]
CMD ["--model", "/models", "--socket", "/run/sqlcoder/sqlcoder.sock", \
     "--socket-group", "postgres", "--allow-user", "postgres", "--quantize", "nf4"]

HEALTHCHECK --interval=30s --timeout=10s --start-period=20m --retries=3 \
  CMD ["/opt/sqlcoder/bin/python", "/usr/local/lib/sqlcoder/daemon_healthcheck.py"]
