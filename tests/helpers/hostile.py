"""What an attacker can plant around an ordinary role, and the function-policy cases that try it.

``plant`` sets up, in one database: a second role that owns a schema and may
create in ``public`` (functions that shadow built-ins, operators, casts,
views, an RLS policy, a domain, an aggregate), a superuser's STABLE function
with a side effect, and real remote access: ``dblink`` and ``postgres_fdw``
with a password-authenticated user mapping (scram over the cluster's socket)
to a role that may delete rows, and a foreign table. ``POLICY_CASES`` are the
queries that try to use them; tests/adversarial/test_hostile_sql.py runs each one
through ``sqlcoder.execute`` and ``sqlcoder.run`` (stand-in daemon).
"""

from __future__ import annotations

import os

from sqlcoder_dev.pgcluster import Cluster

PLANTER = f"adv_planter_{os.getpid()}"
REMOTE = f"adv_remote_{os.getpid()}"
REMOTE_PASSWORD = "remote-secret-1"
ROWS = "rows"

_KILL = ("SELECT coalesce(bool_or(pg_catalog.pg_terminate_backend(pid)), false) FROM pg_catalog.pg_stat_activity "
         "WHERE usename = current_user AND pid <> pg_catalog.pg_backend_pid()")

_PLANTED = f"""
CREATE SCHEMA planted;
GRANT USAGE ON SCHEMA planted TO PUBLIC;
CREATE FUNCTION planted.kill_plpgsql() RETURNS boolean LANGUAGE plpgsql STABLE
  AS $$ BEGIN RETURN ({_KILL}); END $$;
CREATE FUNCTION planted.kill_sql() RETURNS boolean LANGUAGE sql STABLE AS $$ {_KILL} $$;
CREATE FUNCTION planted.kill_atomic() RETURNS boolean LANGUAGE sql STABLE BEGIN ATOMIC {_KILL}; END;
CREATE FUNCTION planted.wal(text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT pg_catalog.pg_logical_emit_message(true, 'planted', $1)::text $$;
CREATE FUNCTION public.lower(character varying) RETURNS text LANGUAGE plpgsql STABLE
  AS $$ BEGIN PERFORM ({_KILL}); RETURN pg_catalog.lower($1::text); END $$;
CREATE FUNCTION public.upper(character varying) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT pg_catalog.upper($1::text) || ({_KILL})::text $$;
CREATE FUNCTION planted.leak(integer, integer) RETURNS boolean LANGUAGE sql VOLATILE
  AS $$ SELECT pg_catalog.set_config('application_name', $1::text, false) IS NOT NULL $$;
CREATE OPERATOR public.=== (LEFTARG = integer, RIGHTARG = integer, FUNCTION = planted.leak);
CREATE FUNCTION planted.kill_op(integer, integer) RETURNS boolean LANGUAGE sql STABLE AS $$ {_KILL} $$;
CREATE OPERATOR public.~~~ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = planted.kill_op);
CREATE TYPE planted.mood AS ENUM ('happy', 'sad');
CREATE FUNCTION planted.mood_int(planted.mood) RETURNS integer LANGUAGE plpgsql STABLE
  AS $$ BEGIN PERFORM ({_KILL}); RETURN 1; END $$;
CREATE CAST (planted.mood AS integer) WITH FUNCTION planted.mood_int(planted.mood);
CREATE TABLE planted.notes (id integer, note text);
INSERT INTO planted.notes VALUES (1, 'hello');
CREATE VIEW planted.v_kill AS SELECT id, planted.kill_sql() AS k FROM planted.notes;
CREATE VIEW planted.v_leak AS
  SELECT id, pg_catalog.set_config('application_name', note, false) AS s FROM planted.notes;
CREATE VIEW planted.v_nested AS SELECT * FROM planted.v_kill;
CREATE VIEW planted.v_invoker WITH (security_invoker = true) AS
  SELECT id, pg_catalog.pg_cancel_backend(0) AS c FROM planted.notes;
CREATE TABLE planted.guarded (id integer);
INSERT INTO planted.guarded VALUES (1);
ALTER TABLE planted.guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY snoop ON planted.guarded USING (planted.kill_sql());
CREATE DOMAIN planted.positive AS integer CHECK (VALUE > 0 AND planted.kill_sql() IS NOT NULL);
CREATE TYPE planted.boxed AS (v planted.positive);
CREATE FUNCTION planted.step(integer, integer) RETURNS integer LANGUAGE sql VOLATILE
  AS $$ SELECT coalesce($1, 0) + $2 + length(pg_catalog.set_config('application_name', $2::text, false)) $$;
CREATE AGGREGATE planted.total(integer) (SFUNC = planted.step, STYPE = integer);
GRANT SELECT ON ALL TABLES IN SCHEMA planted TO PUBLIC;
"""


