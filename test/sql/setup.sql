-- The SQL surface of a fresh install (no daemon needed). Invariants only, so
-- that adding a function or a setting needs no change here.
CREATE EXTENSION sqlcoder CASCADE;
SELECT extversion FROM pg_extension WHERE extname = 'sqlcoder';
-- every user-facing function is documented in the catalog (pgvector's habit)
SELECT p.oid::regprocedure AS undocumented
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'sqlcoder'::regnamespace AND p.proname NOT LIKE '\_%'
  AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL;
-- every function pins search_path, except SQL-standard bodies, which are bound at creation,
-- and C functions, which look up no names of their own
SELECT p.oid::regprocedure AS unpinned
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'sqlcoder'::regnamespace AND p.prosqlbody IS NULL
  AND p.prolang <> (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'c')
  AND (p.proconfig IS NULL OR NOT 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig));
-- a function that runs with its owner's rights says why in its comment, and PUBLIC may execute nothing
SELECT p.oid::regprocedure AS security_definer_without_reason
FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'sqlcoder'::regnamespace AND p.prosecdef
  AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE '%SECURITY DEFINER:%';
SELECT p.oid::regprocedure AS public_executable
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'sqlcoder'::regnamespace AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE');
-- every setting is described
SELECT key AS undescribed FROM sqlcoder.config WHERE description = '';
SELECT value FROM sqlcoder.config WHERE key = 'socket_path';
