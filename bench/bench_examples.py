"""Golden examples and self-correction, through the real extension.

Prints ``BENCH <name> <value> <unit>`` lines:

- ``example_select_ms_10000``: choosing the examples for one question among
  10,000 (cached index: ranking, the privilege check of the candidates, the
  k-shot block), in the server through the same PL/Python path as prompt();
  median of 200 questions. ``example_index_ms_10000``: building the index
  (reading the examples the role may see, through row-level security), once
  per cached schema.
- ``correction_round_ms``: what one round of self-correction adds to an
  ``ask``: the median ask whose first answer names a wrong column (the
  stand-in daemon answers correctly once the prompt shows PostgreSQL's error)
  minus the median ask answered right at once. The stand-in daemon answers at
  once, so this is sqlcoder's own cost; a real model adds one more generation.
- With the sql-eval data (``$SQL_EVAL_DATA`` or ``../shared/sql-eval``):
  ``example_selection_same_tables_rate``: on the 190 questions, with every
  other question's gold SQL added as an example (its own, and any with the
  same question text, left out), the share of questions for which one of the
  chosen examples reads exactly the same tables as the question's gold query
  (``..._top1_rate``: the first chosen). ``..._random_rate`` is what three
  examples drawn at random from the same database would give (exact
  expectation). ``example_privilege_violations``: chosen examples reading a
  table the asking role may not read, for a role that may read only every
  other table of each database (must be 0).
"""

from __future__ import annotations

import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg

from sqlcoder_dev import shop
from sqlcoder_dev.fake_daemon import FakeDaemon, socket_dir
from sqlcoder_dev.pgcluster import Cluster

HERE = Path(__file__).resolve().parent
N_EXAMPLES = 10_000
WORDS = ("order customer product price category country status shipped cancelled placed revenue total average "
         "count month week year day quantity unit supplier invoice payment refund store region city email name "
         "largest smallest most least first last recent oldest new returning active").split()


def package_dir(conn: psycopg.Connection) -> str:
    call = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = 'sqlcoder_internal._invoke(text, jsonb)'::regprocedure"
                        ).fetchone()[0]
    return re.search(r'sys\.path\.insert\(0, "([^"]+)"\)', call).group(1)


def install_select(conn: psycopg.Connection) -> None:
    """``bench_select(question, exclude bigint[]) -> bigint[]``: prompt()'s example choice, alone."""
    pkg = package_dir(conn)
    conn.execute(
        "CREATE FUNCTION bench_select(question text, exclude bigint[] DEFAULT '{}') RETURNS bigint[] "
        "LANGUAGE plpython3u AS $body$"
        f"import sys\nif {pkg!r} not in sys.path:\n    sys.path.insert(0, {pkg!r})\n"
        "from sqlcoder import assemble, config, examples, schema_cache\n"
        "settings = config.load(plpy)\n"
        "path = plpy.execute('SELECT current_schemas(true) AS p')[0]['p']\n"
        "cached = schema_cache.get(plpy, path, assemble._hint_settings(settings), settings.max_comment_chars)\n"
        "chosen = examples.select(plpy, cached, question, settings.max_examples, exclude or [])\n"
        "examples.render(chosen)\n"
        "return [e.id for e in chosen]\n$body$")


def question(i: int) -> str:
    w = WORDS
    return (f"{w[i % len(w)]} {w[(i // 7) % len(w)]} by {w[(i // 49) % len(w)]} "
            f"for each {w[(i // 343) % len(w)]} number {i}")


