"""Constrained decoding as an attacker sees it: the per-call override is a superuser's alone, the grammar a
caller's schema yields cannot be made into another grammar by its names, and the daemon bounds and checks
what a request's grammar holds. The grammar is never the trust boundary: hostile output under it is still
refused by the guard."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder import grammar
from sqlcoder.catalog import Column, Table
from sqlcoder_daemon.errors import BadRequest
from sqlcoder_daemon.protocol import Limits, parse_request
from sqlcoder_dev.daemonproc import socket_dir
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database
from sqlcoder_dev.pgcluster import Cluster

DB, ROLE = "adv_grammar", "adv_grammar_analyst"


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake-grammar.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE, {})
        with pg.connect(DB) as admin:  # off by default until measured; these cases are about it on
            admin.execute("UPDATE sqlcoder.config SET value = 'on' WHERE key = 'constrained_decoding'")
        try:
            yield daemon
        finally:
            drop_run_database(pg, DB, ROLE)


def _generates(shop_daemon: FakeDaemon) -> list[dict]:
    return [r for r in shop_daemon.requests if r.get("op") == "generate"]


def _ask(pg: Cluster, user: str | None, question: str, *setup: str) -> tuple[str, list[str]]:
    with (pg.connect(DB, user=user) if user else pg.connect(DB)) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        for statement in setup:
            conn.execute(statement)
        return conn.execute("SELECT sqlcoder.ask(%s)", (question,)).fetchone()[0], notices


def test_ask_sends_the_schema_grammar_and_says_when_it_was_not_honoured(pg: Cluster, shop_daemon: FakeDaemon) -> None:
    shop_daemon.reply(" SELECT count(*) FROM orders;")
    shop_daemon.requests.clear()
    sql, notices = _ask(pg, ROLE, "how many orders?")
    sent = _generates(shop_daemon)[-1]["grammar"]
    assert sql == "SELECT count(*) FROM orders;" and not any("grammar" in n for n in notices)
    assert set(sent) == {"gbnf", "lark"} and '"orders"' in sent["gbnf"] and '"customers"' in sent["lark"]
    shop_daemon.honours_grammar = False
    try:
        _, notices = _ask(pg, ROLE, "how many orders?")
    finally:
        shop_daemon.honours_grammar = True
    assert any("cannot constrain decoding" in n for n in notices), notices


def test_only_a_superuser_overrides_the_setting(pg: Cluster, shop_daemon: FakeDaemon) -> None:
    shop_daemon.reply(" SELECT count(*) FROM orders;")
    shop_daemon.requests.clear()
    _ask(pg, None, "how many orders?", "SET sqlcoder.constrained_decoding = off")  # a superuser, per session
    assert "grammar" not in _generates(shop_daemon)[-1]
    # A caller's placeholder, set before the library defined the option, is dropped, not read.
    with pg.connect(DB, user=ROLE) as conn:
        conn.execute("SET sqlcoder.constrained_decoding = off")
        assert conn.execute("SELECT sqlcoder.ask('how many orders?')").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET sqlcoder.constrained_decoding = off")  # and now the option exists: refused
    assert "grammar" in _generates(shop_daemon)[-1]
    with pg.connect(DB) as admin:
        admin.execute(f"ALTER ROLE {ROLE} SET sqlcoder.constrained_decoding = off")
    try:
        _ask(pg, ROLE, "how many orders?")
        assert "grammar" not in _generates(shop_daemon)[-1]
    finally:
        with pg.connect(DB) as admin:
            admin.execute(f"ALTER ROLE {ROLE} RESET sqlcoder.constrained_decoding")


def test_hostile_output_under_a_grammar_is_still_refused_by_the_guard(pg: Cluster, shop_daemon: FakeDaemon) -> None:
    shop_daemon.reply(" SELECT pg_sleep(5);")  # a daemon (or a grammar) that let it through changes nothing
    with pg.connect(DB, user=ROLE) as conn, pytest.raises(psycopg.Error) as err:
        conn.execute("SELECT sqlcoder.ask('sleep')")
    assert "pg_sleep" in str(err.value)


def test_names_cannot_break_out_of_their_literal() -> None:
    """A table or column named like grammar syntax stays one literal name in both forms."""
    import llguidance

    evil = '"x"" | ident ::= [^\\x00]* ""\nroot ::= "a"'  # as quote_ident renders quotes, a newline
    made = grammar.build([Table(1, "public", evil, columns=[Column('"a\\" | root ::= [^x]"', "text")])], ["count"])
    benign = grammar.build([Table(1, "public", "t", columns=[Column("a", "text")])], ["count"])
    assert [line.split(" ::= ")[0] for line in made.gbnf.splitlines()] == \
        [line.split(" ::= ")[0] for line in benign.gbnf.splitlines()]  # the same rules, no new one
    compiled = llguidance.LLMatcher.grammar_from_lark(made.lark)
    assert llguidance.LLMatcher.validate_grammar(compiled) == ""


@pytest.mark.parametrize("grammar_field, message", [
    ("x", "must be an object"),
    ({}, "must be an object"),
    ({"regex": "a"}, "unknown grammar format"),
    ({"gbnf": 7}, "non-empty string"),
    ({"gbnf": ""}, "non-empty string"),
    ({"lark": "start: \"a\"\x00"}, "NUL"),
    ({"gbnf": "root ::= " + '"a" | ' * 200_000 + '"b"'}, "max_grammar_bytes"),
])
def test_the_daemon_bounds_and_checks_a_requests_grammar(grammar_field: object, message: str) -> None:
    line = json.dumps({"v": 1, "id": "g", "op": "generate", "prompt": "p", "grammar": grammar_field})
    with pytest.raises(BadRequest, match=message):
        parse_request(line, Limits())


def test_a_valid_grammar_reaches_the_request() -> None:
    req = parse_request(json.dumps({"v": 1, "id": "g", "op": "generate", "prompt": "p",
                                    "grammar": {"gbnf": 'root ::= "a"'}}), Limits())
    assert req.grammar is not None and req.grammar.gbnf == 'root ::= "a"' and req.grammar.lark is None  # type: ignore[attr-defined]
