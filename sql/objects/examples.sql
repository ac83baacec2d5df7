------------------------------------------------------------------------------
-- Golden examples: question/SQL pairs shown to the model. How they are chosen
-- for a prompt is in python/sqlcoder/examples.py; docs/schema.md says what the
-- model is shown.

-- Question/SQL pairs a table owner vouches for. `tables` holds every relation
-- the SQL reads, by OID, as PostgreSQL's parse analysis found it (the trigger
-- below fills it, whatever an INSERT says); regclass dumps as a name, so
-- examples survive pg_dump/restore. `search_path` is the path the SQL was
-- analyzed under (add_example passes the caller's).
CREATE TABLE sqlcoder.examples (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question    text NOT NULL,
    sql         text NOT NULL,
    search_path name[] NOT NULL DEFAULT '{}',
    tables      regclass[] NOT NULL DEFAULT '{}',
    history_id  bigint,
    created_by  name NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE sqlcoder.examples IS
  'golden question/SQL pairs shown to the model; manage with sqlcoder.add_example / remove_example / promote_example';
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.examples', '');
SELECT pg_catalog.pg_extension_config_dump('sqlcoder.examples_id_seq', '');

-- A role reads an example exactly when PostgreSQL's permission check on the
-- analyzed query would let it run it (src/example_access.c; column privileges
-- included), after the cheap test that every table it reads shows the role a
-- column. Adding and removing go through sqlcoder_internal._edit_catalog below (no
-- INSERT or DELETE grant): one only for tables the caller owns; its own, or
-- one for tables it owns, removed. Superusers bypass these policies.
CREATE FUNCTION sqlcoder_internal._example_permitted(sql text, search_path name[])
RETURNS boolean
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_example_permitted';
COMMENT ON FUNCTION sqlcoder_internal._example_permitted(text, name[]) IS
  'internal: whether PostgreSQL''s permission check on the analyzed query lets the current role run it '
  '(nothing runs)';
REVOKE ALL ON FUNCTION sqlcoder_internal._example_permitted(text, name[]) FROM PUBLIC;
ALTER TABLE sqlcoder.examples ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers ON sqlcoder.examples FOR SELECT USING (
  NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(tables) AS t(rel)
              WHERE NOT coalesce(pg_catalog.has_any_column_privilege(t.rel::pg_catalog.oid, 'SELECT'), false))
  AND sqlcoder_internal._example_permitted(sql, search_path));

-- Runs as the inserting role (no SECURITY DEFINER): the guard checks the SQL
-- and parse analysis lists the relations it reads with that role's privileges
-- and the row's search_path (python/sqlcoder/examples.py). A direct INSERT
-- goes through it too, so `tables` is never what the inserter says.
CREATE FUNCTION sqlcoder_internal._example_before_insert()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  checked jsonb;
BEGIN
  IF pg_catalog.current_setting('sqlcoder.example_checked', true) = 'on' THEN
    RETURN NEW;
  END IF;
  checked := sqlcoder_internal._result(sqlcoder_internal._invoke('check_example', pg_catalog.jsonb_build_object(
    'question', NEW.question, 'sql', NEW.sql, 'search_path', NEW.search_path)))::jsonb;
  NEW.question := checked ->> 'question';
  NEW.sql := checked ->> 'sql';
  NEW.tables := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(checked -> 'tables')::pg_catalog.oid::pg_catalog.regclass);
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._example_before_insert() IS
  'internal: check a new example with the guard and record the relations it reads (runs as the inserting role)';

CREATE TRIGGER check_example BEFORE INSERT OR UPDATE ON sqlcoder.examples
FOR EACH ROW EXECUTE FUNCTION sqlcoder_internal._example_before_insert();

-- Cached schemas also hold the examples a role may read: a change invalidates them.
CREATE FUNCTION sqlcoder_internal._on_examples_change()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder_internal._note_catalog_change();
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._on_examples_change() IS
  'internal: a changed example invalidates cached schemas (SECURITY DEFINER: writes extension-owned state for whichever role changed it)';