def measure_selection(pg: Cluster) -> None:
    db = "bench_examples"
    pg.createdb(db)
    pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=db)
    shop.load_sample(pg, db)
    with pg.connect(db) as conn:
        conn.execute("UPDATE sqlcoder.config SET value = '/nonexistent/sqlcoder.sock' WHERE key = 'socket_path'")
        # 10,000 rows in one statement with triggers off (a superuser's session_replication_role): the
        # per-row guard is add_example's cost, not selection's. Each reads one of the shop's tables.
        conn.execute("SET session_replication_role = replica")
        with conn.cursor().copy("COPY sqlcoder.examples (question, sql, tables) FROM STDIN") as copy:
            tables = ("customers", "orders", "products", "order_items")
            for i in range(N_EXAMPLES):
                table = tables[i % 4]
                copy.write_row((question(i), f"SELECT count(*) FROM {table} WHERE {i} > 0", f"{{{table}}}"))
        conn.execute("RESET session_replication_role")
        install_select(conn)
    role = "bench_examples_reader"
    pg.psql(f"CREATE ROLE {role} LOGIN")
    pg.psql(f"GRANT SELECT ON customers, orders TO {role}; GRANT USAGE ON SCHEMA public TO {role}; "
            f"SELECT sqlcoder.grant_access('{role}'); GRANT EXECUTE ON FUNCTION bench_select(text, bigint[]) "
            f"TO {role}", dbname=db)
    with pg.connect(db, user=role) as conn:
        started = time.perf_counter()
        conn.execute("SELECT bench_select('warm up')").fetchone()
        cold = (time.perf_counter() - started) * 1000
        samples = []
        for i in range(200):
            q = question(i * 37 + 5).replace("number", "with")
            started = time.perf_counter()
            chosen = conn.execute("SELECT bench_select(%s)", (q,)).fetchone()[0]
            samples.append((time.perf_counter() - started) * 1000)
            assert chosen, f"no example chosen for {q!r}"
        # The same call without any example work: what the SQL round trip and schema cache cost.
        base = []
        for _ in range(200):
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            base.append((time.perf_counter() - started) * 1000)
    print(f"BENCH example_select_ms_{N_EXAMPLES} {statistics.median(samples):.2f} ms", flush=True)
    print(f"BENCH example_index_ms_{N_EXAMPLES} {cold:.1f} ms", flush=True)
    print(f"# a trivial query over the same connection: {statistics.median(base):.2f} ms (round trip included "
          "in the figures above)", flush=True)
    pg.psql(f'DROP DATABASE "{db}"')
    pg.psql(f"DROP ROLE {role}")


def measure_correction(pg: Cluster, runs: int = 60) -> None:
    db = "bench_correction"
    pg.createdb(db)
    pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=db)
    shop.load_sample(pg, db)
    with FakeDaemon(socket_dir() / "bench-correction.sock") as fake, pg.connect(db) as conn:
        conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(fake.path),))
        right = " SELECT name FROM customers;\n[/SQL]"

        def ask() -> float:
            started = time.perf_counter()
            sql = conn.execute("SELECT sqlcoder.ask('customer names')").fetchone()[0]
            assert sql == "SELECT name FROM customers;", sql
            return (time.perf_counter() - started) * 1000

        # Interleaved, so that both medians see the same load on the machine.
        direct_ms, corrected_ms = [], []
        for i in range(runs + 1):
            fake.reply(right)
            direct = ask()
            fake.reply(" SELECT nme FROM customers;\n[/SQL]").reply_when('column "nme" does not exist', right)
            corrected = ask()
            if i:  # the first pair warms the caches
                direct_ms.append(direct)
                corrected_ms.append(corrected)
        direct, corrected = statistics.median(direct_ms), statistics.median(corrected_ms)
    print(f"BENCH correction_round_ms {corrected - direct:.1f} ms", flush=True)
    print(f"# ask answered at once {direct:.1f} ms, after one correction {corrected:.1f} ms (stand-in daemon)",
          flush=True)
    pg.psql(f'DROP DATABASE "{db}"')


def data_dir() -> Path | None:
    chosen = os.environ.get("SQL_EVAL_DATA") or str(HERE.parent.parent / "shared" / "sql-eval")
    return Path(chosen) if (Path(chosen) / "databases").is_dir() else None


def _random_rate(n: int, m: int, k: int = 3) -> float:
    """P(at least one of k examples drawn from n has one of the m matching table sets)."""
    k = min(k, n)
    if n <= 0 or k <= 0:
        return 0.0
    return 1.0 - math.comb(n - m, k) / math.comb(n, k)


