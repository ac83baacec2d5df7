------------------------------------------------------------------------------
-- Running SQL read-only as the caller: run (generated SQL), execute (reviewed
-- SQL), and their typed forms. The guard and read-only execution live in
-- python/sqlcoder/guard.py and execute.py; results are kept bounded in rows
-- and bytes, with bounded memory (src/result_rows.c), and a call whose client
-- went away stops (src/client_check.c).

-- Runs one query the guard accepted, read-only (its SET clause makes
-- PostgreSQL refuse every write for the duration of this very call; a SET
-- LOCAL in a separate SPI call would be undone when PL/Python's
-- subtransaction ends), in the caller's search_path (set locally, restored
-- by the SET clause on return). Each row is counted and kept in a
-- tuplestore outside the caller's subtransaction until sqlcoder_internal._result_rows
-- takes it; past max_rows or max_bytes the executor stops at once. as_json
-- (run, execute): each row is kept as its row_to_json text, counted exactly
-- and refused before that text is built when it cannot fit; otherwise the
-- query's own columns are kept (run_typed, execute_typed).
-- SECURITY INVOKER: the query runs with the caller's privileges.
CREATE FUNCTION sqlcoder_internal._run_readonly(query text, caller_search_path text, max_rows bigint, max_bytes bigint,
    as_json boolean,
    OUT token bigint, OUT row_count bigint, OUT bytes bigint, OUT truncated boolean, OUT exceeded boolean)
RETURNS record
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET transaction_read_only = on
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_run_readonly';
COMMENT ON FUNCTION sqlcoder_internal._run_readonly(text, text, bigint, bigint, boolean) IS
  'internal: run one query read-only in the given search_path and keep its rows (bounded in rows and bytes) '
  'for sqlcoder_internal._result_rows; used by run and execute';

CREATE FUNCTION sqlcoder_internal._result_rows(token bigint)
RETURNS SETOF json
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_result_rows';
COMMENT ON FUNCTION sqlcoder_internal._result_rows(bigint) IS
  'internal: the rows sqlcoder_internal._run_readonly kept under token, in order, once';

CREATE FUNCTION sqlcoder_internal._client_connected()
RETURNS boolean
LANGUAGE C VOLATILE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_client_connected';
COMMENT ON FUNCTION sqlcoder_internal._client_connected() IS
  'internal: false once this backend''s client has closed its connection (checked while waiting on the model)';

REVOKE ALL ON FUNCTION sqlcoder_internal._run_readonly(text, text, bigint, bigint, boolean), sqlcoder_internal._result_rows(bigint),
  sqlcoder_internal._client_connected() FROM PUBLIC;

-- Memory and temporary files of a guarded call (src/call_limits.c), until
-- the calling subtransaction ends. Any role may call it: both limits only
-- ever lower what is in force.
CREATE FUNCTION sqlcoder_internal._limit_call(max_memory_bytes bigint, max_temp_bytes bigint)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_limit_call';
COMMENT ON FUNCTION sqlcoder_internal._limit_call(bigint, bigint) IS
  'internal: limit the address space and temporary files of this backend until the current subtransaction '
  'ends (only ever lower); used by run, execute and ask';
REVOKE ALL ON FUNCTION sqlcoder_internal._limit_call(bigint, bigint) FROM PUBLIC;

-- Each row is one json value from the executor to the caller: no JSON list
-- of JSON texts parsed back into rows.
CREATE FUNCTION sqlcoder.run(question text, instructions text DEFAULT NULL, max_rows integer DEFAULT NULL,
                             follow_up bigint DEFAULT NULL)
RETURNS SETOF json
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT r.value
  FROM sqlcoder_internal._result_rows(sqlcoder_internal._result(sqlcoder_internal._invoke('run', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'max_rows', max_rows, 'follow_up', follow_up,
    'caller_path', pg_catalog.current_schemas(true))))::bigint) AS r(value);
END;
COMMENT ON FUNCTION sqlcoder.run(text, text, integer, bigint) IS
  'answer a question: generate SQL and run it read-only with your privileges; one json object per row, '
  'keys in column order (a repeated column name gets _2, _3, ...); follow_up as for sqlcoder.ask';

CREATE FUNCTION sqlcoder.execute(sql text, max_rows integer DEFAULT NULL)
RETURNS SETOF json
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT r.value
  FROM sqlcoder_internal._result_rows(sqlcoder_internal._result(sqlcoder_internal._invoke('execute', pg_catalog.jsonb_build_object(
    'sql', sql, 'max_rows', max_rows, 'caller_path', pg_catalog.current_schemas(true))))::bigint) AS r(value);
END;
COMMENT ON FUNCTION sqlcoder.execute(text, integer) IS
  'run one reviewed query under the same guard and read-only execution as sqlcoder.run';

REVOKE ALL ON FUNCTION sqlcoder.run(text, text, integer, bigint), sqlcoder.execute(text, integer) FROM PUBLIC;

-- Typed results: run and execute return one json value per row, which
-- drivers turn into JavaScript numbers (bigints above 2^53 rounded), Python
-- floats (numeric) or untyped objects. run_typed and execute_typed run the
-- same guarded, read-only query but keep its own columns, returned in the
-- shape of the caller's column definition list:
--   SELECT * FROM sqlcoder.execute_typed('SELECT id, price FROM products') AS r(id bigint, price numeric);
-- A listed type other than the query's is read through its text form. C,
-- without a SET clause: the call runs as the caller, in the caller's path.
CREATE FUNCTION sqlcoder.run_typed(question text, instructions text DEFAULT NULL, max_rows integer DEFAULT NULL,
                                   follow_up bigint DEFAULT NULL)
RETURNS SETOF record
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_run_typed';
COMMENT ON FUNCTION sqlcoder.run_typed(text, text, integer, bigint) IS
  'sqlcoder.run with the query''s own column types, in the shape of a column definition list: '
  'SELECT * FROM sqlcoder.run_typed(''question'') AS r(name text, total numeric)';
CREATE FUNCTION sqlcoder.execute_typed(sql text, max_rows integer DEFAULT NULL)
RETURNS SETOF record
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_execute_typed';
COMMENT ON FUNCTION sqlcoder.execute_typed(text, integer) IS
  'sqlcoder.execute with the query''s own column types, in the shape of a column definition list: '
  'SELECT * FROM sqlcoder.execute_typed(''SELECT ...'') AS r(id bigint, price numeric)';
REVOKE ALL ON FUNCTION sqlcoder.run_typed(text, text, integer, bigint), sqlcoder.execute_typed(text, integer) FROM PUBLIC;

INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder.run(text, text, integer, bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.execute(text, integer)', 'EXECUTE'),
  ('function', 'sqlcoder.run_typed(text, text, integer, bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.execute_typed(text, integer)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._run_readonly(text, text, bigint, bigint, boolean)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._result_rows(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._client_connected()', 'EXECUTE'),
  ('function', 'sqlcoder_internal._limit_call(bigint, bigint)', 'EXECUTE');
