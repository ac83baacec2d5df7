-- PENDING (asker): 0.4.0 changes kept in one place until the per-object sql/ layout lands;
-- each part moves to its object's source AND to sqlcoder--0.3.0--0.4.0.sql.in.
-- Parts marked UPDATE ONLY belong to the update script alone.

------------------------------------------------------------------------------
-- Follow-up questions: ask, prompt, run and run_typed take follow_up, the id
-- of one of the caller's sqlcoder.history rows (0: the caller's latest ask or
-- run of this session). A new argument means a new signature.

-- UPDATE ONLY: drop the old signatures (their grantees hold sqlcoder.status() too: see the end).
DROP FUNCTION sqlcoder.ask(text, text);
DROP FUNCTION sqlcoder.prompt(text, text);
DROP FUNCTION sqlcoder.run(text, text, integer);
DROP FUNCTION sqlcoder.run_typed(text, text, integer);
DELETE FROM sqlcoder._access_list WHERE kind = 'function' AND object IN (
  'sqlcoder.ask(text, text)', 'sqlcoder.prompt(text, text)', 'sqlcoder.run(text, text, integer)',
  'sqlcoder.run_typed(text, text, integer)');
-- END UPDATE ONLY

CREATE FUNCTION sqlcoder.ask(question text, instructions text DEFAULT NULL, follow_up bigint DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder._result(sqlcoder._invoke('ask', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'follow_up', follow_up,
    'caller_path', pg_catalog.current_schemas(true))));
END;
COMMENT ON FUNCTION sqlcoder.ask(text, text, bigint) IS
  'generate SQL that answers a question about the tables you can see; never runs it. '
  'follow_up: the sqlcoder.history id of an earlier question of yours this one refines (0: your latest)';

CREATE FUNCTION sqlcoder.prompt(question text, instructions text DEFAULT NULL, follow_up bigint DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder._result(sqlcoder._invoke('prompt', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'follow_up', follow_up,
    'caller_path', pg_catalog.current_schemas(true))));
END;
COMMENT ON FUNCTION sqlcoder.prompt(text, text, bigint) IS
  'the exact prompt sqlcoder.ask would send to the model for this question (and follow_up)';

CREATE FUNCTION sqlcoder.run(question text, instructions text DEFAULT NULL, max_rows integer DEFAULT NULL,
                             follow_up bigint DEFAULT NULL)
RETURNS SETOF json
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT r.value
  FROM sqlcoder._result_rows(sqlcoder._result(sqlcoder._invoke('run', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'max_rows', max_rows, 'follow_up', follow_up,
    'caller_path', pg_catalog.current_schemas(true))))::pg_catalog.int8) AS r(value);
END;
COMMENT ON FUNCTION sqlcoder.run(text, text, integer, bigint) IS
  'answer a question: generate SQL and run it read-only with your privileges; one json object per row, '
  'keys in column order (a repeated column name gets _2, _3, ...); follow_up as for sqlcoder.ask';

CREATE FUNCTION sqlcoder.run_typed(question text, instructions text DEFAULT NULL, max_rows integer DEFAULT NULL,
                                   follow_up bigint DEFAULT NULL)
RETURNS SETOF record
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_run_typed';
COMMENT ON FUNCTION sqlcoder.run_typed(text, text, integer, bigint) IS
  'sqlcoder.run with the query''s own column types, in the shape of a column definition list: '
  'SELECT * FROM sqlcoder.run_typed(''question'') AS r(name text, total numeric)';

REVOKE ALL ON FUNCTION sqlcoder.ask(text, text, bigint), sqlcoder.prompt(text, text, bigint),
  sqlcoder.run(text, text, integer, bigint), sqlcoder.run_typed(text, text, integer, bigint) FROM PUBLIC;
INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder.ask(text, text, bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.prompt(text, text, bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.run(text, text, integer, bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.run_typed(text, text, integer, bigint)', 'EXECUTE');

------------------------------------------------------------------------------
-- Golden examples by PostgreSQL's own permission check (src/example_access.c):
-- a role reads an example when the executor's check on the analyzed query
-- would let it run it (column privileges included). The cheap test first:
-- every table the example reads must show the role at least one column.

CREATE FUNCTION sqlcoder._example_permitted(sql text, search_path name[])
RETURNS boolean
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_example_permitted';
COMMENT ON FUNCTION sqlcoder._example_permitted(text, name[]) IS
  'internal: whether PostgreSQL''s permission check on the analyzed query lets the current role run it '
  '(nothing runs)';
REVOKE ALL ON FUNCTION sqlcoder._example_permitted(text, name[]) FROM PUBLIC;
INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder._example_permitted(text, name[])', 'EXECUTE');

-- UPDATE ONLY
DROP POLICY readers ON sqlcoder.examples;
-- END UPDATE ONLY
CREATE POLICY readers ON sqlcoder.examples FOR SELECT USING (
  NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(tables) AS t(rel)
              WHERE NOT coalesce(pg_catalog.has_any_column_privilege(t.rel::pg_catalog.oid, 'SELECT'), false))
  AND sqlcoder._example_permitted(sql, search_path));

------------------------------------------------------------------------------
-- The DBA surface: grant_access and revoke_access say what they did;
-- status_report() starts with one verdict row.

-- UPDATE ONLY
DROP FUNCTION sqlcoder.grant_access(regrole);
DROP FUNCTION sqlcoder.revoke_access(regrole);
-- END UPDATE ONLY

CREATE FUNCTION sqlcoder.grant_access(role_name regrole)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder._set_access(role_name, true);
  RETURN format('granted %s: USAGE on schema sqlcoder, EXECUTE on %s functions, privileges on %s tables (%s)',
                role_name,
                (SELECT count(*) FROM sqlcoder._access_list WHERE kind = 'function'),
                (SELECT count(*) FROM sqlcoder._access_list WHERE kind = 'table'),
                (SELECT string_agg(a.object, ', ' ORDER BY a.object)
                 FROM sqlcoder._access_list a WHERE a.kind = 'table'));
END
$$;

CREATE FUNCTION sqlcoder.revoke_access(role_name regrole)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder._set_access(role_name, false);
  RETURN format('revoked from %s: USAGE on schema sqlcoder, EXECUTE on %s functions, privileges on %s tables',
                role_name,
                (SELECT count(*) FROM sqlcoder._access_list WHERE kind = 'function'),
                (SELECT count(*) FROM sqlcoder._access_list WHERE kind = 'table'));
END
$$;
COMMENT ON FUNCTION sqlcoder.grant_access(regrole) IS
  'let a role (or group role) use sqlcoder; returns what was granted';
COMMENT ON FUNCTION sqlcoder.revoke_access(regrole) IS
  'take back what sqlcoder.grant_access gave a role; returns what was revoked';
REVOKE ALL ON FUNCTION sqlcoder.grant_access(regrole), sqlcoder.revoke_access(regrole) FROM PUBLIC;

CREATE OR REPLACE FUNCTION sqlcoder.status_report()
RETURNS TABLE (key text, value text)
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  WITH RECURSIVE s(j) AS MATERIALIZED (
    SELECT sqlcoder.status()
  ), leaves(key, value) AS (
    SELECT e.key, e.value FROM s, pg_catalog.jsonb_each(s.j) AS e
    UNION ALL
    SELECT l.key OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.key, c.value
    FROM leaves l, pg_catalog.jsonb_each(l.value) AS c
    WHERE pg_catalog.jsonb_typeof(l.value) = 'object'
  ), rows(ord, key, value) AS (
    SELECT 0, 'verdict',
           CASE WHEN (s.j OPERATOR(pg_catalog.->>) 'reachable')::boolean
                THEN 'OK: the daemon answers, serving '
                     OPERATOR(pg_catalog.||) COALESCE(s.j OPERATOR(pg_catalog.#>>) '{daemon,model}', 'a model')
                ELSE 'NOT OK: ' OPERATOR(pg_catalog.||)
                     COALESCE(s.j OPERATOR(pg_catalog.->>) 'error', 'the daemon is not reachable')
                     OPERATOR(pg_catalog.||) COALESCE(' ' OPERATOR(pg_catalog.||) (s.j OPERATOR(pg_catalog.->>) 'hint'),
                                                      '') END
    FROM s
    UNION ALL
    SELECT 1, l.key, CASE pg_catalog.jsonb_typeof(l.value) WHEN 'string' THEN l.value OPERATOR(pg_catalog.#>>) '{}'
                     ELSE l.value::text END
    FROM leaves l WHERE pg_catalog.jsonb_typeof(l.value) <> 'object'
  )
  SELECT r.key, r.value FROM rows r ORDER BY r.ord, r.key;
END;
COMMENT ON FUNCTION sqlcoder.status_report() IS
  'sqlcoder.status() as (key, value) rows, nested keys joined with dots, after one verdict row (OK / NOT OK)';

------------------------------------------------------------------------------
-- UPDATE ONLY, last: roles granted access before the update get the new signatures.
DO $$
DECLARE
  g regrole;
BEGIN
  FOR g IN
    SELECT DISTINCT a.grantee::pg_catalog.regrole
    FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
    WHERE p.oid = 'sqlcoder.status()'::pg_catalog.regprocedure
      AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
  LOOP
    PERFORM sqlcoder._set_access(g, true);
  END LOOP;
END
$$;
-- END UPDATE ONLY