def measure_sql_eval(pg: Cluster, root: Path) -> None:
    from sqlcoder_eval.dataset import Dataset
    from sqlcoder_eval.goldsql import expand_gold
    from sqlcoder_eval.load import load_database

    dataset = Dataset(root)
    questions = dataset.questions()
    hits = top1 = random_sum = 0.0
    asked = refused = violations = checked = 0
    for database in dataset.databases():
        mine = [q for q in questions if q.db_name == database.name]
        if not mine:
            continue
        name = f"bench_ex_{database.name}"
        load_database(pg.conninfo(), database.__class__(**{**database.__dict__, "name": name}), replace=True,
                      settings={"socket_path": "/nonexistent/sqlcoder.sock"})
        ids: dict[int, int] = {}
        with pg.connect(name) as conn:
            conn.autocommit = True
            for q in mine:
                try:
                    ids[q.id] = conn.execute("SELECT sqlcoder.add_example(%s, %s)",
                                             (q.question, expand_gold(q.gold)[0])).fetchone()[0]
                except psycopg.Error as exc:
                    refused += 1
                    print(f"# {database.name} question {q.id}: gold refused as an example: "
                          f"{exc.diag.message_primary}", flush=True)
            tables = {int(r[0]): frozenset(r[1]) for r in conn.execute(
                "SELECT id, tables::oid[]::int8[] FROM sqlcoder.examples").fetchall()}
            install_select(conn)
            same_text: dict[str, list[int]] = {}
            for q in mine:
                if q.id in ids:
                    same_text.setdefault(q.question, []).append(ids[q.id])
            for q in mine:
                if q.id not in ids:
                    continue
                exclude = same_text[q.question]
                chosen = conn.execute("SELECT bench_select(%s, %s)", (q.question, exclude)).fetchone()[0]
                gold = tables[ids[q.id]]
                same = [tables[c] == gold for c in chosen]
                asked += 1
                hits += any(same)
                top1 += bool(same and same[0])
                others = [t for i, t in tables.items() if i not in exclude]
                random_sum += _random_rate(len(others), sum(t == gold for t in others))
            # Privileges: a role that may read every other table never gets an example reading the rest.
            rels = [int(r[0]) for r in conn.execute(
                "SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' "
                "ORDER BY c.relname").fetchall()]
            allowed = set(rels[::2])
            role = f"{name}_reader"
            conn.execute(f"CREATE ROLE {role}")
            conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            for oid in allowed:
                conn.execute(f"GRANT SELECT ON {conn.execute('SELECT %s::regclass::text', (oid,)).fetchone()[0]} "
                             f"TO {role}")
            conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (role,))
            conn.execute(f"GRANT EXECUTE ON FUNCTION bench_select(text, bigint[]) TO {role}")
            conn.execute(f"SET ROLE {role}")
            for q in mine:
                chosen = conn.execute("SELECT bench_select(%s)", (q.question,)).fetchone()[0]
                checked += 1
                violations += sum(not tables[c] <= allowed for c in chosen)
            conn.execute("RESET ROLE")
        pg.psql(f'DROP DATABASE "{name}" WITH (FORCE)')
        pg.psql(f"DROP OWNED BY {role}; DROP ROLE {role}", check=False)
    print(f"BENCH example_selection_same_tables_rate {hits / asked:.3f} ratio", flush=True)
    print(f"BENCH example_selection_same_tables_top1_rate {top1 / asked:.3f} ratio", flush=True)
    print(f"BENCH example_selection_same_tables_random_rate {random_sum / asked:.3f} ratio", flush=True)
    print(f"BENCH example_privilege_violations {violations} examples", flush=True)
    print(f"# sql-eval: {asked} questions, {refused} gold queries refused as examples, "
          f"{checked} questions asked by the restricted role", flush=True)


def main() -> int:
    with Cluster() as pg:
        measure_selection(pg)
        measure_correction(pg)
        root = data_dir()
        if root is None:
            print("# no sql-eval data folder ($SQL_EVAL_DATA or ../shared/sql-eval): selection rate not measured",
                  flush=True)
        else:
            measure_sql_eval(pg, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