CREATE TRIGGER note_catalog_change
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sqlcoder.examples
FOR EACH STATEMENT EXECUTE FUNCTION sqlcoder_internal._on_examples_change();

-- Dropping a relation deletes the examples that read it.
CREATE FUNCTION sqlcoder_internal._on_sql_drop_examples()
RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM sqlcoder.examples e
  USING pg_catalog.pg_event_trigger_dropped_objects() d
  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
    AND d.objid = ANY (e.tables::pg_catalog.oid[]);
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._on_sql_drop_examples() IS
  'internal: event trigger; drops remove the examples reading a dropped relation (SECURITY DEFINER: it runs for every role''s DDL and writes extension-owned state)';
CREATE EVENT TRIGGER sqlcoder_examples_sql_drop ON sql_drop
  EXECUTE FUNCTION sqlcoder_internal._on_sql_drop_examples();

-- Join hints, instructions and examples change through functions only. The
-- functions check as the caller first, for a clear error; sqlcoder_internal._edit_catalog
-- (C, src/catalog_edit.c) then calls _edit_catalog_as_owner, granted to nobody,
-- with the caller's OID, and that function applies the rules of who may.
CREATE FUNCTION sqlcoder_internal._edit_catalog_as_owner(op text, args jsonb, caller oid)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET sqlcoder.example_checked = 'on'
AS $$
DECLARE
  who name := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = caller);
  super boolean := coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = caller), false);
  new_id bigint;
  tables regclass[];
  n bigint;
