"""Results bounded in bytes and abandoned calls: backend memory for a huge result, and how fast a gone client is seen.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``run_peak_memory_ratio``: the backend's peak resident memory (VmHWM from
  /proc, a fresh backend, PL/Python's own ~37 MiB included) over
  ``max_result_bytes`` (64 MiB, the default) when ``sqlcoder.run`` gets a
  result 4x over the limit; the worse of 256 rows x 1 MiB and 32 rows x 8 MiB.
  Target: at most 2.
- ``run_peak_memory_mib``: that peak in MiB.
- ``abandoned_backend_end_ms``: SIGKILL of a psql waiting in ``sqlcoder.ask``
  (on a daemon that never answers) to its backend gone from pg_stat_activity
  (median of 3).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

import psycopg

from sqlcoder_daemon.memory import proc_bytes
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB, ROLE, TEMPLATE = "bench_result", "bench_result_analyst", "bench_result_template"
MiB = 1 << 20
LIMIT = 64 * MiB


def peak_for(pg: Cluster, fake: FakeDaemon, rows: int, row_bytes: int) -> int:
    fake.reply(f" SELECT repeat('x', {row_bytes}) AS s FROM generate_series(1, {rows});")
    with pg.connect(DB, user=ROLE) as conn:
        try:
            conn.execute("SELECT * FROM sqlcoder.run('everything')").fetchall()
            raise SystemExit("the result 4x over max_result_bytes was not refused")
        except psycopg.errors.ProgramLimitExceeded:
            pass
        peak = proc_bytes(f"/proc/{conn.info.backend_pid}/status", "VmHWM")
        if peak is None:
            raise SystemExit("no VmHWM in /proc/PID/status")
        return peak


def abandoned_ms(pg: Cluster, admin: psycopg.Connection, n: int) -> float:
    app = f"bench-abandon-{n}"
    client = subprocess.Popen([str(pg.bindir / "psql"), "-X", "-h", str(pg.sockdir), "-p", str(pg.port), "-U", ROLE,
                               "-d", DB, "-c", "SELECT sqlcoder.ask('how many customers?')"],
                              env={**os.environ, "PGAPPNAME": app}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        row = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event IS NULL",
                            (app,)).fetchone()
        if row:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the ask never started")
        time.sleep(0.01)
    time.sleep(0.3)  # well inside the wait on the daemon
    client.kill()
    client.wait()
    killed = time.perf_counter()
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (row[0],)).fetchone():
        if time.perf_counter() - killed > 30:
            raise SystemExit("the abandoned backend did not end")
        time.sleep(0.005)
    return (time.perf_counter() - killed) * 1000


def main() -> None:
    with Cluster() as pg, FakeDaemon(socket_dir() / "fake.sock") as fake:
        pg.createdb(TEMPLATE)
        pg.psql("CREATE EXTENSION sqlcoder CASCADE; CREATE TABLE customers (id int)", dbname=TEMPLATE)
        setup_run_database(pg, DB, TEMPLATE, fake.path, ROLE, {"query_timeout_ms": "60000"})
        peak = max(peak_for(pg, fake, 256, MiB), peak_for(pg, fake, 32, 8 * MiB))
        print(f"BENCH run_peak_memory_ratio {peak / LIMIT:.2f} x", flush=True)
        print(f"BENCH run_peak_memory_mib {peak / MiB:.0f} MiB", flush=True)
        fake.misbehave("hang")
        with pg.connect(DB) as admin:
            ms = statistics.median(abandoned_ms(pg, admin, n) for n in range(3))
        print(f"BENCH abandoned_backend_end_ms {ms:.0f} ms", flush=True)
        drop_run_database(pg, DB, ROLE)


if __name__ == "__main__":
    main()
