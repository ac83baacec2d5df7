------------------------------------------------------------------------------
-- Join hints and instructions: what the catalog cannot say, a table's or
-- schema's owner adds here for the prompt. Both invalidate cached schemas
-- (catalog.sql); sqlcoder_internal._on_sql_drop there deletes those on dropped objects.

-- Pairs of columns that can be joined, for schemas without foreign keys.
-- regclass follows renames and dumps as a qualified name, so hints survive
-- pg_dump/restore; hints on a dropped table or column are deleted by the
-- sql_drop event trigger (catalog.sql).
CREATE TABLE sqlcoder.join_hints (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    left_table   regclass NOT NULL,
    left_column  name NOT NULL,
    right_table  regclass NOT NULL,
    right_column name NOT NULL,
    created_by   name NOT NULL DEFAULT current_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (left_table, left_column, right_table, right_column)
);
COMMENT ON TABLE sqlcoder.join_hints IS
  'pairs of columns the model is told can be joined; manage with sqlcoder.add_join_hint / remove_join_hint';

-- Business rules and glossary lines for the prompt's Instructions section,
-- for every caller (scope NULL) or for callers with that schema in their path.
CREATE TABLE sqlcoder.instructions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instruction text NOT NULL CHECK (pg_catalog.btrim(instruction) <> ''),
    scope       regnamespace,
    created_by  name NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sqlcoder.instructions IS
  'lines added to the prompt''s Instructions section; manage with sqlcoder.add_instruction / remove_instruction';

SELECT pg_catalog.pg_extension_config_dump('sqlcoder.join_hints', '');
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.instructions', '');

-- Identity sequences of dumped tables are dumped too, so that rows added after
-- a restore do not collide with the restored ones.
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.join_hints_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.instructions_id_seq', '');

-- Granted roles read these tables (row-level security below decides which
-- rows) and change them only through the functions further down, which end
-- in sqlcoder_internal._edit_catalog (sql/objects/examples.sql): no INSERT or DELETE
-- grant, so no LOCK TABLE by them either. A join hint needs ownership of
-- both tables, an instruction ownership of its schema; global instructions
-- are for superusers.
ALTER TABLE sqlcoder.join_hints ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON sqlcoder.join_hints FOR SELECT USING (true);

ALTER TABLE sqlcoder.instructions ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_visible ON sqlcoder.instructions FOR SELECT USING (
  scope IS NULL OR pg_catalog.has_schema_privilege(scope, 'USAGE'));

CREATE FUNCTION sqlcoder_internal._on_join_hints_change()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._note_catalog_change();
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._on_join_hints_change() IS
  'internal: a changed join hint invalidates cached schemas (SECURITY DEFINER: writes extension-owned state for whichever role changed the hint)';

CREATE TRIGGER note_catalog_change
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sqlcoder.join_hints
FOR EACH STATEMENT EXECUTE FUNCTION sqlcoder_internal._on_join_hints_change();

-- The management functions run as the caller (SECURITY INVOKER): the policies
-- above are the rule, the checks here only give a clear error first.

CREATE FUNCTION sqlcoder_internal._check_hint_column(tbl regclass, col name)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  kind "char";
  owner oid;
BEGIN
  IF tbl IS NULL OR col IS NULL THEN
    RAISE EXCEPTION 'join hint tables and columns must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  SELECT c.relkind, c.relowner INTO kind, owner FROM pg_catalog.pg_class c WHERE c.oid = tbl;
  IF kind IS NULL THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = 'undefined_table';
  END IF;
  IF kind NOT IN ('r', 'p', 'v', 'm', 'f') THEN
    RAISE EXCEPTION '% is not a table, view, materialized view or foreign table', tbl
      USING ERRCODE = 'wrong_object_type';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
    RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl USING ERRCODE = 'undefined_column';
  END IF;
  IF NOT pg_catalog.pg_has_role(owner, 'USAGE') THEN
    RAISE EXCEPTION 'must be owner of table % to add or remove its join hints', tbl
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Ask the table''s owner or a superuser to run sqlcoder.add_join_hint.';
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._check_hint_column(regclass, name) IS
  'internal: the column exists and the caller owns its table';

CREATE FUNCTION sqlcoder.add_join_hint(left_table regclass, left_column name,
                                                  right_table regclass, right_column name)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._check_hint_column(add_join_hint.left_table, add_join_hint.left_column);
  PERFORM sqlcoder_internal._check_hint_column(add_join_hint.right_table, add_join_hint.right_column);
  RETURN sqlcoder_internal._edit_catalog('add_join_hint', pg_catalog.jsonb_build_object(
    'left_table', add_join_hint.left_table::oid, 'left_column', add_join_hint.left_column,
    'right_table', add_join_hint.right_table::oid, 'right_column', add_join_hint.right_column));