def plant(pg: Cluster, db: str, role: str) -> None:
    """Plant the hostile objects and the remote access in ``db``, next to the ordinary ``role``."""
    hba = pg.datadir / "pg_hba.conf"
    hba.write_text(f"local all {REMOTE} scram-sha-256\n" + hba.read_text())
    pg.psql("SELECT pg_reload_conf()")
    for name, extra in ((PLANTER, "LOGIN"), (REMOTE, f"LOGIN PASSWORD '{REMOTE_PASSWORD}'")):
        pg.psql(f'DO $$BEGIN CREATE ROLE "{name}" {extra}; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
    with pg.connect(db) as conn:
        conn.execute(f'GRANT CREATE ON DATABASE "{db}" TO "{PLANTER}"')
        conn.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{PLANTER}"')
        conn.execute(f'GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA public TO "{REMOTE}"')
        # A DBA's STABLE function with a side effect (the label is wrong).
        conn.execute("CREATE FUNCTION public.dba_next_id() RETURNS bigint LANGUAGE plpgsql STABLE "
                     "AS $$ BEGIN RETURN nextval('public.customers_id_seq'); END $$")
        conn.execute("CREATE EXTENSION dblink")
        conn.execute("CREATE EXTENSION postgres_fdw")
        conn.execute(f"CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw "
                     f"OPTIONS (host '{pg.sockdir}', port '{pg.port}', dbname '{db}')")
        conn.execute(f'CREATE USER MAPPING FOR "{role}" SERVER loopback '
                     f"OPTIONS (user '{REMOTE}', password '{REMOTE_PASSWORD}')")
        conn.execute(f'GRANT USAGE ON FOREIGN SERVER loopback TO "{role}"')
        conn.execute("CREATE FOREIGN TABLE public.remote_orders (id integer, customer_id integer) "
                     "SERVER loopback OPTIONS (schema_name 'public', table_name 'orders')")
        conn.execute("CREATE VIEW public.remote_view AS SELECT count(*) AS n FROM public.remote_orders")
        conn.execute("CREATE TABLE public.order_archive (id integer, customer_id integer) PARTITION BY RANGE (id)")
        conn.execute("CREATE FOREIGN TABLE public.order_archive_remote PARTITION OF public.order_archive "
                     "FOR VALUES FROM (0) TO (1000000) SERVER loopback "
                     "OPTIONS (schema_name 'public', table_name 'orders')")
        conn.execute(f'GRANT SELECT ON public.order_archive TO "{role}"')
        conn.execute(f'GRANT SELECT ON public.remote_orders, public.remote_view TO "{role}"')
    pg.psql(_PLANTED, dbname=db, user=PLANTER)


def unplant(pg: Cluster) -> None:
    hba = pg.datadir / "pg_hba.conf"
    hba.write_text("".join(line for line in hba.read_text().splitlines(keepends=True) if REMOTE not in line))
    pg.psql("SELECT pg_reload_conf()")
    for name in (PLANTER, REMOTE):
        pg.psql(f'DROP ROLE IF EXISTS "{name}"', check=False)


_SAME_ROLE = "FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()"

# (case id, SQL the model writes or the caller passes to execute, expected SQLSTATE or ROWS, class)
POLICY_CASES = [
    # signals: the caller's other sessions (the sibling fixture) must survive
    ("terminate-same-role", f"SELECT pg_terminate_backend(pid) {_SAME_ROLE}", "42501", "signal"),
    ("cancel-same-role", f"SELECT pg_cancel_backend(pid) {_SAME_ROLE}", "42501", "signal"),
    ("terminate-in-cte", f"WITH p AS (SELECT pid {_SAME_ROLE}) SELECT pg_terminate_backend(pid) FROM p",
     "42501", "signal"),
    ("terminate-in-sublink", f"SELECT EXISTS (SELECT pg_terminate_backend(pid) {_SAME_ROLE})", "42501", "signal"),
    ("terminate-lateral", "SELECT x.t FROM pg_stat_activity a, LATERAL (SELECT pg_terminate_backend(a.pid)) "
     "AS x(t) WHERE a.usename = current_user AND a.pid <> pg_backend_pid()", "42501", "signal"),
    ("terminate-qualified", f"SELECT pg_catalog.pg_terminate_backend(pid, 10) {_SAME_ROLE}", "42501", "signal"),
    ("terminate-in-case", f"SELECT CASE WHEN pid > 0 THEN pg_terminate_backend(pid) END {_SAME_ROLE}",
     "42501", "signal"),
    ("terminate-in-order-by", f"SELECT pid {_SAME_ROLE} ORDER BY pg_terminate_backend(pid)", "42501", "signal"),
    ("terminate-in-from", "SELECT * FROM pg_terminate_backend(0)", "42501", "signal"),
    ("reload-conf", "SELECT pg_reload_conf()", "42501", "signal"),
    ("log-memory-contexts", "SELECT pg_log_backend_memory_contexts(pg_backend_pid())", "42501", "signal"),
    # WAL written and kept after the rollback
    ("emit-message-text", "SELECT pg_logical_emit_message(true, 'sqlcoder', repeat('x', 1000000))", "42501", "wal"),
    ("emit-message-bytea", "SELECT pg_logical_emit_message(false, 'p', '\\x00'::bytea)", "42501", "wal"),
    ("emit-message-in-subquery", "SELECT n FROM (SELECT pg_logical_emit_message(true, 'p', name) AS n "
     "FROM customers) s", "42501", "wal"),
    ("emit-message-planted-immutable", "SELECT planted.wal(name) FROM customers", "42501", "wal"),
    ("switch-wal", "SELECT pg_switch_wal()", "42501", "wal"),
    ("brin-summarize", "SELECT brin_summarize_new_values('customers'::regclass)", "42501", "wal"),
    # data leaked to other roles through settings, locks and notifications
    ("set-config-data", "SELECT set_config('application_name', email, false) FROM customers", "42501", "leak"),
    ("set-config-local", "SELECT set_config('application_name', email, true) FROM customers", "42501", "leak"),
    ("set-config-in-where", "SELECT id FROM customers WHERE set_config('application_name', email, false) "
     "IS NOT NULL", "42501", "leak"),
    ("advisory-key-from-data", "SELECT pg_advisory_lock(hashtext(email)) FROM customers", "42501", "leak"),
    ("try-advisory-lock", "SELECT pg_try_advisory_lock(id, 1) FROM customers", "42501", "leak"),
    ("advisory-xact-shared", "SELECT pg_advisory_xact_lock_shared(hashtext(email)) FROM customers",
     "42501", "leak"),
    ("advisory-unlock-all", "SELECT pg_advisory_unlock_all()", "42501", "leak"),
    ("notify-data", "SELECT pg_notify('c', email) FROM customers", "42501", "leak"),
    ("setseed", "SELECT setseed(0.5)", "42501", "leak"),
    ("txid-current", "SELECT txid_current()", "42501", "leak"),
    ("current-xact-id", "SELECT pg_current_xact_id()", "42501", "leak"),
    ("export-snapshot", "SELECT pg_export_snapshot()", "42501", "leak"),
    # remote connections through dblink and postgres_fdw (real: a password user mapping)
    ("dblink-exec-delete", "SELECT dblink_exec('loopback', 'DELETE FROM order_items')", "42501", "remote"),
    ("dblink-exec-insert", "SELECT dblink_exec('loopback', $$INSERT INTO customers (name, email, country) "
     "VALUES ('x', 'x@x', 'DE')$$)", "42501", "remote"),
    ("dblink-query", "SELECT * FROM dblink('loopback', 'SELECT count(*) FROM customers') AS t(n bigint)",
     "42501", "remote"),
    ("dblink-connect", "SELECT dblink_connect('c1', 'loopback')", "42501", "remote"),
    ("dblink-send-query", "SELECT dblink_send_query('c1', 'DELETE FROM orders')", "42501", "remote"),
    ("dblink-qualified", "SELECT public.dblink_exec('loopback', 'DELETE FROM order_items')", "42501", "remote"),
    ("dblink-in-cte", "WITH r AS (SELECT dblink_exec('loopback', 'DELETE FROM order_items') AS s) "
     "SELECT s FROM r", "42501", "remote"),
    ("fdw-foreign-table", "SELECT count(*) FROM remote_orders", "42501", "remote"),
    ("fdw-foreign-join", "SELECT c.name FROM customers c JOIN remote_orders o ON o.customer_id = c.id",
     "42501", "remote"),
    ("fdw-view", "SELECT n FROM remote_view", "42501", "remote"),
    ("fdw-partition", "SELECT count(*) FROM order_archive", "42501", "remote"),
    ("fdw-get-connections", "SELECT * FROM postgres_fdw_get_connections()", "42501", "remote"),
    ("fdw-disconnect-all", "SELECT postgres_fdw_disconnect_all()", "42501", "remote"),
    # recursion into sqlcoder
    ("recursion-run", "SELECT * FROM sqlcoder.run('how many customers?')", "42501", "recursion"),
    ("recursion-execute", "SELECT * FROM sqlcoder.execute('SELECT 1')", "42501", "recursion"),
    ("recursion-ask", "SELECT sqlcoder.ask('how many customers?')", "42501", "recursion"),
    ("recursion-invoke", "SELECT sqlcoder_internal._invoke('status', '{}')", "42501", "recursion"),
    ("recursion-prompt", "SELECT sqlcoder.prompt('how many customers?')", "42501", "recursion"),
    ("recursion-status", "SELECT sqlcoder.status()", "42501", "recursion"),
    ("recursion-in-subquery", "SELECT (SELECT count(*) FROM sqlcoder.execute('SELECT 1')) AS n", "42501",
     "recursion"),
    # a DBA's STABLE function with a side effect: the nextval inside it is refused where PostgreSQL would
    # call it (while planning: the function is evaluated for estimates and folded); the sequence does not move
    ("dba-stable-in-where", "SELECT id FROM customers WHERE id = dba_next_id()", "42501", "planning"),
    ("dba-stable-in-select", "SELECT dba_next_id()", "42501", "planning"),
    ("dba-stable-in-limit", "SELECT id FROM customers LIMIT dba_next_id()", "42501", "planning"),
    # names resolved by the analyzer, not read from the text
    ("shadow-lower-plpgsql", "SELECT lower(name::varchar) FROM customers", "42501", "names"),
    ("shadow-upper-sql-body", "SELECT upper(name::varchar) FROM customers", "42501", "names"),
    ("planted-plpgsql-stable", "SELECT planted.kill_plpgsql()", "42501", "names"),
    ("planted-sql-stable", "SELECT planted.kill_sql()", "42501", "names"),
    ("planted-atomic-stable", "SELECT planted.kill_atomic()", "42501", "names"),
    ("planted-operator-volatile", "SELECT id === 1 FROM customers", "42501", "names"),
    ("planted-operator-stable-body", "SELECT 1 ~~~ 2", "42501", "names"),
    ("planted-cast", "SELECT 'happy'::planted.mood::integer", "42501", "names"),
    ("planted-view", "SELECT * FROM planted.v_kill", "42501", "names"),
    ("planted-view-leak", "SELECT * FROM planted.v_leak", "42501", "names"),
    ("planted-nested-view", "SELECT * FROM planted.v_nested", "42501", "names"),
    ("planted-invoker-view", "SELECT * FROM planted.v_invoker", "42501", "names"),
    ("planted-rls-policy", "SELECT * FROM planted.guarded", "42501", "names"),
    ("planted-domain-check", "SELECT 5::planted.positive", "42501", "names"),
    # a literal of an array or composite type over that domain: array_in/record_in would run the CHECK
    # while the query is analyzed; the analysis refuses it before it runs
    ("planted-domain-array-literal", "SELECT '{1}'::planted.positive[]", "42501", "names"),
    ("planted-domain-composite-literal", "SELECT '(1)'::planted.boxed", "42501", "names"),
    ("planted-domain-populate-record", "SELECT json_populate_record(NULL::planted.boxed, '{\"v\": 1}')",
     "42501", "names"),
    ("planted-aggregate", "SELECT planted.total(id) FROM customers", "42501", "names"),
    ("planted-window-aggregate", "SELECT planted.total(id) OVER () FROM customers", "42501", "names"),
    # functions that run SQL text (or whole relations) out of the guard's sight
    ("query-to-xml", f"SELECT query_to_xml('SELECT pg_terminate_backend(pid) {_SAME_ROLE}', true, false, '')",
     "42501", "sql-text"),
    ("table-to-xml-view", "SELECT table_to_xml('planted.v_kill', true, false, '')", "42501", "sql-text"),
    ("schema-to-xml", "SELECT schema_to_xml('planted', true, false, '')", "42501", "sql-text"),
    ("ts-stat", "SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers')", "42501", "sql-text"),
    ("cursor-to-xml", "SELECT cursor_to_xml('c', 1, true, false, '')", "42501", "sql-text"),
    # files and large objects
    ("read-binary-file", "SELECT pg_read_binary_file('/etc/passwd')", "42501", "files"),
    ("stat-file", "SELECT pg_stat_file('postgresql.conf')", "42501", "files"),
    ("ls-logdir", "SELECT * FROM pg_ls_logdir()", "42501", "files"),
    ("lo-get", "SELECT lo_get(oid) FROM pg_largeobject_metadata", "42501", "files"),
    ("current-logfile", "SELECT pg_current_logfile()", "42501", "files"),
    # sequences and sleeping
    ("currval", "SELECT currval('customers_id_seq')", "42501", "state"),
    ("setval-qualified", "SELECT pg_catalog.setval('customers_id_seq', 1)", "42501", "state"),
    ("sleep-for", "SELECT pg_sleep_for('1 minute')", "42501", "state"),
    ("sleep-until", "SELECT pg_sleep_until(now() + interval '1 minute')", "42501", "state"),
    # harmless: allowed, rows come back
    ("allowed-random", "SELECT random() < 2 AS r", ROWS, "allowed"),
    ("allowed-clock", "SELECT clock_timestamp() >= now() AS t, timeofday() IS NOT NULL AS d", ROWS, "allowed"),
    ("allowed-uuid", "SELECT gen_random_uuid() IS NOT NULL AS u", ROWS, "allowed"),
    ("allowed-stat-activity", "SELECT count(*) FROM pg_stat_activity", ROWS, "allowed"),
    ("allowed-locks", "SELECT count(*) FROM pg_locks", ROWS, "allowed"),
    ("allowed-sequences-view", "SELECT count(*) FROM pg_sequences", ROWS, "allowed"),
    ("allowed-tablesample", "SELECT count(*) FROM customers TABLESAMPLE BERNOULLI (50) REPEATABLE (1)", ROWS,
     "allowed"),
    ("allowed-order-by-random", "SELECT name FROM customers ORDER BY random() LIMIT 2", ROWS, "allowed"),
]
