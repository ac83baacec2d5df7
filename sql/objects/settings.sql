------------------------------------------------------------------------------
-- Settings: a superuser-owned view over the defaults, which this script
-- writes and pg_dump leaves out, and the values a DBA set, which are dumped.
-- Nothing a non-superuser can set decides which socket or limits are used.
-- UPDATE sqlcoder.config SET value = ... WHERE key = ... changes a setting; a
-- DELETE resets it to its default.

CREATE TABLE sqlcoder.config_default (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE sqlcoder.config_default IS
  'sqlcoder settings'' defaults, maintained by the extension scripts; see the view sqlcoder.config';

-- Every setting's default, grouped by the part that reads it
-- (python/sqlcoder/config.py declares how each is parsed).

-- The daemon, the prompt and running SQL.
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('socket_path', '/run/sqlcoder/sqlcoder.sock',
   'Unix socket of the sqlcoder model daemon'),
  ('connect_timeout_ms', '2000',
   'how long to wait for the daemon to accept a connection'),
  ('model_timeout_ms', '120000',
   'wall-clock limit on waiting for the model to answer'),
  ('max_question_chars', '4000',
   'longest question accepted, in characters'),
  ('max_reply_bytes', '1048576',
   'largest daemon reply accepted, in bytes'),
  ('max_new_tokens', '',
   'tokens the model may generate (empty: the daemon''s default)'),
  ('num_beams', '',
   'beam width (empty: the daemon''s default, 4; 1 is greedy)'),
  ('template', 'auto',
   'prompt template: auto (from the model the daemon serves), sqlcoder-70b, sqlcoder-7b-2, sqlcoder-34b '
   'or llama-3-sqlcoder-8b'),
  ('context_budget_tokens', '',
   'most prompt tokens; tables least relevant to the question are left out beyond it '
   '(empty: the model''s context length minus max_new_tokens)'),
  ('max_rows', '1000',
   'most rows sqlcoder.run and sqlcoder.execute return (a NOTICE says when a result was cut)'),
  ('query_timeout_ms', '30000',
   'wall-clock limit on planning and running generated SQL (a watchdog cancels the query)'),
  ('max_query_cost', '',
   'refuse queries whose planner cost estimate is above this (empty: no ceiling)'),
  ('allow_superuser_run', 'off',
   'on: superusers may run generated SQL too (they bypass privileges; read-only does not stop lo_export)'),
  ('guard_ask', 'on',
   'on: sqlcoder.ask returns SQL only if it is one plain query the guard accepts');

-- The guard's function policy: two lists of ';'-separated signatures, stored
-- like every other setting (config_override: dumped, kept by updates); see
-- sqlcoder.allow_function in guard.sql.
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('allowed_functions', '',
   'functions the guard allows although volatile or on its deny list (signatures separated by ;, e.g. '
   'public.f(integer)); see sqlcoder.allow_function'),
  ('denied_functions', '',
   'functions the guard refuses although immutable or stable (signatures separated by ;); see '
   'sqlcoder.deny_function');

-- Results bounded in bytes (run.sql).
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('max_result_bytes', '67108864',
   'most bytes (of the rows'' JSON text) sqlcoder.run and sqlcoder.execute return; the query is stopped and '
   'refused (54000) as soon as its result passes it');

-- What one guarded call may take from its backend (run.sql, src/call_limits.c).
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('max_memory_bytes', '536870912',
   'most bytes of address space a guarded query may add to its backend (planning, running, building the '
   'result); past it the query fails with 53200 out of memory'),
  ('max_temp_bytes', '1073741824',
   'most bytes of temporary files a guarded query may write (temp_file_limit for the call, never above the '
   'server''s own); past it the query fails with 53400');

-- History writing and retention (history.sql), and bounded text in prompts.
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('history_timeout_ms', '200',
   'longest a call waits for its history row to be written (the row is still written after, or counted as lost)'),
  ('history_write_timeout_ms', '5000',
   'lock timeout of the background worker that writes a history row (its statement timeout is twice this)'),
  ('history_retention', '90 days',
   'history rows older than this are deleted, in small batches, by the history writer'),
  ('history_max_rows', '1000000',
   'most history rows kept; the oldest beyond it are deleted in small batches'),
  ('history_max_bytes_per_role', '104857600',
   'most bytes of history text kept per role; the writer deletes that role''s oldest rows beyond it'),
  ('lock_timeout_ms', '2000',
   'longest a sqlcoder call waits for a lock (on its settings, catalogs, hints, instructions, examples, or a table '
   'its query reads); then it fails with 55P03'),
  ('max_comment_chars', '1000',
   'longest comment, instruction or join hint line shown to the model; longer ones are cut with a marker'),
  ('max_instructions_chars', '4000',
   'most characters of instructions in one prompt, and the longest instructions argument accepted');

-- Golden examples (examples.sql), self-correction and value hints.
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('max_examples', '3',
   'most golden examples (sqlcoder.examples) put into a prompt, the most similar to the question first (0: none)'),
  ('self_correct', 'on',
   'on: when the guard refuses the model''s SQL for a reason it can fix (syntax, unknown name, type), ask the '
   'model again with the SQL and PostgreSQL''s error'),
  ('max_corrections', '1',
   'most correction requests per ask or run when self_correct is on'),
  ('value_hints', 'on',
   'on: columns of text types with few distinct values show their most common values (from pg_stats; no table '
   'is read)'),
  ('value_hints_max_values', '10',
   'most values a value hint shows per column'),
  ('value_hints_max_distinct', '50',
   'value hints only for columns whose estimated number of distinct values (pg_stats.n_distinct) is at most this');

-- Schema-constrained decoding (python/sqlcoder/grammar.py); the option that overrides
-- it is src/decoding_option.c.
INSERT INTO sqlcoder.config_default (key, value, description) VALUES
  ('constrained_decoding', 'off',
   'on: the model may write only SQL over the tables, columns and functions its prompt shows (a grammar the '
   'daemon''s backend honours; the guard still checks every answer). A superuser overrides it per call or '
   'role with the option sqlcoder.constrained_decoding (on/off)');

CREATE TABLE sqlcoder.config_override (
    key   text PRIMARY KEY REFERENCES sqlcoder.config_default (key) ON DELETE CASCADE,
    value text NOT NULL
);
COMMENT ON TABLE sqlcoder.config_override IS
  'sqlcoder settings a DBA changed (dumped by pg_dump); see the view sqlcoder.config';

SELECT pg_catalog.pg_extension_config_dump('sqlcoder.config_override', '');

CREATE VIEW sqlcoder.config AS
SELECT d.key, coalesce(o.value, d.value) AS value, d.description, d.value AS default_value
FROM sqlcoder.config_default d
LEFT JOIN sqlcoder.config_override o USING (key);
COMMENT ON VIEW sqlcoder.config IS
  'sqlcoder settings; only superusers (or roles a superuser granted UPDATE) can change them';

CREATE FUNCTION sqlcoder_internal._config_update()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND (NEW.key IS DISTINCT FROM OLD.key OR NEW.description IS DISTINCT FROM OLD.description
     OR NEW.default_value IS DISTINCT FROM OLD.default_value) THEN
    RAISE EXCEPTION 'only the value of a sqlcoder setting can be changed'
      USING ERRCODE = '0A000', HINT = 'UPDATE sqlcoder.config SET value = ... WHERE key = ...;';
  END IF;
  IF TG_OP = 'DELETE' THEN  -- deleting a setting resets it to its default
    DELETE FROM sqlcoder.config_override WHERE key = OLD.key;
    RETURN OLD;
  END IF;
  IF NEW.value IS NULL THEN
    RAISE EXCEPTION 'a sqlcoder setting cannot be NULL'
      USING ERRCODE = '23502', HINT = 'Set it to its default_value (or to '''' where the setting allows empty).';
  END IF;
  IF NEW.value = OLD.default_value THEN
    DELETE FROM sqlcoder.config_override WHERE key = OLD.key;
  ELSE
    INSERT INTO sqlcoder.config_override (key, value) VALUES (OLD.key, NEW.value)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION sqlcoder_internal._config_update() IS
  'internal: UPDATE of the view sqlcoder.config stores the value in config_override, DELETE resets it (runs as the updater)';

REVOKE ALL ON FUNCTION sqlcoder_internal._config_update() FROM PUBLIC;

CREATE TRIGGER config_update INSTEAD OF UPDATE OR DELETE ON sqlcoder.config
FOR EACH ROW EXECUTE FUNCTION sqlcoder_internal._config_update();

INSERT INTO sqlcoder_internal._access_list (kind, object, privileges) VALUES
  ('table', 'sqlcoder.config', 'SELECT');
