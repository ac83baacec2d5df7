------------------------------------------------------------------------------
-- History: every ask, run and execute, and the caller's feedback on it.

-- History rows are written by one background worker per database
-- (src/history_writer.c, fed by src/history_queue.c) that
-- connects by OID to the caller's database as sqlcoder_history_writer, a role
-- that may do nothing but insert them: no loopback connection, no connection
-- string, no superuser (docs/security.md, "Threat model").
--
-- Roles are cluster-wide: the first database to install sqlcoder creates the
-- role and the others reuse it. Whoever made it, it must have no attribute,
-- no password, no member and no membership (PostgreSQL 15 lets a background
-- worker connect only as a LOGIN role, so it has LOGIN, and no password, so
-- it cannot authenticate; the worker checks the same again before each row).
DO $$
DECLARE
  r pg_catalog.pg_authid;
BEGIN
  SELECT * INTO r FROM pg_catalog.pg_authid WHERE rolname = 'sqlcoder_history_writer';
  IF NOT FOUND THEN
    CREATE ROLE sqlcoder_history_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    COMMENT ON ROLE sqlcoder_history_writer IS
      'sqlcoder: writes sqlcoder.history rows from a background worker; may only insert them (never log in as it)';
  ELSIF r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
        OR r.rolpassword IS NOT NULL
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE r.oid IN (m.roleid, m.member)) THEN
    RAISE EXCEPTION 'role sqlcoder_history_writer exists with more than sqlcoder gives it'
      USING ERRCODE = '42710',
            HINT = 'It must have no attributes, no password, no members and no memberships: fix or drop it '
                   '(DROP ROLE sqlcoder_history_writer) and run CREATE EXTENSION again.';
  END IF;
END
$$;

-- Every ask, run and execute, written in its own transaction (see
-- python/sqlcoder/history.py) so that a row survives the caller's error or
-- rollback. Each role sees and annotates only its own rows (row-level
-- security); superusers and BYPASSRLS roles see all. Roles cannot insert.
-- Identical refusals within a second are one row with a count
-- (repeat_count); each attempt of an ask or run that needed a correction is
-- kept with the guard's SQLSTATE and error and the model time (attempts);
-- the model's own text of the last answer, accepted or not, is kept whole
-- (output), so that what the SQL was cut from can be read afterwards.
CREATE TABLE sqlcoder.history (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    role           name NOT NULL,
    database       name NOT NULL DEFAULT pg_catalog.current_database(),
    operation      text NOT NULL CHECK (operation IN ('ask', 'run', 'execute')),
    question       text,
    sql            text,
    model          text,
    model_ms       double precision,
    query_ms       double precision,
    latency_ms     double precision,
    row_count      bigint,
    truncated      boolean,
    outcome        text NOT NULL,
    error_sqlstate text,
    error          text,
    correct        boolean,
    corrected_sql  text,
    feedback_at    timestamptz,
    repeat_count   integer NOT NULL DEFAULT 1,
    attempts       jsonb,
    output         text,
    bytes          bigint GENERATED ALWAYS AS (
      200 + coalesce(pg_catalog.octet_length(question), 0) + coalesce(pg_catalog.octet_length(sql), 0)
      + coalesce(pg_catalog.octet_length(model), 0) + coalesce(pg_catalog.octet_length(error), 0)
      + coalesce(pg_catalog.octet_length(corrected_sql), 0)
      + coalesce(pg_catalog.octet_length(attempts::text), 0)
      + coalesce(pg_catalog.octet_length(output), 0)) STORED
);
COMMENT ON TABLE sqlcoder.history IS
  'every sqlcoder.ask, run and execute: question, SQL, model, latency, outcome, error, and your feedback';
COMMENT ON COLUMN sqlcoder.history.repeat_count IS
  'how many identical calls within a second this row stands for (refusals are folded)';
COMMENT ON COLUMN sqlcoder.history.attempts IS
  'each model attempt when the first was corrected: [{"sql", "sqlstate", "error", "model_ms"}, ...]';
