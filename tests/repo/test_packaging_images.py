"""Shipping, the images: the Dockerfiles and the compose file (docker/).

No Docker engine runs here, so the images are checked by what can be checked
without one: the compose file through `docker-compose config`, the
Dockerfiles by parsing them (and by cross-checking their commands against the
daemon's own argument parser), and the PostgreSQL image's steps by performing
them on this machine's PostgreSQL (docker/check-postgres-steps.sh).
The daemon image's scripts and the systemd unit: tests/daemon/test_packaging.py.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers.paths import ROOT

DOCKER = ROOT / "docker"
SOCKET = "/run/sqlcoder/sqlcoder.sock"


# -- Dockerfiles ----------------------------------------------------------------

def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    return out


def copy_sources(dockerfile: Path) -> list[str]:
    """Build-context paths that COPY instructions read (not those copied from another stage)."""
    paths = []
    for word, args in instructions(dockerfile):
        if word == "COPY" and "--from" not in args:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            paths += parts[:-1]
    return paths


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; fails on the shell form."""
    return json.loads(args)


@pytest.mark.parametrize("name", ["postgres.Dockerfile", "daemon.Dockerfile"])
def test_every_copied_path_exists_and_reaches_the_build_context(name):
    ignored = dockerignore()
    for src in copy_sources(DOCKER / name):
        assert (ROOT / src).exists(), f"{name} copies {src}, which is not in the repository"
        parents = [str(Path(src))] + [str(p) for p in Path(src).parents if str(p) != "."]
        hits = [(p, pat) for p in parents for pat in ignored if fnmatch.fnmatch(p, pat)]
        assert not hits, f"{name} copies {src}, but .dockerignore excludes it: {hits}"


@pytest.mark.parametrize("name", ["postgres.Dockerfile", "daemon.Dockerfile"])
def test_base_images_are_pinned(name):
    steps = instructions(DOCKER / name)
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key, value)
    froms = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert froms
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert ":" in resolved and not resolved.endswith(":latest"), f"{name}: unpinned base {resolved}"


def test_postgres_image_is_a_supported_major_on_debian_with_plpython():
    steps = instructions(DOCKER / "postgres.Dockerfile")
    major = next(rest.split("=")[1] for word, rest in steps if word == "ARG" and rest.startswith("PG_MAJOR="))
    assert major in {"16", "17"}
    assert all(rest.startswith("postgres:${PG_MAJOR}-bookworm") for word, rest in steps if word == "FROM")
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    # Pinned to the server's own package version, so installing it never upgrades the server.
    assert "postgresql-plpython3-${PG_MAJOR}=${PG_VERSION}" in runs
    assert "make install DESTDIR=/staging" in runs
    assert ("COPY", "--from=build /staging/ /") in steps
    # The init script must be executable in git: the image COPYs it without --chmod.
    script = DOCKER / "initdb" / "10-sqlcoder.sh"
    assert os.access(script, os.X_OK)
    assert any(word == "COPY" and "/docker-entrypoint-initdb.d/" in rest and "10-sqlcoder.sh" in rest
               for word, rest in steps)


def test_shared_socket_dir_has_the_same_owner_in_both_images():
    """Whichever container first mounts the fresh volume, the daemon can create its socket there."""
    daemon = DOCKER.joinpath("daemon.Dockerfile").read_text()
    postgres = DOCKER.joinpath("postgres.Dockerfile").read_text()
    uid = re.search(r"ARG SQLCODER_UID=(\d+)", daemon).group(1)
    assert re.search(r"ARG POSTGRES_GID=999\b", daemon)  # the official image's postgres group
    assert re.search(r"install -d -o sqlcoder -g postgres -m 0755 /run/sqlcoder", daemon)
    assert re.search(rf"install -d -o {uid} -g postgres -m 0755 /run/sqlcoder", postgres)


