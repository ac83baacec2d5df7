"""The per-backend schema cache: reused while nothing changed, never stale once a change commits."""

from __future__ import annotations

import psycopg

from sqlcoder_dev.pgcluster import Cluster


def prompt(conn: psycopg.Connection, question: str = "how many rows?") -> str:
    return conn.execute("SELECT sqlcoder.prompt(%s)", (question,)).fetchone()[0]


def test_the_cache_is_used_until_ddl_says_otherwise(pg: Cluster, new_db) -> None:
    """A change made with event triggers off (session_replication_role = replica) is not seen:
    proof that the cached schema is served; the next real DDL invalidates it."""
    db = new_db()
    with pg.connect(db) as reader, pg.connect(db) as writer:
        assert "sneaky" not in prompt(reader)
        writer.execute("SET session_replication_role = replica")
        writer.execute("ALTER TABLE customers ADD COLUMN sneaky text")
        assert "sneaky" not in prompt(reader)
        writer.execute("RESET session_replication_role")
        writer.execute("COMMENT ON TABLE products IS 'things we sell'")
        after = prompt(reader)
        assert "sneaky text" in after and "-- things we sell" in after


def test_changes_from_another_session_appear(pg: Cluster, new_db, analyst_role) -> None:
    """ADD COLUMN, COMMENT and a join hint appear in the next prompt(); a revoked table disappears."""
    db = new_db()
    role = analyst_role(db)
    with pg.connect(db, user=role) as reader, pg.connect(db) as owner:
        first = prompt(reader)
        assert "loyalty_points" not in first and "CREATE TABLE products (" in first
        owner.execute("ALTER TABLE customers ADD COLUMN loyalty_points integer")
        assert "loyalty_points integer" in prompt(reader)
        owner.execute("COMMENT ON COLUMN customers.loyalty_points IS 'earned per euro spent'")
        assert "loyalty_points integer --earned per euro spent" in prompt(reader)
        owner.execute(f'REVOKE SELECT ON products FROM "{role}"')
        text = prompt(reader)
        assert "CREATE TABLE products" not in text and "products.id" not in text
        owner.execute("SELECT sqlcoder.add_join_hint('customers', 'country', 'orders', 'status')")
        assert "-- customers.country can be joined with orders.status" in prompt(reader)


def test_uncommitted_ddl_is_seen_only_once_committed(pg: Cluster, new_db) -> None:
    db = new_db()
    with pg.connect(db) as reader, pg.connect(db, autocommit=False) as writer:
        assert "warehouses" not in prompt(reader)
        writer.execute("CREATE TABLE warehouses (city text)")
        assert "warehouses" not in prompt(reader)  # not committed yet
        writer.commit()
        assert "CREATE TABLE warehouses (" in prompt(reader)


def test_a_rolled_back_change_leaves_no_trace(pg: Cluster, new_db) -> None:
    """Inside its own transaction a session sees its DDL; after ROLLBACK the cache does not keep it."""
    db = new_db()
    with pg.connect(db, autocommit=False) as conn:
        prompt(conn)
        conn.execute("CREATE TABLE scratch (x integer)")
        assert "CREATE TABLE scratch (" in prompt(conn)
        conn.rollback()
        assert "scratch" not in prompt(conn)


def test_search_path_and_role_are_part_of_the_key(pg: Cluster, new_db, analyst_role) -> None:
    db = new_db()
    role = analyst_role(db)
    with pg.connect(db) as conn:
        conn.execute("CREATE SCHEMA extra; CREATE TABLE extra.notes (body text); "
                     "CREATE TABLE public.staff_only (x int)")
        assert "notes" not in prompt(conn) and "staff_only" in prompt(conn)
        conn.execute("SET search_path = public, extra")
        assert "CREATE TABLE notes (" in prompt(conn)
        conn.execute(f'SET ROLE "{role}"')
        text = prompt(conn)
        assert "staff_only" not in text and "notes" not in text  # no USAGE on extra, no SELECT on staff_only
        conn.execute("RESET ROLE")
        assert "staff_only" in prompt(conn)
