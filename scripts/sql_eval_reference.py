"""Print sql-eval's own verdicts on a judge cases file, for comparison with ``sqlcoder-eval judge``.

Runs defog-ai/sql-eval's ``compare_query_results`` itself (imported from a checkout
of sql-eval, not copied) in a separate virtual environment that has what sql-eval
needs (pandas, numpy, SQLAlchemy, psycopg2, func_timeout)::

    python3 -m venv /tmp/sqleval-venv
    /tmp/sqleval-venv/bin/pip install pandas==2.2.0 numpy==1.26.3 sqlalchemy==2.0.25 psycopg2-binary func_timeout
    /tmp/sqleval-venv/bin/python scripts/sql_eval_reference.py --sql-eval SQL_EVAL_CHECKOUT \\
        --host SOCKET_DIR --port PORT --cases cases.csv > theirs.txt

The databases must already be loaded on that server (``sqlcoder-eval load --no-extension``).
Prints ``JUDGE <row> exact=<bool> subset=<bool>`` like ``sqlcoder-eval judge``; what sql-eval
raised goes to stderr (it counts as wrong, as in sql-eval's runners).
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sql-eval", required=True, help="a checkout of defog-ai/sql-eval (eval/eval.py, utils/creds.py)")
    ap.add_argument("--host", required=True, help="server host or socket directory")
    ap.add_argument("--port", required=True)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--cases", required=True, help="CSV: db_name, question, gold, answer [, query_category]")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    sys.path.insert(0, args.sql_eval)
    import sqlalchemy

    import eval.eval as sql_eval  # sql-eval's module, from the checkout

    connect = sqlalchemy.create_engine

    def engine(url: object, *a: object, **kw: object) -> object:
        # sql-eval builds user:password@host:port URLs; point them at this server's socket instead.
        db = str(url).rsplit("/", 1)[-1]
        return connect(f"postgresql+psycopg2://{args.user}@/{db}?host={args.host}&port={args.port}")

    sql_eval.create_engine = engine
    creds = {"user": args.user, "password": "", "host": args.host, "port": args.port}
    with open(args.cases, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            try:
                exact, subset = sql_eval.compare_query_results(
                    row["gold"], row["answer"], row["db_name"], "postgres", creds, row["question"],
                    row.get("query_category") or "", timeout=10.0)
            except Exception as e:  # noqa: BLE001 - sql-eval's runners count any exception as wrong
                exact = subset = False
                print(f"NOTE {i} {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
            print(f"JUDGE {i} exact={str(bool(exact)).lower()} subset={str(bool(subset)).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