def test_daemon_image_commands_are_exec_form_and_accepted_by_the_daemon():
    from sqlcoder_daemon.settings import build_parser

    steps = dict((w, r) for w, r in instructions(DOCKER / "daemon.Dockerfile") if w in {"ENTRYPOINT", "CMD"})
    entry = exec_form(steps["ENTRYPOINT"])
    assert entry[:2] == ["/usr/bin/tini", "--"]  # a PID 1 that forwards SIGTERM, so the daemon drains
    assert entry[-1] == "/usr/local/lib/sqlcoder/daemon_entrypoint.py"
    cmd = exec_form(steps["CMD"])
    parsed = vars(build_parser().parse_args(cmd))
    assert parsed["socket"] == SOCKET and parsed["socket_group"] == "postgres"
    assert parsed["model"] == "/models" and parsed["allow_user"] == ["postgres"]
    health = [r for w, r in instructions(DOCKER / "daemon.Dockerfile") if w == "HEALTHCHECK"][0]
    assert exec_form(health.split(" CMD ", 1)[1])[-1].endswith("daemon_healthcheck.py")


# -- compose ----------------------------------------------------------------------

def compose_config(**env: str) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SQLCODER_", "POSTGRES_", "HF_", "COMPOSE_"))}
    return subprocess.run(["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
                          env={**clean, **env}, capture_output=True, text=True)


@pytest.fixture(scope="module")
def compose() -> dict:
    r = compose_config(POSTGRES_PASSWORD="secret")
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def test_compose_reserves_the_gpu(compose):
    devices = compose["services"]["daemon"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in compose["services"]["postgres"]


def test_compose_shares_the_socket_dir_and_agrees_on_the_socket(compose):
    from sqlcoder_daemon.settings import build_parser

    daemon, postgres = compose["services"]["daemon"], compose["services"]["postgres"]
    assert "sqlcoder-run:/run/sqlcoder:rw" in daemon["volumes"]
    assert "sqlcoder-run:/run/sqlcoder:rw" in postgres["volumes"]
    assert "sqlcoder-run" in compose["volumes"]
    flags = vars(build_parser().parse_args(daemon["command"]))
    assert flags["socket"] == postgres["environment"]["SQLCODER_SOCKET_PATH"] == SOCKET
    assert flags["socket_group"] == "postgres" and flags["allow_user"] == ["postgres"]
    assert flags["quantize"] == "nf4"


def test_compose_healthchecks_and_draining(compose):
    from sqlcoder_daemon.settings import SETTINGS

    daemon, postgres = compose["services"]["daemon"], compose["services"]["postgres"]
    assert daemon["healthcheck"]["test"][-1].endswith("daemon_healthcheck.py")
    assert "pg_isready -h 127.0.0.1" in postgres["healthcheck"]["test"][1]
    drain = next(s.default for s in SETTINGS if s.name == "drain_timeout_s")
    grace = daemon["stop_grace_period"]
    assert grace.endswith("m") and int(grace[:-1]) * 60 > drain
    assert postgres["depends_on"] == {"daemon": {"condition": "service_started"}}  # never waits for the model


def test_compose_needs_a_password_and_mounts_a_host_weights_dir():
    r = compose_config()
    assert r.returncode != 0 and "set POSTGRES_PASSWORD" in r.stderr
    r = compose_config(POSTGRES_PASSWORD="x", SQLCODER_MODELS="/srv/models/sqlcoder-7b-2",
                       SQLCODER_QUANTIZE="int8", SQLCODER_HUB_ID="defog/sqlcoder-7b-2")
    assert r.returncode == 0, r.stderr
    daemon = yaml.safe_load(r.stdout)["services"]["daemon"]
    assert "/srv/models/sqlcoder-7b-2:/models:rw" in daemon["volumes"]
    assert daemon["command"][daemon["command"].index("--quantize") + 1] == "int8"
    assert daemon["environment"]["SQLCODER_HUB_ID"] == "defog/sqlcoder-7b-2"


# -- the PostgreSQL image's steps, on this machine's PostgreSQL ----------------------------

def test_postgres_image_steps_work_on_this_postgres():
    if os.geteuid() != 0:
        pytest.skip("the check installs into PostgreSQL's share directory, which needs root")
    r = subprocess.run([str(DOCKER / "check-postgres-steps.sh")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "FAILED" not in r.stdout
    assert r.stdout.rstrip().endswith("postgres image steps: OK")
    assert Path("/").stat().st_mode & 0o777 == 0o755  # the copy step must not touch directories above the files
