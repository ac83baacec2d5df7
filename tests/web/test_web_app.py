"""sqlcoder-web without a browser: the app in-process (Starlette's test client) on its own cluster,
its results, settings and sessions. tests/web/test_web.py drives it in a real browser."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from decimal import Decimal

import pytest

from helpers.paths import ROOT
from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_web import auth, results
from sqlcoder_web.sessions import SessionStore
from sqlcoder_web.settings import parse_args


def test_login_to_a_lost_database_says_so() -> None:
    store = SessionStore(60, 60, 4)
    with pytest.raises(auth.LoginFailed, match="cannot be reached"):
        asyncio.run(auth.login(store, auth.login_throttle(), "host=/nonexistent port=1 dbname=x", "someone", "pw", 2,
                               "127.0.0.1"))
    assert len(store) == 0


def test_binds_to_localhost_by_default_and_every_flag_and_login_message_is_documented() -> None:
    import dataclasses

    from sqlcoder_web.settings import WebSettings

    assert parse_args(["--conninfo", "dbname=x"]).host == "127.0.0.1"
    doc = (ROOT / "docs" / "web.md").read_text()
    for f in dataclasses.fields(WebSettings):
        assert f"| `--{f.name.replace('_', '-')}` |" in doc, f.name
    for message in (auth.LOGIN_FAILED, auth.NO_PASSWORD_ASKED.split(",")[0], "The database cannot be reached"):
        assert " ".join(message.split()) in " ".join(doc.split()), message


def test_chart_choice_and_csv_defuses_formulas() -> None:
    rows = [[("day", "2026-01-02"), ("n", 3)], [("day", "2026-01-01"), ("n", Decimal("1.5"))]]
    r = results.build(rows, [], 10)
    assert r.kinds == ["time", "number"] and r.chart["type"] == "line"
    assert r.chart["labels"] == ["2026-01-01", "2026-01-02"] and r.chart["series"][0]["data"] == [1.5, 3.0]
    r = results.build([[("name", "=HYPERLINK(\"x\")"), ("n", -1)]], [], 10)
    assert r.chart["type"] == "bar"
    assert results.to_csv(r).splitlines() == ["name,n", '"\'=HYPERLINK(""x"")",-1']  # numbers keep their sign
    assert results.build([[("a", True), ("b", None)]], [], 10).chart is None  # nothing to draw
    r = results.build([[("k", "x"), ("v", float("nan"))], [("k", "y"), ("v", Decimal("Infinity"))]], [], 10)
    assert r.chart["series"][0]["data"] == [None, None]  # JSON has no NaN: gaps, not a broken chart


def test_single_user_mode_names_a_lost_database_and_recovers() -> None:
    """Its own cluster (the shared one must not stop): a token link opens the page, no password form;
    with the server stopped the page says the database is unreachable, and works again once it is back."""
    from starlette.testclient import TestClient

    from sqlcoder_web.app import create_app

    with Cluster() as solo:
        solo.psql("CREATE EXTENSION sqlcoder CASCADE")
        solo.psql("CREATE ROLE solo LOGIN")
        solo.psql("SELECT sqlcoder.grant_access('solo')")
        # the guard's function policy refuses pg_sleep unless the DBA allows it; the test needs a slow query
        solo.psql("SELECT sqlcoder.allow_function('pg_catalog.pg_sleep(double precision)')")
        settings = parse_args(["--single-user", "--connect-timeout-s", "1", "--conninfo",
                               f"host={solo.sockdir} port={solo.port} dbname=postgres user=solo"])
        app = create_app(settings)
        with TestClient(app, base_url="http://127.0.0.1:8765", follow_redirects=False) as client:
            assert "printed when it started" in client.get("/login").text
            assert client.get("/login?token=wrong").status_code == 200 and client.get("/").status_code == 303
            assert client.get(f"/login?token={app.state.single_user_link.token}").status_code == 303
            index = client.get("/").text
            assert "signed in as <strong id=\"who\">solo</strong>" in index and "role-note" not in index
            csrf = re.search(r'name="csrf" value="([^"]+)"', index).group(1)

            def run_one() -> str:
                return client.post("/run", data={"csrf": csrf, "sql": "SELECT 41 + 1 AS answer"}).text

            assert "<td class=\"number\">42</td>" in run_one()
            # Two long requests hold both of the session's connections: a third is told so (not "unreachable").
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                slow = [pool.submit(client.post, "/run", data={"csrf": csrf, "sql": "SELECT pg_sleep(2.5) AS slept"})
                        for _ in range(2)]
                time.sleep(0.5)
                assert "Your other questions are still running" in client.get("/").text
                assert all("slept" in f.result().text for f in slow)
            assert "<td class=\"number\">42</td>" in run_one()  # the same pool, not renewed
            solo.psql("SELECT sqlcoder.revoke_access('solo')")
            client.get(f"/login?token={app.state.single_user_link.token}")
            assert "may not use sqlcoder yet" in client.get("/").text  # told, before asking anything
            solo.psql("SELECT sqlcoder.grant_access('solo')")
            client.get(f"/login?token={app.state.single_user_link.token}")
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
            solo.psql("CHECKPOINT")  # the cluster runs without synchronous commit and stops immediately
            solo.stop(remove=False)
            assert "The database cannot be reached" in run_one()
            solo.start()
            assert "<td class=\"number\">42</td>" in run_one()


def test_sessions_expire_when_idle_or_old_and_take_their_pool_with_them() -> None:
    from sqlcoder_web.sessions import Session, make_pool

    async def scenario() -> None:
        store = SessionStore(idle_s=60, max_age_s=3600, max_sessions=2)
        idle = Session(role="a", pool=make_pool("dbname=x", 1, password="pw"))
        old = Session(role="b", pool=make_pool("dbname=x", 1, password="pw"))
        await idle.pool.open(wait=False)
        await old.pool.open(wait=False)
        k1, k2 = await store.add(idle), await store.add(old)
        assert store.full() and await store.get(k1) is idle and k1 != k2
        idle.last_seen -= 61
        old.created -= 3601
        assert await store.get(k1) is None and idle.pool.closed  # the password goes with the pool
        assert await store.reap() == 1 and old.pool.closed and len(store) == 0

    asyncio.run(scenario())


def test_charts_skip_key_columns_and_take_their_labels_from_the_question() -> None:
    rows = [[("id", 1), ("customer_id", 7), ("name", "a"), ("total_amount", 3)],
            [("id", 2), ("customer_id", 8), ("name", "b"), ("total_amount", 5)]]
    chart = results.build(rows, [], 100, "  which   customers spent most? ").chart
    assert chart is not None and chart["type"] == "bar"
    assert [s["label"] for s in chart["series"]] == ["Total amount"]  # no id, no customer_id
    assert (chart["title"], chart["x"], chart["y"]) == ("which customers spent most?", "Name", "Total amount")
    only_keys = [[("sku", "x1"), ("order_id", 4)], [("sku", "x2"), ("order_id", 5)]]
    assert results.build(only_keys, [], 100).chart is None  # nothing to plot but keys
    for name in ("id", "order_id", "customerId", "sku", "zip", "order_no"):
        assert results.is_key(name), name
    for name in ("price", "orders", "video", "idle", "kind", "width"):
        assert not results.is_key(name), name


def test_problems_in_plain_words_and_the_status_in_one_sentence() -> None:
    from sqlcoder_web import db
    for state in ("42501", "54000", "57014", "42P01", "25006", None):
        for kind in ("query", "daemon", "database", "busy"):
            if kind == "query" and state is None:
                continue  # the page's own words (below)
            words = db.plain_words(db.Problem(kind, "sqlcoder.prompt(question) SIGSTOP systemctl", sqlstate=state))
            for jargon in ("SQLSTATE", "SIGSTOP", "systemctl", "search_path", "sqlcoder.", "daemon"):
                assert jargon not in words, (kind, state, words)
    assert db.plain_words(db.Problem("query", "Ask a question of 1 to 4000 characters.")) == \
        "Ask a question of 1 to 4000 characters."  # the page's own words stay
    up = {"reachable": True, "socket_path": "/run/x.sock", "daemon": {"model": "m", "requests": {"queued": 2}}}
    assert db.status_summary(up) == "The assistant that writes SQL is up, 2 questions waiting."
    down = db.status_summary({"reachable": False, "socket_path": "/run/x.sock", "error": "uid 999"})
    assert "/" not in down and "uid" not in down


def test_feedback_compares_the_sql_on_screen_with_the_models() -> None:
    from sqlcoder_web.app import same_sql
    assert same_sql("SELECT a\n  FROM t;", "SELECT a FROM t")
    assert not same_sql("SELECT a FROM t LIMIT 3", "SELECT a FROM t")
