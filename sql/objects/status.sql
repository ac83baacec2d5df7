------------------------------------------------------------------------------
-- The daemon's status, as jsonb and as rows a person can read.

CREATE FUNCTION sqlcoder.status()
RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('status', '{}'::jsonb))::jsonb;
END;
COMMENT ON FUNCTION sqlcoder.status() IS
  'sqlcoder daemon status: reachable, model, device, quantization, uptime, request counts';

-- status() in rows a person can read: one (key, value) row per leaf of the
-- jsonb, nested keys joined with dots.
CREATE FUNCTION sqlcoder.status_report()
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
REVOKE ALL ON FUNCTION sqlcoder.status(), sqlcoder.status_report() FROM PUBLIC;

INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder.status()', 'EXECUTE'),
  ('function', 'sqlcoder.status_report()', 'EXECUTE');
