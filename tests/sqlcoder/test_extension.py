"""End to end: CREATE EXTENSION, sqlcoder.ask() through the real daemon, and the errors users meet."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

from helpers.paths import ROOT
from sqlcoder_dev import shop
from sqlcoder_dev.daemonproc import socket_dir
from sqlcoder_dev.pgcluster import Cluster

QUESTIONS = shop.sample_questions()


def _sharedir() -> Path:
    return Path(subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True, check=True).stdout.strip())


def _version() -> str:
    text = (ROOT / "sqlcoder.control").read_text()
    return text.split("default_version = '")[1].split("'")[0]


def test_package_installed_in_versioned_directory(pg: Cluster, new_db) -> None:
    """make install puts the package in a directory named by version, and _invoke imports exactly that one."""
    pkg = _sharedir() / "extension" / "sqlcoder_python" / _version() / "sqlcoder"
    assert (pkg / "__init__.py").read_text().count(f'__version__ = "{_version()}"') == 1
    db = new_db(sample=False)
    body = pg.psql("SELECT prosrc FROM pg_proc "
                   "WHERE oid = 'sqlcoder_internal._invoke_python(text, jsonb, text)'::regprocedure", dbname=db)
    assert f'"{pkg.parent}"' in body
    assert "current_setting" not in body  # no GUC decides where the code comes from


def test_old_version_functions_refuse_a_newer_package(pg: Cluster) -> None:
    pg.createdb("old_version")
    try:
        pg.psql("CREATE EXTENSION sqlcoder VERSION '0.1.0' CASCADE", dbname="old_version")
        with pg.connect("old_version") as conn, pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
            conn.execute("SELECT sqlcoder.prompt('how many?')")
        assert "0.1.0" in str(err.value) and _version() in str(err.value)
        assert "ALTER EXTENSION sqlcoder UPDATE" in err.value.diag.message_hint
    finally:
        pg.psql('DROP DATABASE "old_version" WITH (FORCE)')


def test_prompt_is_sqlcoder_70b_template(pg: Cluster, new_db) -> None:
    db = new_db()
    with pg.connect(db) as conn:
        prompt = conn.execute("SELECT sqlcoder.prompt('how many customers are there?')").fetchone()[0]
    assert prompt.startswith(
        "### Task\nGenerate a SQL query to answer [QUESTION]how many customers are there?[/QUESTION]\n\n"
        "### Instructions\n- If you cannot answer the question with the available database schema, "
        "return 'I do not know'\n\n### Database Schema\n"
        "The query will run on a database with the following schema:\n")
    assert prompt.endswith(
        "\n\n### Answer\nGiven the database schema, here is the SQL query that answers "
        "[QUESTION]how many customers are there?[/QUESTION]\n[SQL]\n")
    assert "CREATE TABLE customers (" in prompt
    assert "--ISO 3166-1 alpha-2 country code, e.g. DE" in prompt
    assert "orders.customer_id can be joined with customers.id" in prompt


@pytest.mark.parametrize("item", QUESTIONS, ids=[q["question"] for q in QUESTIONS])
def test_ask_answers_through_real_daemon(pg: Cluster, new_db, analyst_role, tiny_daemon, item) -> None:
    """A granted non-superuser asks; the trained tiny model answers via socket and daemon."""
    db = new_db(socket=tiny_daemon.socket_path)
    role = analyst_role(db)
    with pg.connect(db, user=role) as conn:
        sql = conn.execute("SELECT sqlcoder.ask(%s)", (item["question"],)).fetchone()[0]
        assert sql == item["sql"]
        conn.execute(sql)  # and it is valid SQL for the sample database


def test_status_reports_the_daemon(pg: Cluster, new_db, analyst_role, tiny_daemon) -> None:
    db = new_db(socket=tiny_daemon.socket_path)
    with pg.connect(db, user=analyst_role(db)) as conn:
        status = conn.execute("SELECT sqlcoder.status()").fetchone()[0]
    assert status["reachable"] is True
    daemon = status["daemon"]
    assert daemon["state"] == "ready"
    assert daemon["quantization"] == "none"
    assert daemon["device"] == "cpu"
    assert daemon["model"] == str(tiny_daemon.model_dir)
    assert daemon["requests"]["completed"] >= 0 and daemon["uptime_s"] >= 0


def test_role_without_grant_is_refused(pg: Cluster, new_db) -> None:
    db = new_db()
    pg.psql('DROP ROLE IF EXISTS "stranger"; CREATE ROLE "stranger" LOGIN')
    try:
        with pg.connect(db, user="stranger") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
    finally:
        pg.psql('DROP ROLE "stranger"')


def test_non_superuser_cannot_change_the_socket(pg: Cluster, new_db, analyst_role) -> None:
    db = new_db()
    with pg.connect(db, user=analyst_role(db)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE sqlcoder.config SET value = '/tmp/evil.sock' WHERE key = 'socket_path'")


def test_socket_without_permission(pg: Cluster, new_db) -> None:
    """A socket the postgres OS user may not open: SQLSTATE 08004 and a hint about --socket-group."""
    path = socket_dir() / "private.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    os.chmod(path, 0o600)  # root only
    db = new_db(socket=str(path))
    try:
        with pg.connect(db) as conn, pytest.raises(psycopg.Error) as err:
            conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
        assert err.value.sqlstate == "08004"
        assert "permission denied" in str(err.value)
        assert "--socket-group" in err.value.diag.message_hint
    finally:
        server.close()


def test_daemon_not_running(pg: Cluster, new_db) -> None:
    db = new_db(socket="/nonexistent/sqlcoder.sock")
    with pg.connect(db) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
        assert err.value.sqlstate == "08001"
        assert "sqlcoder-daemon" in err.value.diag.message_hint
        assert "Traceback" not in (err.value.diag.context or "")
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session is still usable


@pytest.mark.parametrize("version", ["0.1.0", _version()])
def test_functions_planted_in_the_creation_path_are_not_bound(pg: Cluster, version: str) -> None:
    """A role that could create in public before CREATE EXTENSION plants better-matching functions;
    nothing of the extension binds to them (every reference in the scripts is schema-qualified)."""
    pg.createdb("planted")
    try:
        pg.psql("""
            CREATE FUNCTION public.jsonb_build_object(text, text, text, text, text, name[]) RETURNS jsonb
              LANGUAGE sql AS $$ SELECT '{"question": "planted"}'::jsonb $$;
            CREATE FUNCTION public.current_schemas(boolean) RETURNS name[]
              LANGUAGE sql AS $$ SELECT ARRAY['planted']::name[] $$;
            """ + f"CREATE EXTENSION sqlcoder VERSION '{version}' CASCADE;", dbname="planted")
        bound = pg.psql("""
            SELECT DISTINCT d.objid::regprocedure || ' -> ' || d.refobjid::regprocedure
            FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid AND d.refclassid = 'pg_proc'::regclass
            WHERE d.classid = 'pg_proc'::regclass AND p.pronamespace = 'public'::regnamespace""", dbname="planted")
        assert bound.strip() == ""
        if version == _version():
            # A table to show: with none visible, prompt is an error before anything is rendered.
            pg.psql("CREATE TABLE public.orders (id int)", dbname="planted")
            assert "planted" not in pg.psql("SELECT sqlcoder.prompt('how many?')", dbname="planted")
    finally:
        pg.psql('DROP DATABASE "planted" WITH (FORCE)')
