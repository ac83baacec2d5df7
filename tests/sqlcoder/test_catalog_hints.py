"""What a DBA adds where the catalog is silent: join hints and instructions, and who may add them."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from sqlcoder_dev.pgcluster import Cluster


def prompt(conn: psycopg.Connection, question: str = "how many rows?", instructions: str | None = None) -> str:
    return conn.execute("SELECT sqlcoder.prompt(%s, %s)", (question, instructions)).fetchone()[0]


def test_join_hints_render_and_follow_their_tables(pg: Cluster, new_db) -> None:
    db = new_db(sample=False)
    with pg.connect(db) as conn:
        conn.execute("CREATE TABLE author (aid bigint, name text); CREATE TABLE writes (aid bigint, pid bigint, x int)")
        first = conn.execute("SELECT sqlcoder.add_join_hint('author', 'aid', 'writes', 'aid')").fetchone()[0]
        again = conn.execute("SELECT sqlcoder.add_join_hint('author'::regclass, 'aid', 'writes', 'aid')").fetchone()[0]
        assert first == again  # adding a hint twice is not an error
        conn.execute("SELECT sqlcoder.add_join_hint('writes', 'x', 'author', 'aid')")
        text = prompt(conn)
        assert "-- author.aid can be joined with writes.aid\n-- writes.x can be joined with author.aid" in text
        conn.execute("ALTER TABLE writes DROP COLUMN x")  # the sql_drop trigger removes its hint
        assert conn.execute("SELECT count(*) FROM sqlcoder.join_hints").fetchone()[0] == 1
        conn.execute("ALTER TABLE author RENAME TO authors")  # regclass follows the rename
        assert "-- authors.aid can be joined with writes.aid" in prompt(conn)
        conn.execute("SELECT sqlcoder.remove_join_hint(%s)", (first,))
        assert "can be joined" not in prompt(conn)
        conn.execute("SELECT sqlcoder.add_join_hint('authors', 'aid', 'writes', 'aid')")
        conn.execute("DROP TABLE writes")
        assert conn.execute("SELECT count(*) FROM sqlcoder.join_hints").fetchone()[0] == 0


def test_join_hint_errors(pg: Cluster, new_db) -> None:
    db = new_db()
    with pg.connect(db) as conn:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("SELECT sqlcoder.add_join_hint('orders', 'nope', 'customers', 'id')")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT sqlcoder.add_join_hint('missing', 'id', 'customers', 'id')")
        with pytest.raises(psycopg.errors.NullValueNotAllowed):
            conn.execute("SELECT sqlcoder.add_join_hint(NULL, 'id', 'customers', 'id')")
        with pytest.raises(psycopg.errors.WrongObjectType):
            conn.execute("SELECT sqlcoder.add_join_hint('customers_pkey', 'id', 'customers', 'id')")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT sqlcoder.remove_join_hint(424242)")


def test_only_owners_manage_join_hints(pg: Cluster, new_db, analyst_role) -> None:
    """Owning one table is not enough to add a hint; the policies hold for a direct INSERT too."""
    db = new_db()
    role = analyst_role(db)
    with pg.connect(db) as admin:
        admin.execute(f'CREATE TABLE mine (customer_id integer); ALTER TABLE mine OWNER TO "{role}"')
        admin_hint = admin.execute(
            "SELECT sqlcoder.add_join_hint('orders', 'id', 'order_items', 'order_id')").fetchone()[0]
    with pg.connect(db, user=role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            conn.execute("SELECT sqlcoder.add_join_hint('mine', 'customer_id', 'customers', 'id')")
        assert "must be owner of table" in str(err.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO sqlcoder.join_hints (left_table, left_column, right_table, right_column) "
                         "VALUES ('mine', 'customer_id', 'customers', 'id')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT sqlcoder.remove_join_hint(%s)", (admin_hint,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE sqlcoder.join_hints SET left_column = 'x'")
        own = conn.execute("SELECT sqlcoder.add_join_hint('mine', 'customer_id', 'mine', 'customer_id')").fetchone()[0]
        conn.execute("SELECT sqlcoder.remove_join_hint(%s)", (own,))


def test_instructions_in_the_prompt(pg: Cluster, new_db, analyst_role) -> None:
    """Global instructions, then those of schemas on the caller's path, then the caller's own."""
    db = new_db()
    role = analyst_role(db)
    with pg.connect(db) as admin:
        admin.execute(f'CREATE SCHEMA finance; ALTER SCHEMA finance OWNER TO "{role}"')
        admin.execute("SELECT sqlcoder.add_instruction('Revenue means sum of quantity * unit_price.')")
        admin.execute("SELECT sqlcoder.add_instruction('Ignore cancelled orders.', 'public')")
    with pg.connect(db, user=role) as conn:
        scoped = conn.execute(
            "SELECT sqlcoder.add_instruction('Fiscal years start in April.', 'finance')").fetchone()[0]
        expected = ("- If you cannot answer the question with the available database schema, return 'I do not know'\n"
                    "- Revenue means sum of quantity * unit_price.\n- Ignore cancelled orders.\n"
                    "- Answer in one query.\n\n### Database Schema")
        assert expected in prompt(conn, instructions="Answer in one query.")
        assert "Fiscal years" not in prompt(conn)
        conn.execute("SET search_path = finance, public")
        assert "- Ignore cancelled orders.\n- Fiscal years start in April.\n\n" in prompt(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            conn.execute("SELECT sqlcoder.add_instruction('Everything is free.')")
        assert "superuser" in str(err.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT sqlcoder.add_instruction('Everything is free.', 'public')")
        with pytest.raises(psycopg.errors.InvalidSchemaName):
            conn.execute("SELECT sqlcoder.add_instruction('x', 'no_such_schema')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT sqlcoder.add_instruction('   ', 'finance')")
        conn.execute("SELECT sqlcoder.remove_instruction(%s)", (scoped,))
        assert "Fiscal years" not in prompt(conn)
    with pg.connect(db) as admin:
        assert admin.execute("SELECT count(*) FROM sqlcoder.instructions").fetchone()[0] == 2


def test_instructions_of_a_dropped_schema_go_with_it(pg: Cluster, new_db) -> None:
    db = new_db(sample=False)
    with pg.connect(db) as conn:
        conn.execute("CREATE SCHEMA temp_rules")
        conn.execute("SELECT sqlcoder.add_instruction('For everyone.')")
        conn.execute("SELECT sqlcoder.add_instruction('Only for temp_rules.', 'temp_rules')")
        conn.execute("DROP SCHEMA temp_rules")
        assert conn.execute("SELECT instruction FROM sqlcoder.instructions").fetchall() == [("For everyone.",)]


def test_hints_and_instructions_are_dumped(pg: Cluster, new_db) -> None:
    """pg_extension_config_dump: a DBA's rows survive pg_dump (the table names are dumped qualified)."""
    db = new_db()
    with pg.connect(db) as conn:
        conn.execute("SELECT sqlcoder.add_join_hint('orders', 'id', 'order_items', 'order_id')")
        conn.execute("SELECT sqlcoder.add_instruction('Prices are in EUR.')")
    cmd = [str(pg.bindir / "pg_dump"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U", "postgres", "--data-only", db]
    if os.geteuid() == 0:  # as in pgcluster: the postgres OS user runs the server's tools
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    dump = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "COPY sqlcoder.join_hints" in dump and "public.orders\tid\tpublic.order_items\torder_id" in dump
    assert "Prices are in EUR." in dump


def test_roles_granted_under_0_1_0_keep_working_after_update(pg: Cluster) -> None:
    """ALTER EXTENSION UPDATE grants the new tables to roles granted before it."""
    db = "update_grants"
    pg.createdb(db)
    try:
        pg.psql("CREATE EXTENSION sqlcoder VERSION '0.1.0' CASCADE; CREATE TABLE notes (body text); "
                "DROP ROLE IF EXISTS old_analyst; CREATE ROLE old_analyst LOGIN; GRANT SELECT ON notes TO old_analyst; "
                "SELECT sqlcoder.grant_access('old_analyst')", dbname=db)
        pg.psql("ALTER EXTENSION sqlcoder UPDATE", dbname=db)
        with pg.connect(db, user="old_analyst") as conn:
            assert "CREATE TABLE notes (\n  body text\n);" in prompt(conn)
            # and the 0.2.0 functions: run/execute, and the history of its own calls
            assert conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1 AS one')").fetchone()[0] == {"one": 1}
            assert conn.execute("SELECT count(*) FROM sqlcoder.history").fetchone()[0] >= 1
    finally:
        pg.psql(f'DROP DATABASE "{db}" WITH (FORCE)')
        pg.psql("DROP ROLE IF EXISTS old_analyst")
