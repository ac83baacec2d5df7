-- Pending for 0.4.0 (belongs in the guard's per-object source and in the
-- 0.3.0 -> 0.4.0 update script once sql/ is split by object).

-- The function policy's lists for the hooks that enforce it wherever
-- PostgreSQL calls a function during a guarded call (src/function_policy.c):
-- the DBA's allowed and denied functions and the shipped lists, resolved to
-- OIDs by python/sqlcoder/policy.py. They last until the calling
-- subtransaction ends (the guard's rolled-back one).
CREATE FUNCTION sqlcoder._guard_policy(allowed oid[], denied oid[], refused oid[], refused_reasons text[],
    harmless oid[], extensions text[], extension_reasons text[])
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_guard_policy';
COMMENT ON FUNCTION sqlcoder._guard_policy(oid[], oid[], oid[], text[], oid[], text[], text[]) IS
  'internal: hand the function policy''s lists to the hooks for the rest of the calling subtransaction';
REVOKE ALL ON FUNCTION sqlcoder._guard_policy(oid[], oid[], oid[], text[], oid[], text[], text[]) FROM PUBLIC;
INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder._guard_policy(oid[], oid[], oid[], text[], oid[], text[], text[])', 'EXECUTE');

-- The guard's cost estimate, now in C: the query is planned with the function
-- policy armed (src/guarded_explain.c), read-only as before.
CREATE OR REPLACE FUNCTION sqlcoder._readonly_explain(query text, caller_search_path text)
RETURNS json
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET transaction_read_only = on
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_readonly_explain';
COMMENT ON FUNCTION sqlcoder._readonly_explain(text, text) IS
  'internal: EXPLAIN (FORMAT JSON) of one query, read-only, in the given search_path, with the function policy armed; the guard''s cost check';
