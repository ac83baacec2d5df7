------------------------------------------------------------------------------
-- The daemon's status, as jsonb and as rows a person can read.

CREATE FUNCTION sqlcoder.status()
RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder._result(sqlcoder._invoke('status', '{}'::jsonb))::jsonb;
END;
COMMENT ON FUNCTION sqlcoder.status() IS
  'sqlcoder daemon status: reachable, model, device, quantization, uptime, request counts';

-- status() in rows a person can read: one (key, value) row per leaf of the
-- jsonb, nested keys joined with dots.
CREATE FUNCTION sqlcoder.status_report()
RETURNS TABLE (key text, value text)
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  WITH RECURSIVE leaves(key, value) AS (
    SELECT e.key, e.value FROM pg_catalog.jsonb_each(sqlcoder.status()) AS e
    UNION ALL
    SELECT l.key OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) c.key, c.value
    FROM leaves l, pg_catalog.jsonb_each(l.value) AS c
    WHERE pg_catalog.jsonb_typeof(l.value) = 'object'
  )
  SELECT l.key, CASE pg_catalog.jsonb_typeof(l.value) WHEN 'string' THEN l.value OPERATOR(pg_catalog.#>>) '{}'
                ELSE l.value::text END
  FROM leaves l WHERE pg_catalog.jsonb_typeof(l.value) <> 'object'
  ORDER BY 1;
END;
COMMENT ON FUNCTION sqlcoder.status_report() IS
  'sqlcoder.status() as (key, value) rows, nested keys joined with dots';
REVOKE ALL ON FUNCTION sqlcoder.status(), sqlcoder.status_report() FROM PUBLIC;

INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder.status()', 'EXECUTE'),
  ('function', 'sqlcoder.status_report()', 'EXECUTE');
