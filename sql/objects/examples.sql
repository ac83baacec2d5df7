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

-- A role reads an example only if it may SELECT every table the example reads
-- (whole tables: a column grant is not enough, the SQL may name other
-- columns); it adds one only for tables it owns, and removes its own or one
-- for tables it owns. Superusers bypass these policies.
ALTER TABLE sqlcoder.examples ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers ON sqlcoder.examples FOR SELECT USING (
  NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(tables) AS t(rel)
              WHERE NOT coalesce(pg_catalog.has_table_privilege(t.rel::pg_catalog.oid, 'SELECT'), false)));
CREATE POLICY owners_add ON sqlcoder.examples FOR INSERT WITH CHECK (
  created_by = current_user
  AND pg_catalog.cardinality(tables) > 0
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(tables) AS t(rel)
                  LEFT JOIN pg_catalog.pg_class c ON c.oid = t.rel::pg_catalog.oid
                  WHERE c.oid IS NULL OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')));
CREATE POLICY owners_remove ON sqlcoder.examples FOR DELETE USING (
  created_by = current_user
  OR NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(tables) AS t(rel)
                 LEFT JOIN pg_catalog.pg_class c ON c.oid = t.rel::pg_catalog.oid
                 WHERE c.oid IS NULL OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')));

-- Runs as the inserting role (no SECURITY DEFINER): the guard checks the SQL
-- and parse analysis lists the relations it reads with that role's privileges
-- and the row's search_path (python/sqlcoder/examples.py). A direct INSERT
-- goes through it too, so `tables` is never what the inserter says.
CREATE FUNCTION sqlcoder._example_before_insert()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  checked jsonb;
BEGIN
  checked := sqlcoder._result(sqlcoder._invoke('check_example', pg_catalog.jsonb_build_object(
    'question', NEW.question, 'sql', NEW.sql, 'search_path', NEW.search_path)))::jsonb;
  NEW.question := checked ->> 'question';
  NEW.sql := checked ->> 'sql';
  NEW.tables := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(checked -> 'tables')::pg_catalog.oid::pg_catalog.regclass);
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION sqlcoder._example_before_insert() IS
  'internal: check a new example with the guard and record the relations it reads (runs as the inserting role)';

CREATE TRIGGER check_example BEFORE INSERT OR UPDATE ON sqlcoder.examples
FOR EACH ROW EXECUTE FUNCTION sqlcoder._example_before_insert();

-- Cached schemas also hold the examples a role may read: a change invalidates them.
CREATE FUNCTION sqlcoder._on_examples_change()
RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM sqlcoder._note_catalog_change();
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION sqlcoder._on_examples_change() IS
  'internal: a changed example invalidates cached schemas (SECURITY DEFINER: writes extension-owned state for whichever role changed it)';

CREATE TRIGGER note_catalog_change
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sqlcoder.examples
FOR EACH STATEMENT EXECUTE FUNCTION sqlcoder._on_examples_change();

-- Dropping a relation deletes the examples that read it.
CREATE FUNCTION sqlcoder._on_sql_drop_examples()
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
COMMENT ON FUNCTION sqlcoder._on_sql_drop_examples() IS
  'internal: event trigger; drops remove the examples reading a dropped relation (SECURITY DEFINER: it runs for every role''s DDL and writes extension-owned state)';
CREATE EVENT TRIGGER sqlcoder_examples_sql_drop ON sql_drop
  EXECUTE FUNCTION sqlcoder._on_sql_drop_examples();

CREATE FUNCTION sqlcoder.add_example(question text, sql text)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  INSERT INTO sqlcoder.examples (question, sql, search_path)
  VALUES (question, sql, pg_catalog.current_schemas(true))
  RETURNING id;
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
  DELETE FROM sqlcoder.examples e WHERE e.id = remove_example.id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'must be owner of every table example % reads, or its author, to remove it', remove_example.id
      USING ERRCODE = 'insufficient_privilege', HINT = 'Ask the tables'' owner or a superuser to remove it.';
  END IF;
END
$$;
COMMENT ON FUNCTION sqlcoder.remove_example(bigint) IS
  'remove a golden example (its author, the owner of every table it reads, or a superuser)';

-- A history row marked correct by feedback(), or its corrected SQL, becomes an
-- example. history's row-level security limits it to the caller's own rows.
CREATE FUNCTION sqlcoder._promote_example(history_id bigint, caller_path name[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  h sqlcoder.history;
  chosen text;
  new_id bigint;
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
  INSERT INTO sqlcoder.examples (question, sql, search_path, history_id)
  VALUES (h.question, chosen, caller_path, h.id)
  RETURNING id INTO new_id;
  RETURN new_id;
END
$$;
COMMENT ON FUNCTION sqlcoder._promote_example(bigint, name[]) IS
  'internal: promote_example in the caller''s search path';

CREATE FUNCTION sqlcoder.promote_example(history_id bigint)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder._promote_example(history_id, pg_catalog.current_schemas(true));
END;
COMMENT ON FUNCTION sqlcoder.promote_example(bigint) IS
  'turn one of your sqlcoder.history rows marked correct (or its corrected SQL) into a golden example; returns its id';

REVOKE ALL ON FUNCTION sqlcoder._example_before_insert(), sqlcoder._on_examples_change(),
  sqlcoder._on_sql_drop_examples(), sqlcoder.add_example(text, text), sqlcoder.remove_example(bigint),
  sqlcoder.promote_example(bigint), sqlcoder._promote_example(bigint, name[]) FROM PUBLIC;

-- Access: granted roles read the examples row-level security lets them see,
-- insert only these columns (the trigger fills tables, the default
-- created_by), and delete where the policy allows.
INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('table', 'sqlcoder.examples', 'SELECT, DELETE, INSERT (question, sql, search_path, history_id)'),
  ('function', 'sqlcoder.add_example(text, text)', 'EXECUTE'),
  ('function', 'sqlcoder.remove_example(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.promote_example(bigint)', 'EXECUTE'),
  ('function', 'sqlcoder._promote_example(bigint, name[])', 'EXECUTE');

