"""How fast sqlcoder.prompt() gets the schema, at 100, 1,000 and 10,000 tables.

Prints, per size n, ``BENCH <name> <value> <unit>`` lines:

- ``catalog_cold_ms_<n>``: ``SELECT length(sqlcoder.prompt(...))`` right after
  a COMMENT invalidated the backend's cached schema (read from pg_catalog and
  rendered again). Median of several runs.
- ``catalog_cached_ms_<n>``: the same call, schema cached. Median.
- ``catalog_speedup_vs_information_schema_<n>``: a straightforward
  information_schema reader of the same output (``bench/_infoschema.py``,
  joining the views in SQL the textbook way), run in the server through the
  same PL/Python path and rendering, timed side by side; its median over the
  cold median. It is stopped after ``BASELINE_CAP_S[n]`` seconds; the figure is then a
  lower bound, and a ``#`` line says so.
- ``catalog_speedup_vs_information_schema_split_<n>``: the same against a
  charitable baseline that reads each view once and joins in Python.

Each timed figure also comes as ``..._cpu_ms_<n>``: the server backend's CPU
time per call (from /proc), which stays meaningful on a machine busy with
other work, where wall-clock figures are not.

A ``#`` line gives the cached figure of ``api.op_prompt`` called directly,
without the SQL wrappers (``sqlcoder_internal._invoke`` and ``_result``) around it.

``length()`` keeps the prompt's transfer to the client out of the figures:
moving megabytes over a socket is not catalog work. The synthetic schema has
ten columns per table (keys, a unique column, comments) and a foreign key from
every table but the first to an earlier one. No daemon is reachable, so
nothing is pruned: the whole schema is rendered each time.

``pruning_index_ms_10000`` and ``pruning_rank_ms_10000`` time the relevance
ranking used when a schema does not fit the context, in plain Python: building
the index (once per cached schema) and ranking for one question.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg

from sqlcoder_dev.pgcluster import Cluster

HERE = Path(__file__).resolve().parent
SIZES = (100, 1000, 10000)
QUESTION = "how many orders were placed last week?"
BATCH = 500  # tables per transaction: each holds a few locks per table
BASELINE_CAP_S = {100: 30, 1000: 15, 10000: 45}  # the textbook reader takes ~70 s at 1,000 tables


def table_sql(i: int) -> str:
    parent = f",\n  parent_id integer REFERENCES t{(i - 1) // 2:05d} (id)" if i else ",\n  parent_id integer"
    return (f"CREATE TABLE t{i:05d} (\n  id integer PRIMARY KEY{parent},\n  name text NOT NULL,\n"
            f"  code varchar(20) UNIQUE,\n  amount numeric(12,2),\n  quantity integer,\n"
            f"  created_at timestamptz NOT NULL,\n  active boolean,\n  category text,\n  note text);\n"
            f"COMMENT ON TABLE t{i:05d} IS 'synthetic table {i}';\n"
            f"COMMENT ON COLUMN t{i:05d}.amount IS 'amount in EUR';\n")


def build(pg: Cluster, db: str, n: int) -> None:
    pg.createdb(db)
    with pg.connect(db) as conn:
        conn.execute("CREATE EXTENSION sqlcoder CASCADE")
        conn.execute("UPDATE sqlcoder.config SET value = '/nonexistent/sqlcoder.sock' WHERE key = 'socket_path'")
        for start in range(0, n, BATCH):
            conn.execute("".join(table_sql(i) for i in range(start, min(n, start + BATCH))))
        conn.execute("VACUUM ANALYZE")
        install_baseline(conn)


def install_baseline(conn: psycopg.Connection) -> None:
    """``bench_infoschema_prompt(question)``: the information_schema reader, in the server."""
    call = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE oid = 'sqlcoder_internal._invoke(text, jsonb)'::regprocedure").fetchone()[0]
    package_dir = re.search(r'sys\.path\.insert\(0, "([^"]+)"\)', call).group(1)
    source = (HERE / "_infoschema.py").read_text().replace("from __future__ import annotations\n", "")
    body = (f"import sys\nif {package_dir!r} not in sys.path:\n    sys.path.insert(0, {package_dir!r})\n"
            f"{source}\n"
            "from sqlcoder.prompt import render_prompt\n"
            "path = plpy.execute('SELECT current_schemas(true) AS p')[0]['p']\n"
            "from sqlcoder.schema_cache import CachedSchema\n"
            "return render_prompt(question, CachedSchema(read_schema_infoschema(plpy, path, joined)).text)\n")
    conn.execute(f"CREATE FUNCTION bench_infoschema_prompt(question text, joined boolean) RETURNS text "
                 f"LANGUAGE plpython3u AS $body${body}$body$")
    # prompt()'s own Python path without the SQL wrappers around it.
    conn.execute("CREATE FUNCTION bench_prompt_path(question text) RETURNS integer LANGUAGE plpython3u AS $body$"
                 f"import sys\nif {package_dir!r} not in sys.path:\n    sys.path.insert(0, {package_dir!r})\n"
                 "from sqlcoder import api\n"
                 "path = plpy.execute('SELECT current_schemas(true) AS p')[0]['p']\n"
                 "return len(api.op_prompt(plpy, question=question, caller_path=path))\n$body$")


def backend_cpu_ms(conn: psycopg.Connection) -> float:
    """User plus system CPU time of the connection's server process so far."""
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def median_ms(conn: psycopg.Connection, sql: str, runs: int, before: str | None = None,
              params: tuple = (QUESTION,)) -> float:
    return timed(conn, sql, runs, before, params)[0]


