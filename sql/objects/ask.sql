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

-- follow_up: the sqlcoder.history id of an earlier question of the caller's
-- that this one refines, or 0 for the caller's latest ask or run of this
-- session (python/sqlcoder/follow_up.py).

CREATE FUNCTION sqlcoder.ask(question text, instructions text DEFAULT NULL, follow_up bigint DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('ask', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'follow_up', follow_up,
    'caller_path', pg_catalog.current_schemas(true))));
END;
COMMENT ON FUNCTION sqlcoder.ask(text, text, bigint) IS
  'generate SQL that answers a question about the tables you can see; never runs it. '
  'follow_up: the sqlcoder.history id of an earlier question of yours this one refines (0: your latest)';

CREATE FUNCTION sqlcoder.prompt(question text, instructions text DEFAULT NULL, follow_up bigint DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL UNSAFE
BEGIN ATOMIC
  SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('prompt', pg_catalog.jsonb_build_object(
    'question', question, 'instructions', instructions, 'follow_up', follow_up,
    'caller_path', pg_catalog.current_schemas(true))));
END;
COMMENT ON FUNCTION sqlcoder.prompt(text, text, bigint) IS
  'the exact prompt sqlcoder.ask would send to the model for this question (and follow_up)';

REVOKE ALL ON FUNCTION sqlcoder.ask(text, text, bigint), sqlcoder.prompt(text, text, bigint) FROM PUBLIC;

INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('function', 'sqlcoder.ask(text, text, bigint)', 'EXECUTE'),
  ('function', 'sqlcoder.prompt(text, text, bigint)', 'EXECUTE');