COMMENT ON COLUMN sqlcoder.history.output IS
  'the model''s own text the last answer''s SQL was cut from (at most 100000 characters)';
COMMENT ON COLUMN sqlcoder.history.bytes IS
  'what the row counts against history_max_bytes_per_role (its texts plus 200)';
CREATE INDEX history_role_created_at ON sqlcoder.history (role, created_at);
ALTER TABLE sqlcoder.history ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON sqlcoder.history USING (role = current_user) WITH CHECK (role = current_user);
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.history', '');
CREATE INDEX history_created_at ON sqlcoder.history (created_at);
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.history_id_seq', '');

-- The writer reaches its functions (below) by name, in sqlcoder_internal.
GRANT USAGE ON SCHEMA sqlcoder, sqlcoder_internal TO sqlcoder_history_writer;
GRANT INSERT ON sqlcoder.history TO sqlcoder_history_writer;
GRANT USAGE ON SEQUENCE sqlcoder.history_id_seq TO sqlcoder_history_writer;
-- The writer inserts rows for the role the backend names (never the caller's input).
CREATE POLICY writer_inserts ON sqlcoder.history FOR INSERT TO sqlcoder_history_writer WITH CHECK (true);


-- Called by the granted roles' own backends through PL/Python (granted by
-- grant_access), only inside sqlcoder_internal._invoke (the token). Each queues rows
-- for current_user only, for the database's one history writer.
CREATE FUNCTION sqlcoder_internal._history_begin(token text, entry jsonb, write_timeout_ms integer)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_history_begin';
COMMENT ON FUNCTION sqlcoder_internal._history_begin(text, jsonb, integer) IS
  'internal: remember the call in progress, written as terminated or abandoned if the backend exits during it '
  '(only inside sqlcoder_internal._invoke: token)';

CREATE FUNCTION sqlcoder_internal._history_write(token text, entry jsonb, fold_key text, timeout_ms integer,
                                        write_timeout_ms integer)
RETURNS text
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_history_write';
COMMENT ON FUNCTION sqlcoder_internal._history_write(text, jsonb, text, integer, integer) IS
  'internal: queue one history row for current_user for the database''s history writer; waits at most timeout_ms '
  '(only inside sqlcoder_internal._invoke: token)';

CREATE FUNCTION sqlcoder_internal._history_stats()
RETURNS jsonb
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_history_stats';
COMMENT ON FUNCTION sqlcoder_internal._history_stats() IS
  'internal: history rows asked for, written, folded and lost (with the last reason), for sqlcoder.status()';

REVOKE ALL ON FUNCTION sqlcoder_internal._history_begin(text, jsonb, integer),
  sqlcoder_internal._history_write(text, jsonb, text, integer, integer), sqlcoder_internal._history_stats() FROM PUBLIC;

-- Retention: run by the writer now and then (once a minute per server), one
-- small batch per call, skipping rows someone holds, so callers never wait.
-- SECURITY DEFINER: the writer may not delete; it may only call this.
CREATE FUNCTION sqlcoder_internal._history_purge()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  retention interval;
  max_rows bigint;
  newest bigint;
  deleted bigint;
  more bigint;
BEGIN
  SELECT c.value::interval INTO retention FROM sqlcoder.config c WHERE c.key = 'history_retention';
  SELECT c.value::bigint INTO max_rows FROM sqlcoder.config c WHERE c.key = 'history_max_rows';
  SELECT pg_catalog.max(h.id) INTO newest FROM sqlcoder.history h;
  -- Two statements, each walking one index from its oldest end.
  DELETE FROM sqlcoder.history
  WHERE ctid IN (SELECT h.ctid FROM sqlcoder.history h WHERE h.created_at < pg_catalog.now() - retention
                 ORDER BY h.created_at LIMIT 500 FOR UPDATE SKIP LOCKED);
  GET DIAGNOSTICS deleted = ROW_COUNT;
  DELETE FROM sqlcoder.history
  WHERE ctid IN (SELECT h.ctid FROM sqlcoder.history h WHERE h.id <= newest - max_rows
                 ORDER BY h.id LIMIT 500 FOR UPDATE SKIP LOCKED);
  GET DIAGNOSTICS more = ROW_COUNT;
  deleted := deleted + more;
  RETURN deleted;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._history_purge() IS
  'internal: delete up to 1000 history rows (500 by age, 500 by count) past history_retention or history_max_rows (SECURITY DEFINER: the history writer may call it, not delete)';
