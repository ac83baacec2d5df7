"""sqlcoder-eval through the real extension: ``load`` fills join hints and glossary, and ``run``
asks the trained tiny model through ``sqlcoder.ask``, the socket and the daemon."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest

from sqlcoder_dev import shop
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_eval.cli import main
from sqlcoder_eval.dataset import Dataset
from sqlcoder_eval.load import load_database

SMALL = Path(__file__).parent / "data"


def test_load_with_the_extension_adds_join_hints_and_glossary(pg: Cluster):
    db = dataclasses.replace(Dataset(SMALL).database("shop"), name=f"eval_shop_{os.getpid()}")
    try:
        notes = load_database(pg.conninfo(), db, extension=True, replace=True,
                              settings={"num_beams": "1", "no_such_key": "x"}, glossary=True).notes
        assert notes == ["comments: 15 of 15 described", "config: num_beams = 1",
                         "config: unknown setting 'no_such_key', ignored", "join hints: 3 of 3 added",
                         "glossary: 2 entries added"]
        assert pg.psql("SELECT value FROM sqlcoder.config WHERE key = 'num_beams'", dbname=db.name).strip() == "1"
        hints = pg.psql("SELECT left_table, left_column, right_table, right_column FROM sqlcoder.join_hints"
                        " ORDER BY id", dbname=db.name).split()
        assert hints == ["customers|customer_id|orders|customer_id", "orders|order_id|order_items|order_id",
                         "order_items|product_id|products|product_id"]
        assert pg.psql("SELECT count(*) FROM sqlcoder.instructions", dbname=db.name).strip() == "2"
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


@pytest.mark.slow
def test_run_asks_the_tiny_model_end_to_end(pg: Cluster, new_db, tiny_daemon, tmp_path, capsys):
    """The demo model was trained on the sample database's prompts, so its answers are the gold
    queries: the whole path (ask, execute, compare, report) must score them all right."""
    db = new_db(socket=tiny_daemon.socket_path)
    questions = tmp_path / "questions.csv"
    with open(questions, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "query", "db_name", "query_category", "instructions"])
        for item in shop.sample_questions():
            w.writerow([item["question"], item["sql"], db, "demo", ""])
    out = tmp_path / "ask.jsonl"
    assert main(["run", "--questions", str(questions), "--dsn", pg.conninfo(), "--out", str(out),
                 "--run-name", "tiny", "--parallel", "2", "--no-progress"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(shop.sample_questions())
    assert all(r["error"] is None and r["correct"] and r["latency_ms"] > 0 for r in records), records
    # the model's own text, from the ask's history row, holds the SQL it was cut from
    assert all(r["generated"][:-1] in r["raw_output"] for r in records), records
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "judge", "demo", "overall"]
    assert table[1].split()[:4] == ["tiny", "sql-eval", "100.0", "100.0"]


def test_prompt_profiles_render_through_the_extension(pg: Cluster, tmp_path, capsys):
    """--prompt-profile sets each database's template: sql-eval's prompt for the 70B (no instructions,
    schema fenced, no blank lines between tables), or what ask sends in production."""
    db = dataclasses.replace(Dataset(SMALL).database("retail"), name=f"eval_retail_{os.getpid()}")
    questions = tmp_path / "questions.csv"
    questions.write_text("question,query,db_name,query_category\n"
                         f"How many customers?,SELECT COUNT(*) FROM customer;,{db.name},group_by\n")
    try:
        load_database(pg.conninfo(), db, extension=True, replace=True, glossary=True,
                      settings={"socket_path": "/nonexistent/sqlcoder.sock"})
        out = tmp_path / "gold.jsonl"
        assert main(["run", "--questions", str(questions), "--dsn", pg.conninfo(), "--out", str(out),
                     "--predictions", "gold", "--prompt-profile", "sql-eval", "--no-progress"]) == 0
        assert "prompt profile sql-eval: template = sql-eval in 1 databases" in capsys.readouterr().err
        assert json.loads(out.read_text().splitlines()[0])["prompt_profile"] == "sql-eval"
        with pg.connect(db.name) as conn:
            text = conn.execute("SELECT sqlcoder.prompt('How many customers?')").fetchone()[0]
            assert text.startswith("### Task\nGenerate a SQL query to answer [QUESTION]How many customers?"
                                   "[/QUESTION]\n\n### Database Schema\n")
            assert "I do not know" not in text and "Revenue" not in text  # no instructions, no glossary
            assert "```\nCREATE TABLE customer (\n  custid integer PRIMARY KEY, --Unique identifier" in text
            assert ");\nCREATE TABLE" in text and "\n\nCREATE TABLE" not in text
            assert "tables/column pairs that can be joined in this database:\n```\n" in text
        assert main(["run", "--questions", str(questions), "--dsn", pg.conninfo(), "--out", str(out),
                     "--predictions", "gold", "--prompt-profile", "default", "--no-progress"]) == 0
        with pg.connect(db.name) as conn:
            text = conn.execute("SELECT sqlcoder.prompt('How many customers?')").fetchone()[0]
            assert "return 'I do not know'\n- Revenue is the sum of TotalAmount" in text
            assert "- Order status codes:\n    - N: new\n    - S: shipped\n      - a shipped order" in text
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def test_prompt_profile_needs_the_extension(pg: Cluster, tmp_path, capsys):
    db = dataclasses.replace(Dataset(SMALL).database("library"), name=f"eval_noext_{os.getpid()}")
    questions = tmp_path / "questions.csv"
    questions.write_text(f"question,query,db_name,query_category\nq,SELECT 1;,{db.name},group_by\n")
    try:
        load_database(pg.conninfo(), db, extension=False, replace=True)
        assert main(["run", "--questions", str(questions), "--dsn", pg.conninfo(), "--out", str(tmp_path / "x"),
                     "--predictions", "gold", "--prompt-profile", "sql-eval", "--no-progress"]) == 2
        assert "is the extension installed" in capsys.readouterr().err
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
