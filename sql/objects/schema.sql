-- The schemas, and who may use what in them.

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION sqlcoder" to load this file. \quit

-- The script creates its schema itself rather than naming it in the control
-- file: a schema the extension creates is a member of it, so DROP EXTENSION
-- removes it, and CREATE fails if someone already made a schema of that name
-- (it could hold objects planted to be picked up by these functions). Every
-- reference in these scripts is schema-qualified, as "Security Considerations for
-- Extension Scripts" asks.
CREATE SCHEMA sqlcoder;
COMMENT ON SCHEMA sqlcoder IS 'sqlcoder: ask the database questions in English';

-- Who may use it: nobody but superusers, until a DBA grants a role access with
-- sqlcoder.grant_access(role). The model is a shared, expensive resource.
REVOKE ALL ON SCHEMA sqlcoder FROM PUBLIC;

-- What the extension calls itself (names starting with _: the entry point,
-- the guard's C helpers, triggers, the history writer's functions) lives in a
-- schema of its own, so that \df sqlcoder.* lists what callers use. Created
-- here for the same reasons as sqlcoder, after a check that gives the DBA a
-- way out when a schema of that name is already there. Granted roles get
-- USAGE on it (their backends reach the internal functions by name) and
-- EXECUTE on what sqlcoder_internal._access_list names, nothing more; nobody
-- may create in it.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'sqlcoder_internal') THEN
    RAISE EXCEPTION 'schema "sqlcoder_internal" already exists'
      USING ERRCODE = 'duplicate_schema',
            DETAIL = 'sqlcoder creates that schema itself, for its internal functions.',
            HINT = 'See what it holds and who made it; drop it or rename it (ALTER SCHEMA sqlcoder_internal '
                   'RENAME TO ...), then run the command again.';
  END IF;
END
$$;
CREATE SCHEMA sqlcoder_internal;
COMMENT ON SCHEMA sqlcoder_internal IS
  'sqlcoder''s internal functions, called by those of schema sqlcoder (not an interface: they change between versions)';
REVOKE ALL ON SCHEMA sqlcoder_internal FROM PUBLIC;

------------------------------------------------------------------------------
-- What access means, as rows: each file adds the privileges a granted role
-- needs with one INSERT into sqlcoder_internal._access_list beside its own
-- objects, and grant_access/revoke_access apply the whole list.

CREATE TABLE sqlcoder_internal._access_list (
  kind       text NOT NULL CHECK (kind IN ('table', 'function')),
  object     text NOT NULL,   -- a table name, or a function signature (regprocedure syntax)
  privileges text NOT NULL,   -- for tables: the GRANT privilege list; functions: EXECUTE
  PRIMARY KEY (kind, object)
);
COMMENT ON TABLE sqlcoder_internal._access_list IS
  'internal: what sqlcoder.grant_access grants and sqlcoder.revoke_access revokes';
REVOKE ALL ON sqlcoder_internal._access_list FROM PUBLIC;

CREATE FUNCTION sqlcoder_internal._set_access(role_name regrole, do_grant boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  item record;
BEGIN
  IF do_grant THEN
    EXECUTE format('GRANT USAGE ON SCHEMA sqlcoder, sqlcoder_internal TO %s', role_name);
  END IF;
  FOR item IN SELECT a.kind, a.object, a.privileges FROM sqlcoder_internal._access_list a ORDER BY a.kind, a.object LOOP
    -- object is written by this extension's scripts only: a table name or a signature.
    IF item.kind = 'table' THEN
      EXECUTE format(CASE WHEN do_grant THEN 'GRANT %s ON %s TO %s' ELSE 'REVOKE %s ON %s FROM %s' END,
                     item.privileges, item.object::regclass, role_name);
    ELSE
      EXECUTE format(CASE WHEN do_grant THEN 'GRANT EXECUTE ON FUNCTION %s TO %s'
                          ELSE 'REVOKE EXECUTE ON FUNCTION %s FROM %s' END,
                     item.object::regprocedure, role_name);
    END IF;
  END LOOP;
  IF NOT do_grant THEN
    EXECUTE format('REVOKE USAGE ON SCHEMA sqlcoder, sqlcoder_internal FROM %s', role_name);
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._set_access(regrole, boolean) IS
  'internal: what grant_access grants and revoke_access revokes';
REVOKE ALL ON FUNCTION sqlcoder_internal._set_access(regrole, boolean) FROM PUBLIC;

-- Access management (superuser only: these functions are not granted to anyone).

CREATE FUNCTION sqlcoder.grant_access(role_name regrole)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._set_access(role_name, true);
  RETURN format('granted %s: USAGE on schemas sqlcoder and sqlcoder_internal, EXECUTE on %s functions, '
                'privileges on %s tables (%s)',
                role_name,
                (SELECT count(*) FROM sqlcoder_internal._access_list WHERE kind = 'function'),
                (SELECT count(*) FROM sqlcoder_internal._access_list WHERE kind = 'table'),
                (SELECT string_agg(a.object, ', ' ORDER BY a.object)
                 FROM sqlcoder_internal._access_list a WHERE a.kind = 'table'));
END
$$;

CREATE FUNCTION sqlcoder.revoke_access(role_name regrole)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._set_access(role_name, false);
  RETURN format('revoked from %s: USAGE on schemas sqlcoder and sqlcoder_internal, EXECUTE on %s functions, '
                'privileges on %s tables',
                role_name,
                (SELECT count(*) FROM sqlcoder_internal._access_list WHERE kind = 'function'),
                (SELECT count(*) FROM sqlcoder_internal._access_list WHERE kind = 'table'));
END
$$;
COMMENT ON FUNCTION sqlcoder.grant_access(regrole) IS
  'let a role (or group role) use sqlcoder; returns what was granted';
COMMENT ON FUNCTION sqlcoder.revoke_access(regrole) IS
  'take back what sqlcoder.grant_access gave a role; returns what was revoked';
REVOKE ALL ON FUNCTION sqlcoder.grant_access(regrole), sqlcoder.revoke_access(regrole) FROM PUBLIC;
