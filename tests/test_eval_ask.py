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

SMALL = Path(__file__).parent / "data" / "eval"


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
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["run", "demo", "overall"] and table[1].split()[:3] == ["tiny", "100.0", "100.0"]
