"""sqlcoder.execute's cost per call, how precisely its time limit stops a query, and cancel latency.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``execute_overhead_ms``: sqlcoder.execute('SELECT 1') minus a plain SELECT 1
  (guard, watchdog process, read-only subtransaction, history row).
- ``time_limit_sleep_s`` / ``time_limit_cross_join_s``: when a 1 s limit
  returns control for ``pg_sleep(5)`` and a 20,000 x 20,000 cross join.
- ``cancel_latency_ms``: pg_cancel_backend to error, for a call waiting on a
  daemon that never answers.
"""

from __future__ import annotations

import statistics
import threading
import time

import psycopg

from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB, ROLE, TEMPLATE = "bench_run", "bench_analyst", "bench_run_template"


def timed(conn: psycopg.Connection, sql: str, n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        conn.execute(sql).fetchall()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def limit_seconds(conn: psycopg.Connection, query: str) -> float:
    started = time.perf_counter()
    try:
        conn.execute("SELECT * FROM sqlcoder.execute(%s)", (query,)).fetchall()
    except psycopg.errors.QueryCanceled:
        pass
    return time.perf_counter() - started


def cancel_latency(pg: Cluster, conn: psycopg.Connection) -> float:
    stamps: list[float] = []

    def cancel() -> None:
        with pg.connect(DB) as admin:
            stamps.append(time.perf_counter())
            admin.execute("SELECT pg_cancel_backend(%s)", (conn.info.backend_pid,))

    threading.Timer(0.5, cancel).start()
    try:
        conn.execute("SELECT sqlcoder.ask('how many customers?')")
    except psycopg.errors.QueryCanceled:
        pass
    return time.perf_counter() - stamps[0]


def main() -> None:
    with Cluster() as pg, FakeDaemon(socket_dir() / "fake.sock") as fake:
        pg.createdb(TEMPLATE)
        pg.psql("CREATE EXTENSION sqlcoder CASCADE; CREATE TABLE customers (id int)", dbname=TEMPLATE)
        setup_run_database(pg, DB, TEMPLATE, fake.path, ROLE, {"query_timeout_ms": "1000"})
        with pg.connect(DB, user=ROLE) as conn:
            plain = timed(conn, "SELECT 1", 50)
            guarded = timed(conn, "SELECT * FROM sqlcoder.execute('SELECT 1')", 30)
            print(f"BENCH execute_overhead_ms {(guarded - plain) * 1000:.1f} ms", flush=True)
            print(f"BENCH time_limit_sleep_s {limit_seconds(conn, 'SELECT pg_sleep(5)'):.2f} s", flush=True)
            cross = "SELECT count(*) FROM generate_series(1, 20000) a, generate_series(1, 20000) b"
            print(f"BENCH time_limit_cross_join_s {limit_seconds(conn, cross):.2f} s", flush=True)
            fake.misbehave("hang")
            latencies = [cancel_latency(pg, conn) for _ in range(3)]
            print(f"BENCH cancel_latency_ms {statistics.median(latencies) * 1000:.0f} ms", flush=True)
        drop_run_database(pg, DB, ROLE)


if __name__ == "__main__":
    main()