BEGIN
  IF who IS NULL THEN
    RAISE EXCEPTION 'role with OID % does not exist', caller USING ERRCODE = 'undefined_object';
  END IF;
  CASE op
  WHEN 'add_join_hint' THEN
    IF NOT super AND EXISTS (
        SELECT 1 FROM pg_catalog.unnest(ARRAY[(args ->> 'left_table')::oid, (args ->> 'right_table')::oid]) AS t(rel)
        LEFT JOIN pg_catalog.pg_class c ON c.oid = t.rel
        WHERE c.oid IS NULL OR NOT pg_catalog.pg_has_role(caller, c.relowner, 'USAGE')) THEN
      RAISE EXCEPTION 'must be owner of both tables to add a join hint' USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO sqlcoder.join_hints (left_table, left_column, right_table, right_column, created_by)
    VALUES ((args ->> 'left_table')::oid::regclass, args ->> 'left_column',
            (args ->> 'right_table')::oid::regclass, args ->> 'right_column', who)
    ON CONFLICT (left_table, left_column, right_table, right_column) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN  -- already there: adding a hint twice is not an error
      SELECT h.id INTO new_id FROM sqlcoder.join_hints h
      WHERE h.left_table = (args ->> 'left_table')::oid AND h.left_column = args ->> 'left_column'
        AND h.right_table = (args ->> 'right_table')::oid AND h.right_column = args ->> 'right_column';
    END IF;
    RETURN new_id;
  WHEN 'remove_join_hint' THEN
    DELETE FROM sqlcoder.join_hints h WHERE h.id = (args ->> 'id')::bigint
      AND (super OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid IN (h.left_table, h.right_table)
                            AND pg_catalog.pg_has_role(caller, c.relowner, 'USAGE')));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
  WHEN 'add_instruction' THEN
    IF args ->> 'scope' IS NULL AND NOT super THEN
      RAISE EXCEPTION 'only a superuser can add an instruction for every schema' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF args ->> 'scope' IS NOT NULL AND NOT super AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_namespace s WHERE s.oid = (args ->> 'scope')::oid
          AND pg_catalog.pg_has_role(caller, s.nspowner, 'USAGE')) THEN
      RAISE EXCEPTION 'must be owner of the schema to add instructions for it' USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO sqlcoder.instructions (instruction, scope, created_by)
    VALUES (pg_catalog.btrim(args ->> 'instruction'), (args ->> 'scope')::oid::regnamespace, who)
    RETURNING id INTO new_id;
    RETURN new_id;
  WHEN 'remove_instruction' THEN
    DELETE FROM sqlcoder.instructions i WHERE i.id = (args ->> 'id')::bigint
      AND (super OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace s WHERE s.oid = i.scope
                            AND pg_catalog.pg_has_role(caller, s.nspowner, 'USAGE')));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
  WHEN 'add_example' THEN
    -- args holds what the guard and parse analysis found as the caller (sqlcoder_internal._edit_catalog ran them).
    tables := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(args -> 'tables')::oid::regclass);
    IF NOT super AND (pg_catalog.cardinality(tables) = 0 OR EXISTS (
        SELECT 1 FROM pg_catalog.unnest(tables) AS t(rel) LEFT JOIN pg_catalog.pg_class c ON c.oid = t.rel::oid
        WHERE c.oid IS NULL OR NOT pg_catalog.pg_has_role(caller, c.relowner, 'USAGE'))) THEN
      RAISE EXCEPTION 'must be owner of every table the example reads' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF args ->> 'history_id' IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM sqlcoder.history h WHERE h.id = (args ->> 'history_id')::bigint AND h.role = who) THEN
      RAISE EXCEPTION 'no sqlcoder.history entry % of yours', args ->> 'history_id'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO sqlcoder.examples (question, sql, search_path, tables, history_id, created_by)
    VALUES (args ->> 'question', args ->> 'sql',
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(args -> 'search_path'))::name[],
            tables, (args ->> 'history_id')::bigint, who)
    RETURNING id INTO new_id;
    RETURN new_id;
  WHEN 'remove_example' THEN
    DELETE FROM sqlcoder.examples e WHERE e.id = (args ->> 'id')::bigint
      AND (super OR e.created_by = who OR NOT EXISTS (
        SELECT 1 FROM pg_catalog.unnest(e.tables) AS t(rel) LEFT JOIN pg_catalog.pg_class c ON c.oid = t.rel::oid
        WHERE c.oid IS NULL OR NOT pg_catalog.pg_has_role(caller, c.relowner, 'USAGE')));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
  ELSE
    RAISE EXCEPTION 'unknown catalog edit %', op USING ERRCODE = 'invalid_parameter_value';
  END CASE;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._edit_catalog_as_owner(text, jsonb, oid) IS
  'internal: add or remove a join hint, instruction or example for the caller whose OID sqlcoder_internal._edit_catalog '
  'passes, under the rules of who may (SECURITY DEFINER: granted roles may not write these tables; granted to nobody, '
  'reached only through _edit_catalog)';
REVOKE ALL ON FUNCTION sqlcoder_internal._edit_catalog_as_owner(text, jsonb, oid) FROM PUBLIC;

CREATE FUNCTION sqlcoder_internal._edit_catalog(op text, args jsonb)
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS '$libdir/sqlcoder_pg', 'sqlcoder_edit_catalog';
COMMENT ON FUNCTION sqlcoder_internal._edit_catalog(text, jsonb) IS
  'internal: sqlcoder_internal._edit_catalog_as_owner for the calling role (an example is checked as the caller first)';
REVOKE ALL ON FUNCTION sqlcoder_internal._edit_catalog(text, jsonb) FROM PUBLIC;

CREATE FUNCTION sqlcoder.add_example(question text, sql text)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder_internal._edit_catalog('add_example', pg_catalog.jsonb_build_object(
    'question', question, 'sql', sql, 'search_path', pg_catalog.current_schemas(true)));
END;
COMMENT ON FUNCTION sqlcoder.add_example(text, text) IS
  'add a golden question/SQL pair (superuser, or owner of every table the SQL reads); returns its id';

