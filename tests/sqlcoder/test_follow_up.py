"""Follow-up questions through the real extension (stand-in daemon): what the model sees, whose history."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"follow_{os.getpid()}"
ROLE = f"follow_analyst_{os.getpid()}"
OTHER = f"follow_other_{os.getpid()}"
FIRST = " SELECT c.name, count(o.id) AS orders FROM customers c JOIN orders o ON o.customer_id = c.id " \
        "GROUP BY c.name ORDER BY orders DESC;\n[/SQL]"
SECOND = " SELECT c.name, count(o.id) AS orders FROM customers c JOIN orders o ON o.customer_id = c.id " \
         "GROUP BY c.name ORDER BY orders DESC LIMIT 3;\n[/SQL]"


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "follow.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE)
        pg.psql(f'DO $$BEGIN CREATE ROLE "{OTHER}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
        with pg.connect(DB) as conn:
            conn.execute(f'GRANT USAGE ON SCHEMA public TO "{OTHER}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{OTHER}"')
            conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (OTHER,))
        yield daemon
        drop_run_database(pg, DB, ROLE)
        pg.psql(f'DROP ROLE IF EXISTS "{OTHER}"', check=False)


@pytest.fixture
def analyst_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    shop_daemon.reply(FIRST)
    with pg.connect(DB, user=ROLE) as conn:
        conn.autocommit = True
        yield conn


@pytest.fixture
def other(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB, user=OTHER) as conn:
        conn.autocommit = True
        yield conn


@pytest.fixture
def admin_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB) as conn:
        conn.autocommit = True
        yield conn


def last_prompt(shop_daemon: FakeDaemon) -> str:
    return [r for r in shop_daemon.requests if r.get("op") == "generate"][-1]["prompt"]


def latest_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT max(id) FROM sqlcoder.history WHERE role = current_user").fetchone()[0]


def test_a_follow_up_by_id_shows_the_earlier_question_and_sql_in_the_template(analyst_conn, shop_daemon) -> None:
    first = analyst_conn.execute("SELECT sqlcoder.ask('revenue per customer')").fetchone()[0]
    hid = latest_id(analyst_conn)
    shop_daemon.reply(SECOND)
    second = analyst_conn.execute("SELECT sqlcoder.ask('now only the top 3', follow_up => %s)", (hid,)).fetchone()[0]
    assert second.endswith("LIMIT 3;") and first != second
    sent = last_prompt(shop_daemon)
    assert ("### Previous question\nThis question follows up an earlier one, answered by the query below; change "
            "that query as this question asks:\n[QUESTION]revenue per customer[/QUESTION]\n[SQL]\n"
            f"{first}\n[/SQL]\n\n### Answer") in sent
    assert "Generate a SQL query to answer [QUESTION]now only the top 3[/QUESTION]" in sent
    # prompt() shows exactly what the follow-up sent.
    shown = analyst_conn.execute("SELECT sqlcoder.prompt('now only the top 3', follow_up => %s)", (hid,)).fetchone()[0]
    assert shown == sent


def test_follow_up_zero_refines_the_latest_question_of_this_session(analyst_conn, shop_daemon, pg) -> None:
    analyst_conn.execute("SELECT sqlcoder.ask('revenue per customer')")
    shop_daemon.reply(SECOND)
    analyst_conn.execute("SELECT sqlcoder.ask('now only the top 3', follow_up => 0)")
    assert "[QUESTION]revenue per customer[/QUESTION]" in last_prompt(shop_daemon)
    # The chain goes on from the latest: the top-3 question and its SQL.
    analyst_conn.execute("SELECT sqlcoder.ask('and their countries', follow_up => 0)")
    assert "[QUESTION]now only the top 3[/QUESTION]\n[SQL]\nSELECT c.name" in last_prompt(shop_daemon)
    assert "LIMIT 3;\n[/SQL]" in last_prompt(shop_daemon)
    # Another session of the same role has no latest question yet.
    with pg.connect(DB, user=ROLE) as fresh, pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        fresh.execute("SELECT sqlcoder.ask('and for 2023?', follow_up => 0)")
    assert "no earlier question of yours in this session" in info.value.diag.message_primary
    assert "follow_up => id" in info.value.diag.message_hint


def test_run_follows_up_too_and_is_remembered(analyst_conn, shop_daemon) -> None:
    shop_daemon.reply(" SELECT name FROM customers ORDER BY id;\n[/SQL]")
    assert len(analyst_conn.execute("SELECT * FROM sqlcoder.run('customer names')").fetchall()) > 3
    shop_daemon.reply(" SELECT name FROM customers ORDER BY id LIMIT 3;\n[/SQL]")
    rows = analyst_conn.execute("SELECT * FROM sqlcoder.run('only three', follow_up => 0)").fetchall()
    assert len(rows) == 3
    earlier = "[QUESTION]customer names[/QUESTION]\n[SQL]\nSELECT name FROM customers ORDER BY id;"
    assert earlier in last_prompt(shop_daemon)
    typed = analyst_conn.execute("SELECT * FROM sqlcoder.run_typed('only three', NULL, NULL, %s) AS r(name text)",
                            (latest_id(analyst_conn),)).fetchall()
    assert len(typed) == 3


def test_another_roles_history_cannot_be_followed_even_by_a_superuser(analyst_conn, other, admin_conn,
                                                                      shop_daemon) -> None:
    analyst_conn.execute("SELECT sqlcoder.ask('revenue per customer')")
    hid = latest_id(analyst_conn)
    for conn in (other, admin_conn):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            conn.execute("SELECT sqlcoder.prompt('top 3', follow_up => %s)", (hid,))
        assert info.value.diag.message_primary == f"no sqlcoder.history entry {hid} of yours"
    # A forged id gets the very same answer: nothing tells it from another role's.
    for forged in (hid + 10_000_000, -5, 9223372036854775807):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            other.execute("SELECT sqlcoder.prompt('top 3', follow_up => %s)", (forged,))
        assert info.value.diag.message_primary == f"no sqlcoder.history entry {forged} of yours"
    with pytest.raises(psycopg.errors.InvalidParameterValue):  # a row of one's own without SQL
        analyst_conn.execute("SELECT sqlcoder.ask('')")
    no_sql = latest_id(analyst_conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        analyst_conn.execute("SELECT sqlcoder.prompt('top 3', follow_up => %s)", (no_sql,))
    assert "has no SQL to refine" in info.value.diag.message_primary


def test_a_huge_earlier_sql_is_cut_with_a_notice(analyst_conn, shop_daemon) -> None:
    huge = "SELECT name FROM customers WHERE " + " OR ".join(f"id = {i}" for i in range(20_000))
    analyst_conn.execute("SELECT count(*) FROM sqlcoder.execute(%s)", (huge,))
    hid = latest_id(analyst_conn)
    notices: list[str] = []
    analyst_conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    text = analyst_conn.execute("SELECT sqlcoder.prompt('only the first', follow_up => %s)", (hid,)).fetchone()[0]
    earlier = text.split("[SQL]\n")[1].split("\n[/SQL]")[0]
    assert len(earlier) <= 4001 and earlier.startswith("SELECT name FROM customers WHERE id = 0 OR")
    assert any(f"the SQL of history entry {hid}" in n for n in notices)
    assert "[QUESTION]" not in text.split("### Previous question")[1].split("[SQL]")[0]  # execute has no question


def test_a_follow_up_keeps_the_tables_of_the_earlier_question_when_pruning(analyst_conn, admin_conn,
                                                                           shop_daemon) -> None:
    """'only the top 3' names no table: relevance comes from the earlier question and SQL too."""
    shop_daemon.reply(" SELECT name, price FROM products ORDER BY price DESC;\n[/SQL]")
    analyst_conn.execute("SELECT sqlcoder.ask('most expensive articles')")
    full = analyst_conn.execute("SELECT sqlcoder.prompt('only the top 3', follow_up => 0)").fetchone()[0]
    schema = full.split("### Database Schema")[1].split("### Previous question")[0]
    # The stand-in daemon counts a token per 4 characters: room for all but about a third of the schema.
    admin_conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'context_budget_tokens'",
                  (str(len(full) // 4 - len(schema) // 12),))
    try:
        text = analyst_conn.execute("SELECT sqlcoder.prompt('only the top 3', follow_up => 0)").fetchone()[0]
        alone = analyst_conn.execute("SELECT sqlcoder.prompt('only the top 3')").fetchone()[0]
    finally:
        admin_conn.execute("DELETE FROM sqlcoder.config WHERE key = 'context_budget_tokens'")
    kept = text.split("### Database Schema")[1].split("### Previous question")[0]
    assert 0 < kept.count("CREATE TABLE") < schema.count("CREATE TABLE")
    assert "CREATE TABLE products" in kept
    assert "CREATE TABLE products" not in alone  # without the earlier question, nothing says products


def test_other_templates_show_the_earlier_sql_in_a_sql_fence(analyst_conn, admin_conn, shop_daemon) -> None:
    analyst_conn.execute("SELECT sqlcoder.ask('revenue per customer')")
    admin_conn.execute("UPDATE sqlcoder.config SET value = 'llama-3-sqlcoder-8b' WHERE key = 'template'")
    try:
        text = analyst_conn.execute("SELECT sqlcoder.prompt('only the top 3', follow_up => 0)").fetchone()[0]
    finally:
        admin_conn.execute("DELETE FROM sqlcoder.config WHERE key = 'template'")
    assert "Earlier question: `revenue per customer`\n```sql\nSELECT c.name" in text
    assert text.index("Earlier question") < text.index("<|eot_id|>")
