"""Fitting the schema into the model's context: relevance ranking, budget, and what prompt()/ask() send."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlcoder.catalog import Column, Join, Schema, Table
from sqlcoder.pruning import RelevanceIndex, select_tables, terms
from sqlcoder_dev.daemonproc import request, socket_dir
from sqlcoder_dev.pgcluster import Cluster

# -- ranking, without a server ------------------------------------------------

def test_terms() -> None:
    assert terms("How many OrderItems were shipped to Zürich in categories?") == {
        "order", "item", "shipped", "zürich", "category"}
    assert terms("customer_id") == {"customer", "id"}
    assert terms(None) == set() and terms("the of a") == set()


def _table(oid: int, name: str, *columns: str, comment: str | None = None) -> Table:
    return Table(oid=oid, schema="public", name=name, comment=comment,
                 columns=[Column(name=c, type="integer") for c in columns])


SHOP = Schema(
    tables=[_table(1, "customers", "id", "name", "country"),
            _table(2, "orders", "id", "customer_id", "status"),
            _table(3, "order_items", "order_id", "product_id", "quantity"),
            _table(4, "products", "id", "name", "category", "price"),
            _table(5, "audit_log", "id", "payload", comment="raw events, not for reporting")],
    joins=[Join(2, ("customer_id",), 1, ("id",)), Join(3, ("order_id",), 2, ("id",)),
           Join(3, ("product_id",), 4, ("id",))])


def test_scores_rank_names_and_pull_in_joined_tables() -> None:
    scores = RelevanceIndex.build(SHOP).scores("average price per product category")
    assert scores[3] == max(scores)           # products: name and columns match
    assert scores[2] > scores[1] > 0          # order_items: product_id, and joined; orders: joined to it
    assert scores[0] == scores[4] == 0        # one join further, or unrelated
    assert RelevanceIndex.build(SHOP).scores("which events are raw?")[4] > 0  # comments count too


def test_select_tables_fits_the_budget_best_first() -> None:
    scores = [0.0, 5.0, 1.0, 9.0, 0.0]
    costs = [10, 50, 30, 40, 10]
    assert select_tables(scores, costs, 100) == [1, 3]       # 40 + 50; 30 more would not fit
    assert select_tables(scores, costs, 75) == [2, 3]        # 50 does not fit after 40; 30 does
    assert select_tables(scores, costs, 10) == []
    assert select_tables([0.0] * 5, costs, 65) == [0, 1]     # nothing matches: path order
    assert select_tables(scores, costs, 1000) == [1, 2, 3]   # unmatched tables are never padding


# -- through the extension, with a stand-in daemon ------------------------------

def count_words(text: str) -> int:
    """The stand-in's tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


class StandInDaemon:
    """Speaks the protocol's status, count_tokens and generate; records what it was sent."""

    def __init__(self, path: Path, model: str, context_length: int, max_new_tokens: int = 100,
                 count_tokens: bool = True):
        self.path, self.model, self.count_tokens = path, model, count_tokens
        self.context_length, self.max_new_tokens = context_length, max_new_tokens
        self.requests: list[dict[str, Any]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        os.chmod(path, 0o666)  # the postgres OS user connects
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                line = f.readline()
                if not line:
                    continue
                req = json.loads(line)
                self.requests.append(req)
                f.write(json.dumps(self._answer(req)).encode() + b"\n")
                f.flush()

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"v": 1, "id": req["id"], "ok": True}
        if req["op"] == "status":
            reply["status"] = {"state": "ready", "model": self.model, "context_length": self.context_length,
                               "max_new_tokens": self.max_new_tokens, "protocol": 1}
        elif req["op"] == "count_tokens" and self.count_tokens:
            reply["counts"] = [count_words(t) for t in req["texts"]]
        elif req["op"] == "generate":
            reply.update(text=" SELECT 1;\n[/SQL]", model=self.model, finish_reason="eos")
        else:
            return {"v": 1, "id": req["id"], "ok": False, "error": {"code": "bad_request", "message": "unknown op"}}
        return reply

    def sent(self, op: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["op"] == op]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def stand_in() -> Iterator[Any]:
    daemons: list[StandInDaemon] = []

    def make(**kwargs: Any) -> StandInDaemon:
        daemons.append(StandInDaemon(socket_dir() / "sqlcoder.sock", **kwargs))
        return daemons[-1]

    yield make
    for d in daemons:
        d.close()


FILLER = "".join(
    f"CREATE TABLE sensor_readings_{i} (id integer PRIMARY KEY, device text, reading real, taken_at timestamptz);\n"
    for i in range(40))


