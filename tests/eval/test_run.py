"""``load`` and ``run`` on a private cluster holding the suite's small data (no extension needed):
gold and perturbed predictions, a stand-in ``sqlcoder.ask``, safety limits, resume and parallelism."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_eval.dataset import Dataset, Question
from sqlcoder_eval.hints import insert_glossary, insert_join_hints
from sqlcoder_eval.load import load_database
from sqlcoder_eval.predictors import AskPredictor, GoldPredictor, PerturbedPredictor
from sqlcoder_eval.report import summarize
from sqlcoder_eval.runner import RunOptions, read_records, run

SMALL = Path(__file__).parent / "data"

# A stand-in for the extension's ask(): answers from a table, logs every call.
FAKE_ASK = """
CREATE SCHEMA sqlcoder;
CREATE TABLE sqlcoder.fake_answers (question text PRIMARY KEY, sql text);
CREATE TABLE sqlcoder.fake_calls (question text, instructions text);
CREATE FUNCTION sqlcoder.ask(question text {second}) RETURNS text LANGUAGE plpgsql AS $$
DECLARE answer text;
BEGIN
  INSERT INTO sqlcoder.fake_calls VALUES (question, {instructions});
  SELECT a.sql INTO answer FROM sqlcoder.fake_answers a WHERE a.question = ask.question;
  IF answer IS NULL THEN RAISE EXCEPTION 'no answer for %', question; END IF;
  RETURN answer;
