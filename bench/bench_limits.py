"""Limits a guarded call cannot swallow: memory, temporary files and time for the shapes that used to escape them.

Prints ``BENCH <name> <value> <unit>`` lines, every setting at its default
except ``query_timeout_ms`` where said:

- ``limits_peak_wide_columns_mib``: the backend's peak resident memory
  (VmHWM, a fresh backend, PL/Python's own ~40 MiB included) when
  ``sqlcoder.run`` gets 24 computed columns of 100 MB in one row (4.6 GB
  before ``max_memory_bytes``); ``limits_peak_folded_columns_mib`` the same
  for 24 constant columns, which the planner folds while the guard plans.
  Bound: ``max_memory_bytes`` (512 MiB) above the backend's size at the start.
- ``limits_spill_temp_mib``: temporary files a sort that would spill about
  3 GB wrote before ``max_temp_bytes`` (1 GiB) stopped it (pg_stat_database's
  ``temp_bytes``), ``limits_spill_peak_mib`` the backend's peak meanwhile,
  ``limits_spill_ms`` how long the call took.
- ``limits_cancel_catching_end_ms``: for a superuser's PL/pgSQL function that
  catches ``query_canceled`` in a loop, the time from the limit
  (``query_timeout_ms`` = 1 s) to the end of the call (median of 5; before:
  never, the call went on until its loop ended), and
  ``limits_cancel_catching_terminated`` how many of the 5 ended with the
  backend terminated (the rest by a repeated cancel, 57014).
- ``limits_cancel_few_end_ms``: the same for a loop that catches three
  cancels and then lets the fourth through (57014, the session lives on).
"""

from __future__ import annotations

import statistics
import time

import psycopg

from sqlcoder_daemon.memory import proc_bytes
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB, ROLE, TEMPLATE = "bench_limits", "bench_limits_analyst", "bench_limits_template"
MiB = 1 << 20
LIMIT_S = 1.0

CATCHERS = f"""
CREATE FUNCTION public.swallow_every_cancel() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
  LOOP
    BEGIN
      PERFORM count(*) FROM generate_series(1, 100000);
    EXCEPTION WHEN query_canceled THEN
      NULL;
    END;
  END LOOP;
END $$;
CREATE FUNCTION public.swallow_three() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE caught int := 0;
BEGIN
  LOOP
    BEGIN
      PERFORM count(*) FROM generate_series(1, 100000);
    EXCEPTION WHEN query_canceled THEN
      caught := caught + 1;
      IF caught >= 3 THEN RAISE; END IF;
    END;
  END LOOP;
END $$;
GRANT EXECUTE ON FUNCTION public.swallow_every_cancel(), public.swallow_three() TO {ROLE};
"""


def _columns(expr: str, n: int) -> str:
    return ", ".join(f"{expr} AS c{i}" for i in range(1, n + 1))


def run_once(pg: Cluster, fake: FakeDaemon, sql: str) -> tuple[str, int, float, int]:
    """(SQLSTATE or 'rows', backend peak bytes, seconds, backend pid) of one sqlcoder.run in a fresh backend."""
    fake.reply(" " + sql + ";")
    with pg.connect(DB, user=ROLE) as conn:
        pid = conn.info.backend_pid
        started = time.monotonic()
        try:
            conn.execute("SELECT * FROM sqlcoder.run('everything')").fetchall()
            state = "rows"
        except psycopg.Error as exc:
            state = exc.sqlstate or "closed"
        took = time.monotonic() - started
        peak = proc_bytes(f"/proc/{pid}/status", "VmHWM") or 0
        if state != "closed" and state != "57P01":
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.execute("SELECT 1")
        return state, peak, took, pid


def peak_mib(pg: Cluster, fake: FakeDaemon, sql: str, expected: str) -> float:
    state, peak, _, _ = run_once(pg, fake, sql)
    if state != expected:
        raise SystemExit(f"expected {expected}, got {state}: {sql[:80]}")
    return peak / MiB


def temp_bytes(admin: psycopg.Connection) -> int:
    admin.execute("SELECT pg_stat_clear_snapshot()")
    return int(admin.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = %s", (DB,)).fetchone()[0])


def main() -> None:
    with Cluster() as pg, FakeDaemon(socket_dir() / "fake.sock") as fake:
        pg.createdb(TEMPLATE)
        pg.psql("CREATE EXTENSION sqlcoder CASCADE; CREATE TABLE customers (id int)", dbname=TEMPLATE)
        setup_run_database(pg, DB, TEMPLATE, fake.path, ROLE, {"query_timeout_ms": "600000"})
        with pg.connect(DB) as admin:
            admin.execute(CATCHERS)

            wide = "SELECT " + _columns("repeat(md5(g::text), 3125000)", 24) + " FROM generate_series(1, 2) g"
            print(f"BENCH limits_peak_wide_columns_mib {peak_mib(pg, fake, wide, '53200'):.0f} MiB", flush=True)
            folded = "SELECT " + _columns("repeat(md5('y'), 3125000)", 24)
            print(f"BENCH limits_peak_folded_columns_mib {peak_mib(pg, fake, folded, '53200'):.0f} MiB", flush=True)

            spill = ("SELECT max(r) AS r FROM (SELECT row_number() OVER (ORDER BY md5((a * 5000 + b)::text)) AS r "
                     "FROM generate_series(1, 8000) a, generate_series(1, 5000) b) s")
            before = temp_bytes(admin)
            state, peak, took, _ = run_once(pg, fake, spill)
            if state != "53400":
                raise SystemExit(f"the spilling sort ended with {state}")
            time.sleep(1.5)
            written = temp_bytes(admin) - before
            print(f"BENCH limits_spill_temp_mib {written / MiB:.0f} MiB", flush=True)
            print(f"BENCH limits_spill_peak_mib {peak / MiB:.0f} MiB", flush=True)
            print(f"BENCH limits_spill_ms {took * 1000:.0f} ms", flush=True)

            admin.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'query_timeout_ms'",
                          (str(int(LIMIT_S * 1000)),))
            ends, terminated = [], 0
            for _ in range(5):
                state, _, took, pid = run_once(pg, fake, "SELECT public.swallow_every_cancel() AS n")
                ends.append((took - LIMIT_S) * 1000)
                if state != "57014":
                    terminated += 1
                while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                    time.sleep(0.01)
            print(f"BENCH limits_cancel_catching_end_ms {statistics.median(ends):.0f} ms", flush=True)
            print(f"BENCH limits_cancel_catching_terminated {terminated} of 5", flush=True)
            few = []
            for _ in range(5):
                state, _, took, _ = run_once(pg, fake, "SELECT public.swallow_three() AS n")
                if state != "57014":
                    raise SystemExit(f"the loop that gives up ended with {state}")
                few.append((took - LIMIT_S) * 1000)
            print(f"BENCH limits_cancel_few_end_ms {statistics.median(few):.0f} ms", flush=True)
        drop_run_database(pg, DB, ROLE)


if __name__ == "__main__":
    main()
