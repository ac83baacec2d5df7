------------------------------------------------------------------------------
-- The catalog cache's invalidation. The schema shown to the model is read from
-- pg_catalog with the caller's privileges (python/sqlcoder/catalog.py) and
-- cached per backend; sqlcoder.catalog_changes, which DDL, join hints and
-- examples fill, says when a cached schema is stale.

-- One row per transaction that changed the catalog (DDL, GRANT/REVOKE,
-- COMMENT), the join hints or the examples. A backend's cached schema remembers the
-- snapshot it was read under, and is stale once a row exists that this
-- snapshot could not see. Inserting (never updating one shared row) means
-- concurrent DDL never waits on, or deadlocks over, this table.
CREATE TABLE sqlcoder.catalog_changes (
    xid        xid8 PRIMARY KEY,
    changed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sqlcoder.catalog_changes IS
  'internal: transactions that changed what sqlcoder shows the model (invalidates cached schemas)';

-- Whether this transaction is already noted is decided by a primary-key
-- lookup in the table, never by anything a caller can set beforehand.
CREATE FUNCTION sqlcoder_internal._note_catalog_change()
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  current xid8 := pg_catalog.pg_current_xact_id();
BEGIN
  -- Once per transaction: a script creating 10,000 tables inserts one row.
  IF NOT EXISTS (SELECT 1 FROM sqlcoder.catalog_changes c WHERE c.xid = current) THEN
    INSERT INTO sqlcoder.catalog_changes (xid) VALUES (current) ON CONFLICT DO NOTHING;
    -- Old rows tell nobody anything new once a newer one exists; skip rows
    -- another transaction is deleting instead of waiting for it.
    DELETE FROM sqlcoder.catalog_changes
    WHERE ctid IN (SELECT ctid FROM sqlcoder.catalog_changes
                   WHERE changed_at < pg_catalog.now() - interval '1 day' FOR UPDATE SKIP LOCKED);
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._note_catalog_change() IS
  'internal: record that this transaction changed what sqlcoder shows the model (SECURITY DEFINER: any role''s DDL must bump the catalog version, which only the extension owner may write)';

-- Event trigger functions run as whoever issued the DDL: SECURITY DEFINER
-- lets any role's DDL record itself and clean up what a drop leaves behind
-- (join hints and instructions here; examples.sql has its own drop trigger).
CREATE FUNCTION sqlcoder_internal._on_ddl_command_end()
RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._note_catalog_change();
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._on_ddl_command_end() IS
  'internal: event trigger; DDL, GRANT/REVOKE and COMMENT invalidate cached schemas (SECURITY DEFINER: it runs for every role''s DDL and writes extension-owned state)';

CREATE FUNCTION sqlcoder_internal._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._note_catalog_change();
  DELETE FROM sqlcoder.join_hints h
  USING pg_catalog.pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_catalog.pg_class'::regclass
    AND ((d.objsubid = 0 AND d.objid IN (h.left_table, h.right_table))
      OR (d.objsubid > 0 AND d.object_type = 'table column' AND (
            (d.objid = h.left_table AND d.address_names[3] = h.left_column)
         OR (d.objid = h.right_table AND d.address_names[3] = h.right_column))));
  DELETE FROM sqlcoder.instructions i
  USING pg_catalog.pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = i.scope;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._on_sql_drop() IS
  'internal: event trigger; drops invalidate cached schemas and remove join hints and instructions on dropped objects (SECURITY DEFINER: it runs for every role''s DDL and writes extension-owned state)';

-- Event triggers are database-wide objects with global names.
CREATE EVENT TRIGGER sqlcoder_ddl_command_end ON ddl_command_end
  EXECUTE FUNCTION sqlcoder_internal._on_ddl_command_end();
CREATE EVENT TRIGGER sqlcoder_sql_drop ON sql_drop
  EXECUTE FUNCTION sqlcoder_internal._on_sql_drop();

REVOKE ALL ON FUNCTION sqlcoder_internal._note_catalog_change(), sqlcoder_internal._on_ddl_command_end(),
  sqlcoder_internal._on_sql_drop() FROM PUBLIC;

-- Granted roles build their prompts as themselves, so they read catalog_changes.
INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('table', 'sqlcoder.catalog_changes', 'SELECT');