def _prompt(conn: psycopg.Connection, question: str) -> tuple[str, list[str]]:
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    text = conn.execute("SELECT sqlcoder.prompt(%s)", (question,)).fetchone()[0]
    return text, notices


def test_schema_is_pruned_to_the_budget(pg: Cluster, new_db, stand_in) -> None:
    """Relevant tables and their join partners stay, the rest goes, a NOTICE says how many;
    ask() sends exactly what prompt() shows, and it fits the budget."""
    daemon = stand_in(model="defog/sqlcoder-70b-alpha", context_length=700, max_new_tokens=100)
    db = new_db(socket=str(daemon.path))
    question = "What is the total quantity sold per product category?"
    with pg.connect(db) as conn:
        conn.execute(FILLER)
        text, notices = _prompt(conn, question)
        assert count_words(text) <= 600
        assert "CREATE TABLE products (" in text and "CREATE TABLE order_items (" in text
        assert "-- order_items.product_id can be joined with products.id" in text
        assert "sensor_readings" not in text
        assert len(notices) == 1
        left_out = re.fullmatch(r"sqlcoder: the schema does not fit the model's context \(600 tokens\); "
                                r"(\d+) of 44 tables were left out", notices[0])
        assert left_out and 40 <= int(left_out.group(1)) < 44
        conn.execute("SELECT sqlcoder.ask(%s)", (question,))
        assert daemon.sent("generate")[-1]["prompt"] == text
        # Token counts of the tables are asked for once per cached schema, not per call.
        counted = sum(len(r["texts"]) for r in daemon.sent("count_tokens"))
        _prompt(conn, "How many sensor readings per device?")
        assert sum(len(r["texts"]) for r in daemon.sent("count_tokens")) - counted < 5
        text, _ = _prompt(conn, "How many sensor readings per device?")
        assert "sensor_readings_" in text and "CREATE TABLE products (" not in text


def test_schema_that_fits_is_not_counted(pg: Cluster, new_db, stand_in) -> None:
    daemon = stand_in(model="defog/sqlcoder-70b-alpha", context_length=100_000)
    db = new_db(socket=str(daemon.path))
    with pg.connect(db) as conn:
        text, notices = _prompt(conn, "How many customers are there?")
    assert notices == [] and daemon.sent("count_tokens") == []
    assert all(f"CREATE TABLE {t} (" in text for t in ("customers", "products", "orders", "order_items"))


def test_unreachable_or_unable_daemon_means_no_pruning(pg: Cluster, new_db, stand_in) -> None:
    """prompt() never fails for want of a daemon: the whole schema, no NOTICE, the 70B template."""
    db = new_db(socket="/nonexistent/sqlcoder.sock")
    with pg.connect(db) as conn:
        conn.execute("UPDATE sqlcoder.config SET value = '10' WHERE key = 'context_budget_tokens'")
        text, notices = _prompt(conn, "How many customers are there?")
    assert notices == [] and "CREATE TABLE order_items (" in text and text.startswith("### Task\n")
    daemon = stand_in(model="defog/sqlcoder-70b-alpha", context_length=200, count_tokens=False)
    db = new_db(socket=str(daemon.path))
    with pg.connect(db) as conn:
        text, notices = _prompt(conn, "How many customers are there?")
    assert notices == [] and "CREATE TABLE order_items (" in text


def test_template_follows_the_daemons_model(pg: Cluster, new_db, stand_in) -> None:
    daemon = stand_in(model="defog/sqlcoder-7b-2", context_length=16_384)
    db = new_db(socket=str(daemon.path))
    with pg.connect(db) as conn:
        text, _ = _prompt(conn, "How many customers are there?")
    assert "here is the SQL query that [QUESTION]How many customers are there?[/QUESTION]\n[SQL]\n" in text
    assert "### Instructions" not in text


@pytest.mark.slow
def test_pruned_with_the_real_tokenizer(pg: Cluster, new_db, tiny_daemon) -> None:
    """With the real daemon and a configured budget, the prompt's real token count fits it."""
    db = new_db(socket=tiny_daemon.socket_path)
    with pg.connect(db) as conn:
        conn.execute("UPDATE sqlcoder.config SET value = '260' WHERE key = 'context_budget_tokens'")
        text, notices = _prompt(conn, "What is the total revenue per product?")
    tokens = request(tiny_daemon.socket_path, {"v": 1, "id": "t", "op": "count_tokens", "texts": [text]})["counts"][0]
    assert tokens <= 260
    assert len(notices) == 1 and "CREATE TABLE products (" in text and "CREATE TABLE customers (" not in text