END $$;
"""


@pytest.fixture(scope="module")
def evalpg() -> Iterator[tuple[Cluster, dict[str, list[str]]]]:
    """A cluster with the small databases loaded without the extension, and the load notes."""
    with Cluster() as cluster:
        notes = {db.name: load_database(cluster.conninfo(), db, extension=False).notes
                 for db in Dataset(SMALL).databases()}
        yield cluster, notes


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return Dataset(SMALL).questions()


def copy_db(pg: Cluster, source: str, name: str) -> str:
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    return name


def opts(pg: Cluster, **kw) -> RunOptions:
    return RunOptions(conninfo=pg.conninfo(), progress=False, **kw)


def test_load_describes_columns_and_says_what_it_skipped(evalpg):
    pg, notes = evalpg
    assert pg.psql("SELECT col_description('customers'::regclass, 3)", dbname="shop").strip() == \
        "City the customer lives in, as typed at signup"
    assert pg.psql("SELECT count(*) FROM books", dbname="library").strip() == "7"
    assert "comments: 15 of 15 described" in notes["shop"]
    assert any("--no-extension" in n for n in notes["shop"])


def test_hints_are_skipped_with_a_reason_without_the_extension(evalpg):
    pg, _ = evalpg
    with pg.connect("shop") as conn:
        assert "does not exist" in insert_join_hints(conn, [("customers.customer_id", "orders.customer_id")])[0]
        assert "does not exist" in insert_glossary(conn, "a rule")
        assert insert_join_hints(conn, []) == ("join hints: none in the metadata", [])
        assert insert_glossary(conn, "\n \n") == "glossary: empty"


def test_load_refuses_an_existing_database_unless_replacing(evalpg):
    pg, _ = evalpg
    db = dataclasses.replace(Dataset(SMALL).database("library"), name="library_again")
    load_database(pg.conninfo(), db, extension=False)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        load_database(pg.conninfo(), db, extension=False)
    load_database(pg.conninfo(), db, extension=False, replace=True)
    assert pg.psql("SELECT count(*) FROM loans", dbname="library_again").strip() == "7"


def test_gold_predictions_score_everything_right(evalpg, questions, tmp_path):
    pg, _ = evalpg
    records = run(questions, GoldPredictor(), tmp_path / "gold.jsonl", opts(pg, run_name="gold"))
    assert [r["id"] for r in records] == list(range(len(questions)))
    assert all(r["correct"] and r["exact"] and r["error"] is None for r in records)
    assert len(read_records(tmp_path / "gold.jsonl")) == len(questions)


def test_perturbed_predictions_score_everything_wrong(evalpg, questions, tmp_path):
    pg, _ = evalpg
    records = run(questions, PerturbedPredictor(), tmp_path / "p.jsonl", opts(pg, run_name="perturbed"))
    counted = [r for r in records if not r["skipped"]]
    assert counted and not any(r["correct"] for r in counted)
    assert all(r["error"] is None and r["generated"] != r["gold"] for r in counted)
    # The question that nothing can break is listed apart, not counted.
    assert [r["id"] for r in records if r["skipped"]] == [18]
    kinds = {r["note"].split(":")[0] for r in counted}
    assert {"drop_where", "change_limit", "swap_aggregate", "reorder_order_by"} <= kinds


def test_parallel_sessions_give_the_same_verdicts(evalpg, questions, tmp_path):
    pg, _ = evalpg
    one = run(questions, PerturbedPredictor(), tmp_path / "1.jsonl", opts(pg))
    four = run(questions, PerturbedPredictor(), tmp_path / "4.jsonl", opts(pg, parallel=4))
    strip = lambda rs: [(r["id"], r["generated"], r["correct"], r["skipped"]) for r in rs]
    assert strip(one) == strip(four)


@pytest.fixture(scope="module")
def fake_shop(evalpg) -> str:
    """A copy of shop with the two-argument stand-in ask() and its answers."""
    pg, _ = evalpg
    name = copy_db(pg, "shop", "shop_fake_ask")
    with pg.connect(name) as conn:
        conn.execute(FAKE_ASK.format(second=", instructions text DEFAULT NULL", instructions="instructions"))
    return name


def shop_questions(questions: list[Question], dbname: str) -> list[Question]:
    return [dataclasses.replace(q, db_name=dbname) for q in questions if q.db_name == "shop"]


def set_answers(pg: Cluster, dbname: str, answers: dict[str, str]) -> None:
    with pg.connect(dbname) as conn:
        conn.execute("TRUNCATE sqlcoder.fake_answers, sqlcoder.fake_calls")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO sqlcoder.fake_answers VALUES (%s, %s)", list(answers.items()))


def test_ask_predictions_are_executed_and_judged(evalpg, questions, fake_shop, tmp_path):
    pg, _ = evalpg
    qs = shop_questions(questions, fake_shop)
    by_text = {q.question: q for q in qs}
    march = by_text["How many orders were placed in March 2024?"]
    paris = by_text["Which customers live in Paris?"]
    products = by_text["List the products from the most to the least expensive."]
    revenue = by_text["What is the revenue of each order that was not cancelled?"]
    answers = {q.question: "SELECT 1 AS wrong" for q in qs}
    answers.update({
        march.question: "SELECT count(*) FROM orders WHERE order_date BETWEEN '2024-03-01' AND '2024-03-31';",
        paris.question: "SELECT customer_id, name, city FROM customers WHERE lower(city) = 'paris'",
        products.question: "DELETE FROM products RETURNING name, price",
        revenue.question: "SELECT pg_sleep(2)",
        by_text["Which customers signed up first? Order them by signup date."].question:
            "COMMIT; DELETE FROM customers RETURNING name",
        # sql-eval's harness runs every statement of an answer: here, each in the read-only transaction.
        by_text["Which 2 product categories sold the most units, and how many?"].question:
            "SELECT 1; DELETE FROM orders RETURNING order_id",
    })
    del answers[by_text["What is the ratio of delivered orders to all orders?"].question]
    set_answers(pg, fake_shop, answers)
    orders_before = pg.psql("SELECT count(*) FROM orders", dbname=fake_shop).strip()

    records = {r["id"]: r for r in run(qs, AskPredictor(), tmp_path / "ask.jsonl",
                                       opts(pg, timeout_s=0.2, judges=("sql-eval", "strict")))}
    assert records[march.id]["correct"] and records[march.id]["exact"]
    assert records[paris.id]["correct"] and not records[paris.id]["exact"]  # extra columns: the subset rule
    assert "read-only transaction" in records[products.id]["error"]
    assert pg.psql("SELECT count(*) FROM products", dbname=fake_shop).strip() == "6"
    assert records[revenue.id]["error"].startswith("timeout")
    signup = records[by_text["Which customers signed up first? Order them by signup date."].id]
    assert signup["judge"] == "sql-eval" and signup["error"] == "transaction control (COMMIT) is not run"
    assert signup["verdicts"]["strict"]["error"] == "2 statements; only one query is judged"
    units = records[by_text["Which 2 product categories sold the most units, and how many?"].id]
    assert "read-only transaction" in units["error"]
    assert pg.psql("SELECT count(*) FROM orders", dbname=fake_shop).strip() == orders_before
    assert pg.psql("SELECT count(*) FROM customers", dbname=fake_shop).strip() == "6"
    ratio = records[by_text["What is the ratio of delivered orders to all orders?"].id]
    assert ratio["error"].startswith("ask failed") and "no answer for" in ratio["error"]
    assert all(r["latency_ms"] is not None and r["latency_ms"] >= 0 for r in records.values())
    # The question's instructions reach ask()'s second argument.
    with pg.connect(fake_shop) as conn:
        calls = dict(conn.execute("SELECT question, instructions FROM sqlcoder.fake_calls").fetchall())
    assert calls[paris.question] == paris.instructions and calls[march.question] is None
    assert summarize(records.values())["run"].correct == 2


def test_resume_skips_questions_already_judged(evalpg, questions, fake_shop, tmp_path):
    pg, _ = evalpg
    qs = shop_questions(questions, fake_shop)
    set_answers(pg, fake_shop, {q.question: q.gold.split(";")[0].replace("{", "").replace("}", "") for q in qs})
    out = tmp_path / "resume.jsonl"
    first = run(qs[:3], AskPredictor(), out, opts(pg, run_name="r"))
    assert len(first) == 3
    everything = run(qs, AskPredictor(), out, opts(pg, run_name="r", resume=True))
    assert [r["id"] for r in everything] == sorted(q.id for q in qs)
    asked = pg.psql("SELECT question FROM sqlcoder.fake_calls", dbname=fake_shop).strip().splitlines()
    assert sorted(asked) == sorted(q.question for q in qs)  # each question asked once
    assert len(read_records(out)) == len(qs)


def test_one_argument_ask_gets_the_question_alone(evalpg, questions, tmp_path):
    pg, _ = evalpg
    name = copy_db(pg, "shop", "shop_fake_ask_one_arg")
    with pg.connect(name) as conn:
        conn.execute(FAKE_ASK.format(second="", instructions="NULL"))
    qs = [q for q in shop_questions(questions, name) if q.instructions]
    set_answers(pg, name, {q.question: "SELECT 1" for q in qs})
    records = run(qs, AskPredictor(), tmp_path / "one.jsonl", opts(pg))
    assert records and all(r["note"].startswith("instructions not passed") and r["error"] is None for r in records)


def test_load_command_loads_the_named_databases(evalpg, capsys):
    pg, _ = evalpg
    from sqlcoder_eval.cli import main

    assert main(["load", "--data", str(SMALL), "--dsn", pg.conninfo(), "--db", "library", "--no-extension",
                 "--replace"]) == 0
    assert capsys.readouterr().out.startswith("library: loaded; comments: 13 of 13 described")
    assert pg.psql("SELECT count(*) FROM authors", dbname="library").strip() == "4"


def test_a_bad_join_pair_is_reported_and_the_others_added(pg, new_db):
    """Metadata can name a column the dump lacks (geography's mountain.state_nem): report it, keep the rest."""
    db = new_db()
    with pg.connect(db) as conn:
        note, refused = insert_join_hints(conn, [("orders.customer_id", "customers.id"),
                                                 ("orders.customer_nem", "customers.id"),
                                                 ("order_items.product_id", "products.id")])
        assert note.startswith("join hints: 2 of 3 added; refused 1: orders.customer_nem = customers.id")
        assert refused == ["orders.customer_nem = customers.id (no column customer_nem in public.orders)"]
        assert conn.execute("SELECT count(*) FROM sqlcoder.join_hints").fetchone()[0] == 2


def test_metadata_names_resolve_as_postgresql_reads_them(evalpg):
    """retail's metadata names Customer (created unquoted: customer), sales.OrderHeader and
    hr.StaffMember (created quoted); its schemas go on the search_path; the one description the
    dump has no column for is named and counted."""
    from sqlcoder_eval.names import split_name

    pg, notes = evalpg
    assert notes["retail"][:2] == [
        'search_path: "$user", public, hr, sales',
        "comments: 16 of 17 described; not placed 1: sales.OrderHeader.Discount (no column Discount)"]
    assert pg.psql("SELECT col_description('sales.orderheader'::regclass, 6)", dbname="retail").strip() == \
        "Order total in euros"
    assert pg.psql("""SELECT col_description('hr."StaffMember"'::regclass, 2)""", dbname="retail").strip() == \
        "First and last name"
    assert pg.psql("SHOW search_path", dbname="retail").strip() == '"$user", public, hr, sales'
    assert split_name('a."B.c"."d""e"') == [("a", False), ("B.c", True), ('d"e', True)]


def test_glossary_keeps_nested_bullets_under_their_item():
    from sqlcoder_eval.hints import glossary_entries

    assert glossary_entries("- One rule.\n- Codes:\n  - N: new\n\t- S: shipped\n* Last\nplain line") == [
        "One rule.", "Codes:\n  - N: new\n    - S: shipped", "Last", "plain line"]


def test_run_reads_several_question_files_and_reports_each(evalpg, tmp_path, capsys):
    from sqlcoder_eval.cli import main

    pg, _ = evalpg
    basic = tmp_path / "instruct_basic_postgres.csv"
    basic.write_text("db_name,query_category,question,query\n"
                     "shop,basic_group,How many customers?,SELECT COUNT(*) FROM customers;\n"
                     "broker,basic_group,How many tickers?,SELECT COUNT(*) FROM sbTicker;\n")
    advanced = tmp_path / "instruct_advanced_postgres.csv"
    advanced.write_text("db_name,query_category,question,instructions,query,full_instructions\n"
                        "library,keywords_ratio,How many books?,Count rows.,SELECT COUNT(*) FROM books;,x\n")
    out = tmp_path / "gold.jsonl"
    assert main(["run", "--data", str(SMALL), "--questions", str(basic), "--questions", str(advanced),
                 "--dsn", pg.conninfo(), "--out", str(out), "--predictions", "gold", "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "1 questions left out, their databases are not in" in cap.err and "broker" in cap.err
    assert "file instruct_basic_postgres.csv: 1 questions" in cap.out
    assert "file instruct_advanced_postgres.csv: 1 questions" in cap.out
    records = read_records(out)
    assert sorted((r["source"], r["id"], r["correct"]) for r in records) == [
        ("instruct_advanced_postgres.csv", 2, True), ("instruct_basic_postgres.csv", 0, True)]
    assert next(r for r in records if r["id"] == 2)["instructions"] == "Count rows."


def test_a_refused_answer_keeps_its_sql_and_the_model_text() -> None:
    """Records of refused answers are readable: the SQL from the guard's DETAIL, the text from 'model output:'."""
    from sqlcoder_eval.predictors import refused_answer

    assert refused_answer("SQL: SELECT nope FROM t") == ("SELECT nope FROM t", None)
    assert refused_answer("attempt 1: SQL: SELECT a\nattempt 1: error: x\nattempt 2: SQL: SELECT b") == \
        ("SELECT a", None)
    text = "SELECT a AND a AND a AND 'quote\\n"
    assert refused_answer(f"model output: {text!r}") == (None, text)
    assert refused_answer(None) == (None, None)
