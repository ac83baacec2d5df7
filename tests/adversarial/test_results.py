"""Hostile model output that asks for a huge result, and a client that goes away while the model
runs (the same invariants as tests/adversarial/test_hostile_sql.py; docs/security.md has the table)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from helpers.adversarial import DB, ROLE, assert_unharmed, fingerprint, outcome_of
from helpers.hostile import ROWS
from sqlcoder_dev.fake_daemon import FakeDaemon
from sqlcoder_dev.pgcluster import Cluster

# ===== Results bounded in bytes, abandoned calls =====
# Hostile output that asks for a huge result, and a client that goes away.
# Each result case also measures the backend's peak memory (VmHWM in /proc;
# the analyst fixture is a fresh backend per case).

MiB = 1 << 20
RESULT_LIMIT = 64 * MiB  # max_result_bytes' default
PEAK_BOUND = 2 * RESULT_LIMIT + 64 * MiB
# A constant value is folded by the planner before anything runs, held twice for a moment (PostgreSQL's
# own cost of planning it): for one larger than the limit the bound is twice that value + 64 MiB.
FOLDED_100MB_BOUND = 2 * 100_000_000 + 64 * MiB

# (case id, raw model completion, expected SQLSTATE or ROWS, the bound on the backend's peak memory)
HUGE_RESULTS = [
    ("result-many-rows-4x", " SELECT repeat('x', 1048576) AS s FROM generate_series(1, 256);", "54000", PEAK_BOUND),
    ("result-wide-rows-4x", " SELECT repeat('x', 8388608) AS s FROM generate_series(1, 32);", "54000", PEAK_BOUND),
    ("result-rows-times-width", " SELECT g, repeat('y', 100000) AS s FROM generate_series(1, 1000) g;", "54000",
     PEAK_BOUND),
    ("result-json-escape-inflation", " SELECT repeat(chr(1), 4000000) AS s FROM generate_series(1, 20);", "54000",
     PEAK_BOUND),
    ("result-cross-join-wide", " SELECT a.*, b.*, g FROM customers a, customers b, generate_series(1, 1000000) g;",
     ROWS, PEAK_BOUND),
    ("result-ten-million-rows", " SELECT g, md5(g::text) FROM generate_series(1, 10000000) g;", ROWS,
     PEAK_BOUND),
    # One value larger than the limit: refused at its first row from its size, before its JSON text is built
    # (7.3 GB for all ten in the issue, then 515 MiB while each row was converted before it was counted).
    ("result-repeat-10x100mb", " SELECT repeat('x', 100000000) AS s FROM generate_series(1, 10);", "54000",
     FOLDED_100MB_BOUND),
    ("result-repeat-computed-10x100mb",
     " SELECT repeat('x', 100000000 + g - g) AS s FROM generate_series(1, 10) g;", "54000", PEAK_BOUND),
]


@pytest.fixture
def roomy_time_limit(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[None]:
    """Ten seconds, so that on a busy machine the byte limit, not the clock, decides."""
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = '10000' WHERE key = 'query_timeout_ms'")
        yield
        admin.execute("UPDATE sqlcoder.config SET value = '1000' WHERE key = 'query_timeout_ms'")


@pytest.mark.parametrize("case, completion, expected, bound", HUGE_RESULTS, ids=[c[0] for c in HUGE_RESULTS])
def test_huge_result(pg, shop_daemon, analyst_conn, baseline, roomy_time_limit, case, completion, expected,
                     bound) -> None:
    from sqlcoder_daemon.memory import proc_bytes

    shop_daemon.reply(completion)
    got = outcome_of(analyst_conn, "SELECT * FROM sqlcoder.run('show me everything')")
    peak = proc_bytes(f"/proc/{analyst_conn.info.backend_pid}/status", "VmHWM")
    if expected == ROWS:
        assert isinstance(got, list) and len(got) == 1000, got  # max_rows cut it
    else:
        assert got == expected
    assert peak is not None
    assert peak <= bound, f"{case}: backend peak {peak / MiB:.0f} MiB"
    assert_unharmed(pg, analyst_conn, baseline)


def test_killed_client_while_the_model_hangs(pg, shop_daemon, bystander_conn, baseline) -> None:
    import signal
    import subprocess
    import time

    shop_daemon.misbehave("hang")
    requests, disconnects = len(shop_daemon.requests), len(shop_daemon.disconnects)
    app = f"adv-killed-{os.getpid()}"
    client = subprocess.Popen([str(pg.bindir / "psql"), "-X", "-h", str(pg.sockdir), "-p", str(pg.port), "-U", ROLE,
                               "-d", DB, "-c", "SELECT * FROM sqlcoder.run('how many customers are there?')"],
                              env={**os.environ, "PGAPPNAME": app}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(shop_daemon.requests) == requests:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pid = bystander_conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                     (app,)).fetchone()[0]
        client.send_signal(signal.SIGKILL)
        client.wait()
        deadline = time.monotonic() + 3
        while bystander_conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the abandoned backend went on"
            time.sleep(0.02)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert len(shop_daemon.disconnects) > disconnects or _wait_for_disconnect(shop_daemon, disconnects)
    assert bystander_conn.execute("SELECT outcome, error_sqlstate FROM sqlcoder.history WHERE role = %s "
                             "ORDER BY id DESC LIMIT 1", (ROLE,)).fetchone() == ("abandoned", "08006")
    assert fingerprint(pg) == baseline


def _wait_for_disconnect(shop_daemon: FakeDaemon, before: int) -> bool:
    import time

    deadline = time.monotonic() + 5
    while len(shop_daemon.disconnects) <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_every_result_and_abandoned_case_is_in_the_security_note() -> None:
    from helpers.paths import ROOT
    note = (ROOT / "docs" / "security.md").read_text()
    assert [c[0] for c in HUGE_RESULTS if f"`{c[0]}`" not in note] == []
    assert "`killed-client`" in note
