"""PostgreSQL fixtures: one throwaway cluster per test session, a fresh database per test.

The cluster runs as the postgres OS user (PostgreSQL refuses root). The
extension is installed from this checkout with ``make install`` once per run,
before any test (by the controlling process when pytest-xdist runs workers), so
the suite always tests the code in the tree, never a stale install, and no
worker's cluster loads a library another worker is copying over.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from helpers.paths import ROOT
from sqlcoder_dev import shop
from sqlcoder_dev.pgcluster import Cluster

EMPTY_TEMPLATE = "sqlcoder_empty_template"
SHOP_TEMPLATE = "sqlcoder_shop_template"
_counter = itertools.count()


def install_extension() -> None:
    """``make install`` from the checkout (needs write access to PostgreSQL's share dir)."""
    if os.geteuid() != 0 and not os.access(subprocess.run(
            ["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip(), os.W_OK):
        return  # a developer without root installed it already (make install)
    subprocess.run(["make", "-s", "install"], cwd=ROOT, check=True, capture_output=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # pytest-xdist's workers have it; the controller does not
        install_extension()


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    """A running cluster with two template databases: empty (extension only) and the sample shop.

    Each pytest-xdist worker has its own."""
    with Cluster() as cluster:
        for name in (EMPTY_TEMPLATE, SHOP_TEMPLATE):
            cluster.createdb(name)
            cluster.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=name)
            # A failed call's history row is written by a background worker, which a busy
            # test machine can take longer than the default 200 ms to start: wait for it,
            # so that a test reading the row right after the call finds it. (The default
            # is tested on its own cluster in tests/sqlcoder/test_history_writer.py.)
            cluster.psql("UPDATE sqlcoder.config SET value = '5000' WHERE key = 'history_timeout_ms'", dbname=name)
        shop.load_sample(cluster, SHOP_TEMPLATE)
        yield cluster


@pytest.fixture
def new_db(pg: Cluster) -> Iterator[Callable[..., str]]:
    """``new_db(sample=True, socket=None)``: a fresh database copied from a template."""
    created: list[str] = []

    def make(sample: bool = True, socket: str | None = None) -> str:
        name = f"test_{os.getpid()}_{next(_counter)}"
        pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{SHOP_TEMPLATE if sample else EMPTY_TEMPLATE}"')
        created.append(name)
        if socket is not None:
            configure_socket(pg, name, socket)
        return name

    yield make
    for name in created:
        pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_socket(cluster: Cluster, dbname: str, path: str) -> None:
    """Point a database's sqlcoder at a daemon socket (a superuser's UPDATE)."""
    with cluster.connect(dbname) as conn:
        conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(path),))


@pytest.fixture
def analyst_role(pg: Cluster) -> Iterator[Callable[[str], str]]:
    """``analyst_role(dbname)``: a non-superuser role granted sqlcoder access in that database; returns its name."""
    roles: list[str] = []

    def make(dbname: str) -> str:
        role = f"analyst_{os.getpid()}_{next(_counter)}"
        pg.psql(f'CREATE ROLE "{role}" LOGIN')
        roles.append(role)
        with pg.connect(dbname) as conn:
            conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
            conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (role,))
        return role

    yield make
    for role in roles:
        pg.psql(f'DROP OWNED BY "{role}" CASCADE', check=False)
        for db in pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'test_%'").split():
            pg.psql(f'DROP OWNED BY "{role}" CASCADE', dbname=db, check=False)
        pg.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)