CREATE FUNCTION sqlcoder.remove_example(id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF NOT EXISTS (SELECT 1 FROM sqlcoder.examples e WHERE e.id = remove_example.id) THEN
    RAISE EXCEPTION 'example % does not exist', remove_example.id USING ERRCODE = 'undefined_object',
      HINT = 'SELECT id, question FROM sqlcoder.examples lists the examples you can read.';
  END IF;
  IF sqlcoder_internal._edit_catalog('remove_example', pg_catalog.jsonb_build_object('id', remove_example.id)) = 0 THEN
    RAISE EXCEPTION 'must be owner of every table example % reads, or its author, to remove it', remove_example.id
      USING ERRCODE = 'insufficient_privilege', HINT = 'Ask the tables'' owner or a superuser to remove it.';
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder.remove_example(bigint) IS
  'remove a golden example (its author, the owner of every table it reads, or a superuser)';

-- A history row marked correct by feedback(), or its corrected SQL, becomes an
-- example. history's row-level security limits it to the caller's own rows.
CREATE FUNCTION sqlcoder_internal._promote_example(history_id bigint, caller_path name[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  h sqlcoder.history;
  chosen text;
BEGIN
  IF pg_catalog.current_setting('transaction_read_only')::boolean THEN
    RAISE EXCEPTION 'cannot promote a history row to an example in a read-only transaction'
      USING ERRCODE = 'read_only_sql_transaction',
            HINT = 'Call sqlcoder.promote_example in a read-write transaction: it adds a row to sqlcoder.examples.';
  END IF;
  SELECT * INTO h FROM sqlcoder.history r WHERE r.id = _promote_example.history_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no sqlcoder.history entry % of yours', _promote_example.history_id
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the id of one of your own rows in sqlcoder.history.';
  END IF;
  chosen := coalesce(h.corrected_sql, CASE WHEN h.correct THEN h.sql END);
  IF chosen IS NULL OR h.question IS NULL THEN
    RAISE EXCEPTION 'history entry % has no question with SQL marked correct', _promote_example.history_id
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Mark it first: sqlcoder.feedback(id, true), or sqlcoder.feedback(id, false, ''corrected SQL'').';
  END IF;
  RETURN sqlcoder_internal._edit_catalog('add_example', pg_catalog.jsonb_build_object(
    'question', h.question, 'sql', chosen, 'search_path', caller_path, 'history_id', h.id));
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._promote_example(bigint, name[]) IS
  'internal: promote_example in the caller''s search path';

CREATE FUNCTION sqlcoder.promote_example(history_id bigint)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder_internal._promote_example(history_id, pg_catalog.current_schemas(true));
END;
COMMENT ON FUNCTION sqlcoder.promote_example(bigint) IS
  'turn one of your sqlcoder.history rows marked correct (or its corrected SQL) into a golden example; returns its id';


REVOKE ALL ON FUNCTION sqlcoder_internal._example_before_insert(), sqlcoder_internal._on_examples_change(),
  sqlcoder_internal._on_sql_drop_examples(), sqlcoder.add_example(text, text), sqlcoder.remove_example(bigint),
  sqlcoder.promote_example(bigint), sqlcoder_internal._promote_example(bigint, name[]) FROM PUBLIC;

-- Access: granted roles read the examples row-level security lets them see,
-- insert only these columns (the trigger fills tables, the default
-- created_by), and delete where the policy allows.
INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder_internal._example_permitted(text, name[])', 'EXECUTE'),
  ('table', 'sqlcoder.examples', 'SELECT'),
  ('function', 'sqlcoder_internal._edit_catalog(text, jsonb)', 'EXECUTE'),
  ('function', 'sqlcoder.add_example(text, text)', 'EXECUTE'),
  ('function', 'sqlcoder.remove_example(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.promote_example(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder_internal._promote_example(bigint, name[])', 'EXECUTE');