END
$$;
COMMENT ON FUNCTION sqlcoder.add_join_hint(regclass, name, regclass, name) IS
  'tell the model that two columns can be joined (owner of both tables or superuser); returns the hint''s id';

CREATE FUNCTION sqlcoder.remove_join_hint(id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  hint sqlcoder.join_hints;
BEGIN
  SELECT * INTO hint FROM sqlcoder.join_hints h WHERE h.id = remove_join_hint.id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'join hint % does not exist', remove_join_hint.id USING ERRCODE = 'undefined_object';
  END IF;
  IF sqlcoder_internal._edit_catalog('remove_join_hint', pg_catalog.jsonb_build_object('id', remove_join_hint.id)) = 0 THEN
    RAISE EXCEPTION 'must be owner of table % or % to remove join hint %', hint.left_table, hint.right_table,
      remove_join_hint.id USING ERRCODE = 'insufficient_privilege';
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder.remove_join_hint(bigint) IS
  'remove a join hint (owner of one of its tables or superuser)';

CREATE FUNCTION sqlcoder.add_instruction(instruction text, schema_name name DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  nsp oid;
  owner oid;
BEGIN
  IF add_instruction.instruction IS NULL OR pg_catalog.btrim(add_instruction.instruction) = '' THEN
    RAISE EXCEPTION 'the instruction must not be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF add_instruction.schema_name IS NULL THEN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
      RAISE EXCEPTION 'only a superuser can add an instruction for every schema'
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Pass the schema it is about as schema_name; its owner may add instructions for it.';
    END IF;
  ELSE
    SELECT n.oid, n.nspowner INTO nsp, owner FROM pg_catalog.pg_namespace n WHERE n.nspname = add_instruction.schema_name;
    IF nsp IS NULL THEN
      RAISE EXCEPTION 'schema "%" does not exist', add_instruction.schema_name USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF NOT pg_catalog.pg_has_role(owner, 'USAGE') THEN
      RAISE EXCEPTION 'must be owner of schema % to add instructions for it', add_instruction.schema_name
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  RETURN sqlcoder_internal._edit_catalog('add_instruction', pg_catalog.jsonb_build_object(
    'instruction', add_instruction.instruction, 'scope', nsp));
END
$$;
COMMENT ON FUNCTION sqlcoder.add_instruction(text, name) IS
  'add a business rule or glossary line to every prompt (superuser) or to prompts whose search path has schema_name (its owner); returns its id';

CREATE FUNCTION sqlcoder.remove_instruction(id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF NOT EXISTS (SELECT 1 FROM sqlcoder.instructions i WHERE i.id = remove_instruction.id) THEN
    RAISE EXCEPTION 'instruction % does not exist', remove_instruction.id USING ERRCODE = 'undefined_object';
  END IF;
  IF sqlcoder_internal._edit_catalog('remove_instruction', pg_catalog.jsonb_build_object('id', remove_instruction.id)) = 0 THEN
    RAISE EXCEPTION 'must be owner of the instruction''s schema to remove instruction %', remove_instruction.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder.remove_instruction(bigint) IS
  'remove an instruction (superuser, or owner of the schema it is scoped to)';

REVOKE ALL ON FUNCTION sqlcoder_internal._on_join_hints_change(), sqlcoder_internal._check_hint_column(regclass, name),
  sqlcoder.add_join_hint(regclass, name, regclass, name), sqlcoder.remove_join_hint(bigint),
  sqlcoder.add_instruction(text, name), sqlcoder.remove_instruction(bigint) FROM PUBLIC;

-- The prompt is built with the caller's privileges, so it reads hints and
-- instructions; managing them is open to all granted roles, row-level
-- security decides which rows.
INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('table', 'sqlcoder.join_hints', 'SELECT'),
  ('table', 'sqlcoder.instructions', 'SELECT'),
  ('function', 'sqlcoder.add_join_hint(regclass, name, regclass, name)', 'EXECUTE'),
  ('function', 'sqlcoder.remove_join_hint(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.add_instruction(text, name)', 'EXECUTE'),
  ('function', 'sqlcoder.remove_instruction(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._check_hint_column(regclass, name)', 'EXECUTE');
