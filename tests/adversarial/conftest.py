"""Fixtures of the adversarial tests: the stand-in daemon serving a planted shop database to an ordinary
role, and the sessions hostile SQL would like to reach. Module-scoped: each test module gets its own
stand-in daemon and database. The invariants checked after every case are in tests/helpers/adversarial.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from helpers.adversarial import DB, ROLE, fingerprint
from helpers.hostile import plant, unplant
from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE,
                           {"query_timeout_ms": "1000", "max_reply_bytes": "1048576"})
        plant(pg, DB, ROLE)
        try:
            with pg.connect(DB, user=ROLE) as conn:  # the remote cases are real: without sqlcoder they work
                assert conn.execute("SELECT x FROM dblink('loopback', 'SELECT 7') AS t(x int)").fetchone()[0] == 7
                assert conn.execute("SELECT count(*) FROM remote_orders").fetchone()[0] > 0
                assert conn.execute("SELECT count(*) FROM order_archive").fetchone()[0] > 0
            yield daemon
        finally:
            drop_run_database(pg, DB, ROLE)
            unplant(pg)


@pytest.fixture
def baseline(pg: Cluster, shop_daemon: FakeDaemon) -> tuple:
    return fingerprint(pg)


@pytest.fixture
def bystander_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    """A superuser's session that hostile SQL would like to terminate or cancel."""
    with pg.connect(DB) as conn:
        yield conn


@pytest.fixture
def sibling_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    """Another session of the same role (an application's pool): pg_terminate_backend may not reach it."""
    with pg.connect(DB, user=ROLE) as conn:
        yield conn


@pytest.fixture
def analyst_conn(pg: Cluster, shop_daemon: FakeDaemon, bystander_conn: psycopg.Connection,
            sibling_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    # statement_timeout: a hang fails the test instead of stalling the suite
    with pg.connect(DB, user=ROLE, options="-c statement_timeout=30000") as conn:
        yield conn


