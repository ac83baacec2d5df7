# docker/postgres.Dockerfile: PostgreSQL with PL/Python and the sqlcoder extension.
#
# Build from the repository root (compose.yaml does):
#   docker build -f docker/postgres.Dockerfile -t sqlcoder-postgres .
# The extension talks to the model daemon over a Unix socket in /run/sqlcoder,
# a volume shared with the daemon container (docker/compose.yaml).
#
# docker/check-postgres-steps.sh performs the same steps on a host's own
# PostgreSQL, which is how they are tested where no Docker engine runs.

ARG PG_MAJOR=16

# bookworm, named rather than implied: PL/Python links the distribution's
# python3, and the image's default distribution changes between majors.

# -- build: `make install` into a staging directory --------------------------
# The official image carries the PGDG apt repository and sets PG_VERSION to its
# server's package version: the packages added here are pinned to it, so they
# match the server exactly and never upgrade it behind the image's back. (apt
# cannot find that version? The base image is older than the repository:
# build with --pull.)
FROM postgres:${PG_MAJOR}-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make gcc libc6-dev "postgresql-server-dev-${PG_MAJOR}=${PG_VERSION}" \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile sqlcoder.control ./
COPY sql ./sql
COPY src ./src
COPY python/sqlcoder ./python/sqlcoder
# DESTDIR keeps the build stage's own PostgreSQL untouched; the final stage
# copies exactly the files `make install` wrote and nothing of the build tools.
RUN make install DESTDIR=/staging \
 && find /staging -type f

# -- final: the official image + plpython3u + the staged files ---------------
FROM postgres:${PG_MAJOR}-bookworm
# PL/Python runs Debian's /usr/bin/python3 (3.11 on bookworm); the extension's
# in-database package needs nothing beyond its standard library.
RUN apt-get update \
 && apt-get install -y --no-install-recommends "postgresql-plpython3-${PG_MAJOR}=${PG_VERSION}" \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /staging/ /

# The socket directory is a volume shared with the daemon. It is created here
# with the ownership the daemon image gives it (uid 10001 = sqlcoder, gid 999 =
# postgres), so that a fresh named volume gets the same owner whichever
# container mounts it first.
RUN install -d -o 10001 -g postgres -m 0755 /run/sqlcoder

# Runs once, when the entrypoint initialises an empty data directory. (No
# COPY --chmod: the legacy builder that docker-compose v1 drives lacks it; the
# file is executable in git and COPY keeps its mode.)
COPY docker/initdb/10-sqlcoder.sh /docker-entrypoint-initdb.d/10-sqlcoder.sh
ENV SQLCODER_SOCKET_PATH=/run/sqlcoder/sqlcoder.sock
