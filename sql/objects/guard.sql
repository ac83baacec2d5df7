------------------------------------------------------------------------------
-- The guard's view of a query, from PostgreSQL itself, and the DBA's function
-- policy. The decisions are made in python/sqlcoder/guard.py and policy.py;
-- docs/security.md has the reasoning and the adversarial cases.

-- The guard's facts: every function and relation one statement uses, as
-- PostgreSQL's parse analysis resolved them (src/query_objects.c). It only
-- analyzes, as the caller; granted through sqlcoder_internal._access_list below.
-- Read-only for the call: parse analysis may run type input functions.
CREATE FUNCTION sqlcoder_internal._query_objects(sql text)
RETURNS TABLE (kind text, objid oid)
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
SET transaction_read_only = on
AS '$libdir/sqlcoder_pg', 'sqlcoder_query_objects';
COMMENT ON FUNCTION sqlcoder_internal._query_objects(text) IS
  'internal: functions (kind function; opaque: bodies not readable) and relations (kind relation) one plain query uses, resolved by PostgreSQL''s parse analysis as the caller';
REVOKE ALL ON FUNCTION sqlcoder_internal._query_objects(text) FROM PUBLIC;

-- What the function policy needs about each function the query calls, from
-- the syscache (python/sqlcoder/policy.py decides).
CREATE FUNCTION sqlcoder_internal._function_facts(functions oid[])
RETURNS TABLE (oid oid, qualified text, arguments text, schema text, name text, volatility text,
               language text, owner_superuser boolean, extension text)
LANGUAGE C STRICT STABLE PARALLEL SAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_function_facts';
COMMENT ON FUNCTION sqlcoder_internal._function_facts(oid[]) IS
  'internal: schema, name, argument types, volatility, language, owner''s superuser status and extension of each function (the guard''s policy)';
REVOKE ALL ON FUNCTION sqlcoder_internal._function_facts(oid[]) FROM PUBLIC;

-- The guard's cost estimate, read-only like the query itself: planning can
-- evaluate immutable and stable functions (constant folding, selectivity
-- estimates), so the EXPLAIN must not run in the caller's writable state.
-- The statement text is built before the caller's search_path applies. In C
-- (src/guarded_explain.c) with the function policy's hooks armed: planning runs
-- code planted objects decide (defaults, negators, index expressions).
CREATE FUNCTION sqlcoder_internal._readonly_explain(query text, caller_search_path text)
RETURNS json
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET transaction_read_only = on
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_readonly_explain';
COMMENT ON FUNCTION sqlcoder_internal._readonly_explain(text, text) IS
  'internal: EXPLAIN (FORMAT JSON) of one query, read-only, in the given search_path, with the function policy''s hooks armed; the guard''s cost check';
REVOKE ALL ON FUNCTION sqlcoder_internal._readonly_explain(text, text) FROM PUBLIC;

-- The policy's lists are the settings allowed_functions and denied_functions
-- (settings.sql); these functions edit them one function at a time.
-- SECURITY INVOKER: the UPDATE of
-- sqlcoder.config needs a superuser (or a role a superuser let write it).
CREATE FUNCTION sqlcoder_internal._set_function_policy(fn regprocedure, list_key text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  entry text := fn::text;  -- schema-qualified unless in pg_catalog, as resolved in this search_path
  k text;
  kept text;
BEGIN
  FOREACH k IN ARRAY ARRAY['allowed_functions', 'denied_functions'] LOOP
    SELECT coalesce(string_agg(e, '; ' ORDER BY n), '') INTO kept
    FROM sqlcoder.config c,
         unnest(regexp_split_to_array(c.value, ';')) WITH ORDINALITY AS s(e0, n),
         LATERAL (SELECT btrim(e0) AS e) t
    WHERE c.key = k AND t.e <> '' AND to_regprocedure(t.e) IS DISTINCT FROM fn;
    IF k = list_key THEN
      kept := CASE WHEN kept = '' THEN entry ELSE kept || '; ' || entry END;
    END IF;
    UPDATE sqlcoder.config SET value = kept WHERE key = k AND value IS DISTINCT FROM kept;
  END LOOP;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._set_function_policy(regprocedure, text) IS
  'internal: put one function on allowed_functions or denied_functions (off the other), or on neither';
REVOKE ALL ON FUNCTION sqlcoder_internal._set_function_policy(regprocedure, text) FROM PUBLIC;

CREATE FUNCTION sqlcoder.allow_function(fn regprocedure)
RETURNS void
LANGUAGE sql VOLATILE
BEGIN ATOMIC
  SELECT sqlcoder_internal._set_function_policy(fn, 'allowed_functions');
END;
COMMENT ON FUNCTION sqlcoder.allow_function(regprocedure) IS
  'let generated SQL call this function although it is volatile or on the shipped deny list (superuser)';

CREATE FUNCTION sqlcoder.deny_function(fn regprocedure)
RETURNS void
LANGUAGE sql VOLATILE
BEGIN ATOMIC
  SELECT sqlcoder_internal._set_function_policy(fn, 'denied_functions');
END;
COMMENT ON FUNCTION sqlcoder.deny_function(regprocedure) IS
  'refuse generated SQL that calls this function, whatever its volatility (superuser)';

CREATE FUNCTION sqlcoder.reset_function(fn regprocedure)
RETURNS void
LANGUAGE sql VOLATILE
BEGIN ATOMIC
  SELECT sqlcoder_internal._set_function_policy(fn, NULL);
END;
COMMENT ON FUNCTION sqlcoder.reset_function(regprocedure) IS
  'take this function off allowed_functions and denied_functions: the shipped policy decides again (superuser)';

REVOKE ALL ON FUNCTION sqlcoder.allow_function(regprocedure), sqlcoder.deny_function(regprocedure),
  sqlcoder.reset_function(regprocedure) FROM PUBLIC;

-- Granted roles call the guard's helpers as themselves (they analyze and
-- plan as the caller); the DBA's policy helpers are not granted.
-- The function policy's lists for the hooks that enforce it wherever
-- PostgreSQL calls a function during a guarded call (src/function_policy.c):
-- the DBA's allowed and denied functions and the shipped lists, resolved to
-- OIDs by python/sqlcoder/policy.py. They last until the calling
-- subtransaction ends (the guard's rolled-back one).
CREATE FUNCTION sqlcoder_internal._guard_policy(allowed oid[], denied oid[], refused oid[], refused_reasons text[],
    harmless oid[], extensions text[], extension_reasons text[])
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS '$libdir/sqlcoder_pg', 'sqlcoder_guard_policy';
COMMENT ON FUNCTION sqlcoder_internal._guard_policy(oid[], oid[], oid[], text[], oid[], text[], text[]) IS
  'internal: hand the function policy''s lists to the hooks for the rest of the calling subtransaction';
REVOKE ALL ON FUNCTION sqlcoder_internal._guard_policy(oid[], oid[], oid[], text[], oid[], text[], text[]) FROM PUBLIC;
INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder_internal._query_objects(text)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._function_facts(oid[])', 'EXECUTE'),
  ('function', 'sqlcoder_internal._readonly_explain(text, text)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._guard_policy(oid[], oid[], oid[], text[], oid[], text[], text[])', 'EXECUTE');