REVOKE ALL ON FUNCTION sqlcoder_internal._history_purge() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlcoder_internal._history_purge() TO sqlcoder_history_writer;

-- The writer reads a role's total once (then counts itself) and trims the
-- oldest rows when it passes the limit. SECURITY DEFINER: the writer may
-- only insert; these are all it may read or delete.
CREATE FUNCTION sqlcoder_internal._history_role_bytes(role_name name, OUT bytes bigint, OUT max_bytes bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT (SELECT coalesce(sum(h.bytes), 0)::bigint FROM sqlcoder.history h WHERE h.role = role_name),
         (SELECT c.value::bigint FROM sqlcoder.config c WHERE c.key = 'history_max_bytes_per_role');
END;
COMMENT ON FUNCTION sqlcoder_internal._history_role_bytes(name) IS
  'internal: the bytes of one role''s history rows, and history_max_bytes_per_role (SECURITY DEFINER: for the history writer)';

CREATE FUNCTION sqlcoder_internal._history_trim_role(role_name name)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  max_bytes bigint;
  total bigint;
  target bigint;
  freed bigint := 0;
  doomed bigint[] := '{}';
  r record;
BEGIN
  SELECT c.value::bigint INTO max_bytes FROM sqlcoder.config c WHERE c.key = 'history_max_bytes_per_role';
  SELECT coalesce(sum(h.bytes), 0) INTO total FROM sqlcoder.history h WHERE h.role = role_name;
  IF total <= max_bytes THEN
    RETURN total;
  END IF;
  -- Down to nine tenths, so that a role at its limit is not trimmed at every row.
  target := total - max_bytes + max_bytes / 10;
  FOR r IN SELECT h.id, h.bytes FROM sqlcoder.history h WHERE h.role = role_name ORDER BY h.created_at, h.id LOOP
    EXIT WHEN freed >= target;
    doomed := doomed || r.id;
    freed := freed + r.bytes;
  END LOOP;
  DELETE FROM sqlcoder.history h WHERE h.id = ANY (doomed);
  RETURN total - freed;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._history_trim_role(name) IS
  'internal: delete one role''s oldest history rows past history_max_bytes_per_role; returns the bytes left (SECURITY DEFINER: for the history writer)';

REVOKE ALL ON FUNCTION sqlcoder_internal._history_role_bytes(name), sqlcoder_internal._history_trim_role(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlcoder_internal._history_role_bytes(name), sqlcoder_internal._history_trim_role(name)
  TO sqlcoder_history_writer;

CREATE FUNCTION sqlcoder.feedback(id bigint, correct boolean, corrected_sql text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('feedback', pg_catalog.jsonb_build_object(
    'id', id, 'correct', correct, 'corrected_sql', corrected_sql)));
END;
COMMENT ON FUNCTION sqlcoder.feedback(bigint, boolean, text) IS
  'say whether the SQL of one of your sqlcoder.history rows was correct, with corrected SQL';
REVOKE ALL ON FUNCTION sqlcoder.feedback(bigint, boolean, text) FROM PUBLIC;

-- Granted roles read their own rows and write only the feedback columns
-- (row-level security limits both to the role's own rows); they never insert:
-- sqlcoder writes the rows through these functions.
INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('table', 'sqlcoder.history', 'SELECT, UPDATE (correct, corrected_sql, feedback_at)'),
  ('function', 'sqlcoder.feedback(bigint, boolean, text)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._history_begin(text, jsonb, integer)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._history_write(text, jsonb, text, integer, integer)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._history_stats()', 'EXECUTE');
