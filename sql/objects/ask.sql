------------------------------------------------------------------------------
-- Asking: the SQL the model writes for a question (never run here), and the
-- exact prompt it is sent.
--
-- User-facing functions, here and in the other files, have SQL-standard
-- bodies (BEGIN ATOMIC): they are parsed
-- and bound to the objects they name when created (schema-qualified, so that
-- nothing planted in the creation search path can be bound), so the caller's
-- search_path cannot redirect them. They do not pin search_path on purpose:
-- they capture the caller's effective path (current_schemas), which decides
-- the tables the model is shown.

CREATE FUNCTION sqlcoder.ask(question text, instructions text DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder._result(sqlcoder._invoke('ask', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'caller_path', pg_catalog.current_schemas(true))));
END;
COMMENT ON FUNCTION sqlcoder.ask(text, text) IS
  'generate SQL that answers a question about the tables you can see; never runs it';

CREATE FUNCTION sqlcoder.prompt(question text, instructions text DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder._result(sqlcoder._invoke('prompt', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'caller_path', pg_catalog.current_schemas(true))));
END;
COMMENT ON FUNCTION sqlcoder.prompt(text, text) IS
  'the exact prompt sqlcoder.ask would send to the model for this question';

REVOKE ALL ON FUNCTION sqlcoder.ask(text, text), sqlcoder.prompt(text, text) FROM PUBLIC;

INSERT INTO sqlcoder._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder.ask(text, text)', 'EXECUTE'),
  ('function', 'sqlcoder.prompt(text, text)', 'EXECUTE');
