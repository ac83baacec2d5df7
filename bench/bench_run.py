"""sqlcoder.execute's cost per call, how precisely its time limit stops a query, and cancel latency.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``execute_overhead_ms``: sqlcoder.execute('SELECT 1') minus a plain SELECT 1
  (guard with the function policy, watchdog process, read-only
  subtransaction, history row).
- ``policy_check_ms_50``: the guard's analysis and function policy alone
  (the lists handed to the C hooks, ``sqlcoder_internal._query_objects`` analyzing
  with the hooks armed, plus the policy's pg_proc lookup, in PL/Python) for
  a query calling 50 distinct functions.
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


# 50 distinct stable or immutable functions (all allowed), one query.
FIFTY = ("SELECT " + ", ".join(f"{f}" for f in [
    "abs(-1)", "sqrt(4.0)", "cbrt(8.0)", "ceil(1.5)", "floor(1.5)", "round(1.5)", "trunc(1.5)", "sign(-2)",
    "exp(1.0)", "ln(2.0)", "log(10.0)", "power(2.0, 3)", "mod(7, 3)", "gcd(12, 8)", "lcm(4, 6)", "pi()",
    "degrees(1.0)", "radians(90.0)", "sin(1.0)", "cos(1.0)", "tan(1.0)", "asin(0.5)", "acos(0.5)",
    "atan(1.0)", "lower('A')", "upper('a')", "initcap('ab')", "length('abc')", "reverse('abc')",
    "repeat('a', 2)", "lpad('a', 3)", "rpad('a', 3)", "ltrim(' a')", "rtrim('a ')", "btrim(' a ')",
    "md5('a')", "replace('ab', 'a', 'c')", "split_part('a,b', ',', 1)", "strpos('abc', 'b')",
    "substr('abc', 2)", "left('abc', 1)", "right('abc', 1)", "ascii('a')", "chr(65)", "to_hex(255)",
    "quote_ident('a')", "quote_literal('a')", "concat('a', 'b')", "now()", "age(now(), now())"]))
POLICY_PROBE = """
CREATE FUNCTION pg_temp.policy_probe(sql text, n integer) RETURNS double precision LANGUAGE plpython3u AS $$
import sys, time
sys.path.insert(0, "%s")
from sqlcoder import guard, policy
lists = policy.FunctionLists()
started = time.perf_counter()
for _ in range(n):
    policy.hand_to_hooks(plpy, lists)
    objects = guard.query_objects(plpy, sql)
    policy.check_functions(plpy, objects.functions, objects.opaque, lists)
return (time.perf_counter() - started) / n * 1000
$$"""


def policy_check_ms(pg: Cluster) -> float:
    """The analysis and policy for FIFTY, per call, measured inside the backend (as a superuser: pg_temp plpython)."""
    import subprocess

    import sqlcoder
    share = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    with pg.connect(DB) as admin:
        admin.execute(POLICY_PROBE % f"{share}/extension/sqlcoder_python/{sqlcoder.__version__}")
        functions = admin.execute("SELECT count(DISTINCT objid) FROM sqlcoder_internal._query_objects(%s) "
                                  "WHERE kind = 'function'", (FIFTY,)).fetchone()[0]
        assert functions >= 50, functions
        admin.execute("SELECT pg_temp.policy_probe(%s, 5)", (FIFTY,))  # warm: plans, caches
        return admin.execute("SELECT pg_temp.policy_probe(%s, 50)", (FIFTY,)).fetchone()[0]


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
        setup_run_database(pg, DB, TEMPLATE, fake.path, ROLE, {"query_timeout_ms": "1000",
                                                           "allowed_functions": "pg_sleep(double precision)"})
        with pg.connect(DB, user=ROLE) as conn:
            plain = timed(conn, "SELECT 1", 50)
            guarded = timed(conn, "SELECT * FROM sqlcoder.execute('SELECT 1')", 30)
            print(f"BENCH execute_overhead_ms {(guarded - plain) * 1000:.1f} ms", flush=True)
            print(f"BENCH policy_check_ms_50 {policy_check_ms(pg):.2f} ms", flush=True)
            print(f"BENCH time_limit_sleep_s {limit_seconds(conn, 'SELECT pg_sleep(5)'):.2f} s", flush=True)
            cross = "SELECT count(*) FROM generate_series(1, 20000) a, generate_series(1, 20000) b"
            print(f"BENCH time_limit_cross_join_s {limit_seconds(conn, cross):.2f} s", flush=True)
            fake.misbehave("hang")
            latencies = [cancel_latency(pg, conn) for _ in range(3)]
            print(f"BENCH cancel_latency_ms {statistics.median(latencies) * 1000:.0f} ms", flush=True)
        drop_run_database(pg, DB, ROLE)


if __name__ == "__main__":
    main()