def timed(conn: psycopg.Connection, sql: str, runs: int, before: str | None = None,
          params: tuple = (QUESTION,)) -> tuple[float, float]:
    """Median wall-clock ms of ``sql``, and the backend's mean CPU ms per run (``before`` not counted)."""
    samples, cpu = [], 0.0
    for i in range(runs):
        if before:
            conn.execute(before.format(i=i))
        cpu_before = backend_cpu_ms(conn)
        started = time.perf_counter()
        conn.execute(sql, params).fetchone()
        samples.append((time.perf_counter() - started) * 1000)
        cpu += backend_cpu_ms(conn) - cpu_before
    return statistics.median(samples), cpu / runs


def capped_ms(conn: psycopg.Connection, sql: str, runs: int, params: tuple, cap_s: int) -> tuple[float, bool]:
    """Median time of ``sql``, or the cap (and True) once a run is cancelled at ``cap_s``."""
    conn.execute(f"SET statement_timeout = '{cap_s}s'")
    try:
        return median_ms(conn, sql, runs, params=params), False
    except psycopg.errors.QueryCanceled:
        return cap_s * 1000.0, True
    finally:
        conn.execute("RESET statement_timeout")


def measure(pg: Cluster, db: str, n: int) -> None:
    cold_runs, baseline_runs = (7, 3) if n < 10000 else (3, 1)
    with pg.connect(db) as conn:
        ours = conn.execute("SELECT sqlcoder.prompt(%s)", (QUESTION,)).fetchone()[0]
        for joined in (False, True) if n <= 100 else (False,):  # the baselines must do the same work
            if conn.execute("SELECT bench_infoschema_prompt(%s, %s)", (QUESTION, joined)).fetchone()[0] != ours:
                sys.exit(f"bench_catalog: the information_schema reader's prompt differs at n={n} (joined={joined})")
        invalidate = "COMMENT ON TABLE t00000 IS 'synthetic table 0, version {i}'"
        cold, cold_cpu = timed(conn, "SELECT length(sqlcoder.prompt(%s))", cold_runs, before=invalidate)
        cached, cached_cpu = timed(conn, "SELECT length(sqlcoder.prompt(%s))", 100)
        path_only = median_ms(conn, "SELECT bench_prompt_path(%s)", 100)
        split = median_ms(conn, "SELECT length(bench_infoschema_prompt(%s, false))", baseline_runs,
                          params=(QUESTION,))
        joined_ms, capped = capped_ms(conn, "SELECT length(bench_infoschema_prompt(%s, true))",
                                      baseline_runs if n <= 100 else 1, (QUESTION,), BASELINE_CAP_S.get(n, 30))
    print(f"BENCH catalog_cold_ms_{n} {cold:.1f} ms", flush=True)
    print(f"BENCH catalog_cached_ms_{n} {cached:.2f} ms", flush=True)
    print(f"BENCH catalog_cold_cpu_ms_{n} {cold_cpu:.1f} ms", flush=True)
    print(f"BENCH catalog_cached_cpu_ms_{n} {cached_cpu:.2f} ms", flush=True)
    print(f"BENCH catalog_speedup_vs_information_schema_{n} {joined_ms / cold:.1f} x", flush=True)
    if capped:
        print(f"# n={n}: lower bound: the information_schema reader was stopped after {joined_ms / 1000:.0f} s",
              flush=True)
    print(f"BENCH catalog_speedup_vs_information_schema_split_{n} {split / cold:.1f} x", flush=True)
    print(f"# n={n}: cached prompt, Python path alone (no SQL wrappers): {path_only:.2f} ms", flush=True)
    print(f"# n={n}: information_schema {joined_ms:.0f} ms (joined), {split:.0f} ms (split); "
          f"prompt {len(ours) / 1e6:.2f} MB", flush=True)


def measure_pruning(n: int = 10000) -> None:
    """Ranking for pruning at ``n`` tables, in plain Python: building the index (once per cached
    schema) and scoring plus selecting for one question (every pruned call)."""
    from sqlcoder.catalog import Column, Join, Schema, Table
    from sqlcoder.pruning import RelevanceIndex, select_tables

    words = ["order", "customer", "invoice", "shipment", "product", "supplier", "payment", "refund", "store", "region"]
    tables = [Table(oid=i, schema="public", name=f"{words[i % 10]}_{words[(i // 10) % 10]}_{i}",
                    comment=f"synthetic {words[(i // 100) % 10]} table",
                    columns=[Column(name=f"{words[(i + j) % 10]}_{j}", type="integer") for j in range(10)])
              for i in range(n)]
    schema = Schema(tables, [Join(i, ("parent_id",), (i - 1) // 2, ("id",)) for i in range(1, n)])
    started = time.perf_counter()
    index = RelevanceIndex.build(schema)
    built = time.perf_counter()
    for _ in range(10):
        select_tables(index.scores("total refund per store region last month"), [120] * n, 7000)
    ranked = time.perf_counter()
    print(f"BENCH pruning_index_ms_{n} {(built - started) * 1000:.1f} ms", flush=True)
    print(f"BENCH pruning_rank_ms_{n} {(ranked - built) * 100:.2f} ms", flush=True)


def main() -> int:
    measure_pruning()
    with Cluster(settings={"max_locks_per_transaction": "256"}) as pg:
        for n in SIZES:
            db = f"bench_catalog_{n}"
            build(pg, db, n)
            measure(pg, db, n)
            pg.psql(f'DROP DATABASE "{db}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
