"""``make demo``: a throwaway cluster, the sample shop, the real daemon, three questions.

With ``SQLCODER_MODEL`` set (a local directory or hub id of real SQLCoder
weights) the daemon serves that model (``SQLCODER_QUANTIZE``, default nf4, and
``SQLCODER_DEVICE_MAP``, default auto). Otherwise it serves the tiny demo
model, trained in seconds on this sample's questions: it knows those
questions and nothing else, and the demo says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from decimal import Decimal

import psycopg

from . import shop, smollm2
from .daemonproc import DaemonProcess, socket_dir
from .pgcluster import Cluster

__all__ = ["main"]

DEMO_QUESTIONS = 3


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[object]], limit: int = 5) -> None:
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in row] for row in rows[:limit]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("    " + " | ".join(v.ljust(w) for v, w in zip(row, widths)))
        if n == 0:
            print("    " + "-+-".join("-" * w for w in widths))
    if len(rows) > limit:
        print(f"    ... ({len(rows)} rows)")
    else:
        print(f"    ({len(rows)} row{'s' if len(rows) != 1 else ''})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=DEMO_QUESTIONS, help="how many sample questions to ask")
    parser.add_argument("--smollm2", action="store_true",
                        help="serve SmolLM2-135M-Instruct (a real 135M model: a smoke test, not SQLCoder) on llama.cpp")
    args = parser.parse_args(argv)

    real_model = os.environ.get("SQLCODER_MODEL")
    sockdir = socket_dir(prefix="sqlcoder-demo-")
    try:
        with Cluster() as pg:
            print(f"* PostgreSQL cluster started (socket {pg.sockdir}, port {pg.port})")
            pg.createdb("shop")
            pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname="shop")
            shop.load_sample(pg, "shop")
            pg.psql("CREATE ROLE analyst LOGIN")
            with pg.connect("shop") as conn:
                conn.execute("GRANT USAGE ON SCHEMA public TO analyst")
                conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst")
                conn.execute("SELECT sqlcoder.grant_access('analyst')")
            print("* sample shop database loaded (customers, products, orders, order_items); role analyst granted")

            if args.smollm2:
                model = str(smollm2.ensure_gguf())
                extra = ["--backend", "llama_cpp", "--max-new-tokens", "160"]
                print(f"* model: SmolLM2-135M-Instruct, Q4_1 GGUF on llama.cpp ({model})")
                print("  A SMOKE-TEST MODEL: 135M parameters, a real pretrained model but no SQLCoder. It shows the")
                print("  whole path on real weights (tokenizer, daemon, guard, errors); most answers will be wrong or")
                print("  refused with a precise error. Set SQLCODER_MODEL to real SQLCoder weights for real answers.")
            elif real_model:
                model = real_model
                extra = ["--quantize", os.environ.get("SQLCODER_QUANTIZE", "nf4"),
                         "--device-map", os.environ.get("SQLCODER_DEVICE_MAP", "auto")]
                print(f"* model: {model} (SQLCODER_MODEL)")
            else:
                started = time.monotonic()
                model = str(shop.ensure_demo_model(pg, "shop"))
                extra = ["--quantize", "none", "--device-map", "cpu"]
                print(f"* model: DEMO MODEL ({time.monotonic() - started:.1f} s to train or load from cache)")
                print("  This is a tiny Llama trained on the spot on this sample's questions. It knows those")
                print("  questions and nothing else. Set SQLCODER_MODEL to real SQLCoder weights for real answers.")

            sock = sockdir / "sqlcoder.sock"
            started = time.monotonic()
            with DaemonProcess(model, sock, extra_args=[*extra, "--socket-group", "postgres"]):
                print(f"* sqlcoder-daemon serving on {sock} (ready in {time.monotonic() - started:.1f} s)")
                with pg.connect("shop") as conn:
                    conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(sock),))
                print()
                with pg.connect("shop", user="analyst") as conn:
                    for item in shop.sample_questions()[: args.questions]:
                        question = item["question"]
                        print(f"analyst=> SELECT sqlcoder.ask('{question}');  -- then sqlcoder.execute() of it")
                        started = time.monotonic()
                        try:
                            sql = conn.execute("SELECT sqlcoder.ask(%s)", (question,)).fetchone()[0]
                        except psycopg.Error as e:  # a real model's answer: refused, cut, or no SQL
                            took = time.monotonic() - started
                            print(f"  ERROR {e.sqlstate} ({took:.2f} s): {e.diag.message_primary}")
                            print(f"  HINT: {e.diag.message_hint}\n")
                            continue
                        print(f"  SQL ({time.monotonic() - started:.2f} s): {sql}")
                        # Run what came back through the extension's guard: one plain
                        # query, read-only, as the analyst (one json object per row).
                        rows = [json.loads(r[0], parse_float=Decimal)  # numbers as PostgreSQL printed them
                                for r in conn.execute("SELECT r::text FROM sqlcoder.execute(%s) AS r", (sql,))]
                        columns = list(rows[0]) if rows else []
                        _print_rows(columns, [list(r.values()) for r in rows])
                        print()
                print("* the same in a browser page: make web-demo (sqlcoder-web; see README, 'The browser page')")
            print("* daemon stopped")
        print("* cluster stopped and removed")
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
